"""The viewer's video track: reconstructed 256x256 frames at 25 fps, each stamped with its
presentation timestamp so a viewer can measure glass-to-glass latency.

The stamp is a 16-pixel strip under the picture (frame 256x272): 32 black/white cells of
8 pixels carrying the output timestamp in ms. It survives VP8 easily; the page hides it
with CSS and reads it back from the decoded frame (``client/stamp.js``, ``read_stamp``).
"""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from codec import CANVAS_FPS, CANVAS_SIZE
from codec.types import OutputFrame

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


class ReconstructedVideoTrack(MediaStreamTrack):
    """Plays reconstructed frames out at 25 fps.

    Frames arrive in bursts (a receiver renders every frame up to the newest 8x8 frame at
    once); this track releases them one per 40 ms. When more than ``max_queue`` wait (the
    receiver renders faster than real time after a stall) the oldest are dropped so latency
    stays bounded; when none wait, it waits (the viewer sees the last frame).
    """

    kind = "video"

    def __init__(self, max_queue: int = 10) -> None:
        super().__init__()
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
        frame = await self.queue.get()
        now = time.monotonic()
        if self._next_release > now:
            await asyncio.sleep(self._next_release - now)
        # Not earlier than one frame after the last; never build up a backlog of waits.
        self._next_release = max(time.monotonic(), self._next_release) + FRAME_S * 0.98
        video = VideoFrame.from_ndarray(stamp_frame(frame.image, frame.timestamp_ms),
                                        format="rgb24")
        video.pts = int(frame.timestamp_ms) * (VIDEO_CLOCK // 1000)
        video.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return video
