"""The viewer's tracks. Video: reconstructed 256x256 frames at 25 fps, each stamped with its
presentation timestamp so a viewer can measure glass-to-glass latency. Audio: the link's
speech, played out on the video's clock (lip sync, ``SyncedAudioTrack``).

The stamp is a 16-pixel strip under the picture (frame 256x272): 32 black/white cells of
8 pixels carrying the output timestamp in ms. It survives VP8 easily; the page hides it
with CSS and reads it back from the decoded frame (``client/stamp.js``, ``read_stamp``).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from codec import CANVAS_FPS, CANVAS_SIZE
from codec.types import OutputFrame
from server.audio_tracks import PacedAudioTrack

STRIP_H = 16
STAMP_BITS = 32
CELL_W = CANVAS_SIZE // STAMP_BITS
VIDEO_CLOCK = 90000
FRAME_S = 1.0 / CANVAS_FPS


def stamp_frame(image: np.ndarray, ts_ms: int) -> np.ndarray:
    """(256, 256, 3) uint8 -> (272, 256, 3) with ``ts_ms`` as a bit strip below."""
    bits = [(int(ts_ms) >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)]
    strip = np.repeat(np.array(bits, np.uint8) * 255, CELL_W)[None, :, None]
    strip = np.broadcast_to(strip, (STRIP_H, CANVAS_SIZE, 3))
    return np.ascontiguousarray(np.concatenate([image, strip], axis=0))


def read_stamp(frame_rgb: np.ndarray) -> int:
    """Inverse of ``stamp_frame`` on a decoded (lossy) frame."""
    row = frame_rgb[CANVAS_SIZE + STRIP_H // 2, :, :].astype(np.float32).mean(axis=1)
    centres = row[CELL_W // 2 :: CELL_W][:STAMP_BITS]
    value = 0
    for c in centres:
        value = (value << 1) | int(c > 127)
    return value


class PlayoutClock:
    """One link's video delay: when a frame of stream time ``ts`` has left the worker for
    the viewers (VP8-encoded and sent; wall clock) minus ``epoch + ts``. It includes the
    wait for the next 8x8 frame (interpolate mode), rendering, the 25 fps pacing and the
    VP8 encoding; the viewer's audio follows it."""

    SMOOTHING = 0.05

    def __init__(self) -> None:
        self.epoch_unix_ms: float | None = None
        self.video_delay_ms: float | None = None

    def video_released(self, ts_ms: float, now_unix_ms: float | None = None) -> None:
        if self.epoch_unix_ms is None:
            return
        now = time.time() * 1000 if now_unix_ms is None else now_unix_ms
        delay = now - self.epoch_unix_ms - ts_ms
        if self.video_delay_ms is None or abs(delay - self.video_delay_ms) > 500:
            self.video_delay_ms = delay  # first frame, or the output clock jumped
        else:
            self.video_delay_ms += self.SMOOTHING * (delay - self.video_delay_ms)


class SyncedAudioTrack(PacedAudioTrack):
    """The link's speech for the viewers, delayed to match the reconstructed video.

    ``push(pcm, stream_ms)`` places decoded samples (48 kHz mono) on the stream's timeline
    (``stream_ms`` = capture time - epoch, the timestamps of the 8x8 frames). ``recv``
    plays 20 ms frames out in real time, reading the timeline at ``now - epoch - delay``
    with ``delay`` = the video delay: a sample leaves when the video frame of the same
    stream time does. When the speech itself arrives later than that (low-latency mode
    can be faster than the speech path), ``delay`` is the speech's own arrival delay
    instead (no sample is skipped; ``late_ms`` says by how much audio trails video).
    Missing audio is silence. The read position runs on continuously, follows the target
    by at most 1 ms per 20 ms frame, and jumps only when it is more than ``resync_ms`` off
    (a click, not a warble)."""

    RATE = 48000
    ARRIVAL_WINDOW_S = 3.0

    def __init__(self, clock: PlayoutClock, resync_ms: float = 30.0,
                 max_buffer_s: float = 3.0, codec_delay_ms: float = 6.5) -> None:
        super().__init__()
        self.clock = clock
        # The viewer's Opus encoder + decoder delay the sound by this much (libopus at
        # 48 kHz); the samples leave that much before their video frame.
        self.codec_delay_ms = codec_delay_ms
        self.resync_ms = resync_ms
        self._max = int(max_buffer_s * self.RATE)
        self._pcm = np.zeros(0, np.int16)
        self._pcm_start: int | None = None  # timeline sample index of _pcm[0]
        self._read: int | None = None  # timeline sample index of the next output
        self._arrivals: deque[tuple[float, float]] = deque()  # (monotonic s, arrival delay ms)
        self.late_ms = 0.0
        self.delay_ms: float | None = None  # the delay audio is played out at

    def push(self, pcm: np.ndarray, stream_ms: float, now_unix_ms: float | None = None) -> None:
        samples = np.asarray(pcm, np.int16).reshape(-1)
        if self.clock.epoch_unix_ms is not None:
            now = time.time() * 1000 if now_unix_ms is None else now_unix_ms
            t = time.monotonic()
            self._arrivals.append((t, now - self.clock.epoch_unix_ms - stream_ms))
            while self._arrivals and self._arrivals[0][0] < t - self.ARRIVAL_WINDOW_S:
                self._arrivals.popleft()
        at = int(round(stream_ms * self.RATE / 1000))
        if self._pcm_start is None:
            self._pcm_start = at
        end = self._pcm_start + len(self._pcm)
        if at > end:  # a gap (loss): silence
            self._pcm = np.concatenate([self._pcm, np.zeros(at - end, np.int16)])
        elif at < end:  # overlaps what is there (timing jitter): the new samples win
            if at < self._pcm_start:
                samples = samples[self._pcm_start - at:]
                at = self._pcm_start
            self._pcm = self._pcm[: at - self._pcm_start]
        self._pcm = np.concatenate([self._pcm, samples])
        if len(self._pcm) > self._max:
            cut = len(self._pcm) - self._max
            self._pcm = self._pcm[cut:]
            self._pcm_start += cut

    def _target(self, now_unix_ms: float) -> int | None:
        c = self.clock
        if c.epoch_unix_ms is None:
            return None
        video = c.video_delay_ms if c.video_delay_ms is not None else 0.0
        # How late the speech itself arrives: the 90th percentile over the last 3 s (the
        # first sample of a packet is the latest one; one stalled burst does not hold all).
        late = sorted(d for _, d in self._arrivals)
        arrival = late[int(0.9 * (len(late) - 1))] if late else 0.0
        self.late_ms = max(0.0, arrival - video)
        self.delay_ms = max(video - self.codec_delay_ms, arrival)
        return int(round((now_unix_ms - c.epoch_unix_ms - self.delay_ms) * self.RATE / 1000))

    def _next_samples(self, n: int) -> np.ndarray:
        target = self._target(time.time() * 1000)
        if target is not None:
            if self._read is None or abs(self._read - target) > self.resync_ms * self.RATE / 1000:
                self._read = target  # start, or a jump of the video delay: one click
            else:  # follow slow changes 1 ms per 20 ms frame (skip or repeat 1 ms)
                step = self.RATE // 1000
                self._read += max(-step, min(step, target - self._read))
        out = np.zeros(n, np.int16)
        if self._read is None or self._pcm_start is None:
            return out
        lo = self._read - self._pcm_start
        if lo + n > 0 and lo < len(self._pcm):
            src = self._pcm[max(0, lo): lo + n]
            out[max(0, -lo): max(0, -lo) + len(src)] = src
        self._read += n
        drop = max(0, self._read - self._pcm_start - self.RATE)  # keep 1 s behind the read
        if drop:
            self._pcm = self._pcm[drop:]
            self._pcm_start += drop
        return out


class ReconstructedVideoTrack(MediaStreamTrack):
    """Plays reconstructed frames out at 25 fps.

    Frames arrive in bursts (a receiver renders every frame up to the newest 8x8 frame at
    once); this track releases them one per 40 ms. When more than ``max_queue`` wait (the
    receiver renders faster than real time after a stall) the oldest are dropped so latency
    stays bounded; when none wait, it waits (the viewer sees the last frame).
    """

    kind = "video"

    def __init__(self, max_queue: int = 10, clock: PlayoutClock | None = None) -> None:
        super().__init__()
        self.clock = clock
        self._in_flight: int | None = None
        self.queue: asyncio.Queue[OutputFrame] = asyncio.Queue()
        self.max_queue = max_queue
        self._next_release = 0.0
        self.sent = 0
        self.dropped = 0

    def put(self, frame: OutputFrame) -> None:
        while self.queue.qsize() >= self.max_queue:
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(frame)

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._in_flight is not None and self.clock is not None:
            # aiortc asks for the next frame once it has encoded and sent this one: that is
            # when the frame left the worker.
            self.clock.video_released(self._in_flight)
            self._in_flight = None
        frame = await self.queue.get()
        now = time.monotonic()
        if self._next_release > now:
            await asyncio.sleep(self._next_release - now)
        # Not earlier than one frame after the last; never build up a backlog of waits.
        self._next_release = max(time.monotonic(), self._next_release) + FRAME_S * 0.98
        self._in_flight = frame.timestamp_ms
        video = VideoFrame.from_ndarray(stamp_frame(frame.image, frame.timestamp_ms),
                                        format="rgb24")
        video.pts = int(frame.timestamp_ms) * (VIDEO_CLOCK // 1000)
        video.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return video


class LiveRelayTrack(MediaStreamTrack):
    """A consumer's end of an ``aiortc.contrib.media.MediaRelay`` that never falls behind by
    more than ``max_queued`` frames: older ones are dropped (counted in ``dropped``).

    The relay queues every frame for every consumer without bound. A viewer's audio sender
    (one 20 ms frame per trip through the event loop and the encoder's thread) that was
    slower than real time on a loaded box let its queue grow by ~15 frames a second: the
    call process grew ~10 MB a minute and that viewer's sound fell further behind
    (docs/CALL.md, Long calls). ``stop`` stops the relay's proxy too, so a closed viewer
    connection leaves no queue behind."""

    def __init__(self, proxy: MediaStreamTrack, max_queued: int = 5) -> None:
        super().__init__()
        self.kind = proxy.kind
        self.proxy = proxy
        self.max_queued = max_queued
        self.dropped = 0

    async def recv(self) -> Any:  # av.AudioFrame | av.VideoFrame
        queue = getattr(self.proxy, "_queue", None)
        while queue is not None and queue.qsize() > self.max_queued:
            queue.get_nowait()
            self.dropped += 1
        return await self.proxy.recv()

    def stop(self) -> None:
        super().stop()
        self.proxy.stop()
