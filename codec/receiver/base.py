"""The one receiver interface, shared by the file decoder and the live call.

A receiver is fed, in any interleaving, the identity frame, low-resolution frames with
their timestamps and decoded audio, and emits 256x256 frames on the 25 fps output grid
(t = 0, 40, 80, ... ms). It is streaming by construction: ``pull()`` returns every output
frame whose inputs are complete; ``flush()`` returns the rest at end of stream.

Timing modes:
- ``interpolate`` (default): an output frame at time t waits for the first low-res frame at
  or after t, so it can interpolate between the two that bracket it (adds up to one
  low-res frame interval of latency, 200 ms at 5 fps).
- ``low_latency``: no waiting for the next low-res frame. Without a clock, receiving the
  low-res frame at time T releases every grid time up to T plus the frames until the next
  expected one (T + interval - 40 ms), rendered by holding the latest frame. With a clock
  (``pull(now_ms=...)``), every grid time up to ``now_ms`` is released, holding through loss.

Loss and hostile input: duplicates are ignored, late frames are inserted in order (or
dropped when far too late), missing frames just widen the interpolation gap. A gap longer
than ``max_gap_ms`` (e.g. a dropped connection, or a bogus timestamp) is not filled: after
holding one interval, the output clock jumps to the next low-res frame. Buffers are bounded
(old inputs are trimmed as the output clock advances, and capped when nobody pulls), so
memory stays flat over a call of any length. If the identity frame is missing when output
is due, a placeholder (the smooth upsampling of the first low-res frame) stands in until the
real one arrives; frames rendered from it carry ``meta["identity"] == "placeholder"``. A
receiver that sets ``renders_without_identity`` draws those frames itself instead (the
``neural`` receiver delegates them to ``voice``, issue 14): output starts at the first
low-res frame, no placeholder is made, and ``identity`` stays None until the real one.

The motion code: ``set_motion_anchor`` (the identity frame's landmarks) and
``push_motion`` (decoded landmark samples) keep a bounded buffer like the low-res one;
``motion_at(t)`` gives the landmarks at an output time (interpolated between samples,
None where the sender could not measure the face, where samples are missing, or when the
anchor does not belong to the identity frame in use). Receivers that do not use the code
ignore it.
"""

from __future__ import annotations

import abc
import math
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable

import numpy as np

from codec import AUDIO_RATE, CANVAS_SIZE, FRAME_MS
from codec.bitstream.motion_codec import MotionSample
from codec.errors import InputError
from codec.receiver.upsample import Upsampler
from codec.types import AudioChunk, IdentityFrame, LowResFrame, OutputFrame


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image to uint8."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)

class Receiver(abc.ABC):
    """Base class: keeps the input buffers and the output clock; subclasses render."""

    name: str = "base"

    #: A jump in low-res time longer than this is not filled with output frames.
    max_gap_ms: float = 10_000.0
    #: Hard caps on the input buffers, for callers that push without pulling.
    max_buffered_lowres: int = 256
    max_buffered_audio_s: float = 30.0
    #: How much low-res time may arrive before output starts without an identity frame.
    identity_wait_ms: float = 1_000.0
    #: A low-res frame this much older than the output clock is dropped.
    max_lateness_ms: float = 1_000.0
    #: Longest plausible low-res frame interval (1 fps); longer pauses are loss.
    max_lowres_interval_ms: float = 1_000.0
    #: ``render`` copes with ``identity is None`` itself: no wait, no placeholder.
    renders_without_identity: bool = False

    def __init__(self, *, low_latency: bool = False, canvas_size: int = CANVAS_SIZE) -> None:
        self.low_latency = low_latency
        self.canvas_size = canvas_size
        self.identity: IdentityFrame | None = None
        self.identity_is_placeholder = False
        self.lowres: list[LowResFrame] = []  # sorted by timestamp
        self._times: list[int] = []  # their timestamps, kept in step
        self._intervals: deque[int] = deque(maxlen=8)  # recent steps between low-res frames
        self.audio: list[AudioChunk] = []
        self._next_out = 0  # index of next output frame on the 25 fps grid
        self.motion: list[MotionSample] = []  # sorted by timestamp
        self._motion_times: list[int] = []
        self.motion_anchor: np.ndarray | None = None
        self._anchor_refresh_id: int | None = None

    #: Longest gap between two code samples that is interpolated across.
    max_motion_gap_ms: float = 240.0
    #: How long the newest code sample is held past its time (low latency, end of stream).
    motion_hold_ms: float = 240.0

    # ---- input -------------------------------------------------------------------
    def set_identity(self, identity: IdentityFrame) -> None:
        image = np.asarray(identity.image)
        expected = (self.canvas_size, self.canvas_size, 3)
        if image.shape != expected or image.dtype != np.uint8:
            raise InputError(
                f"identity frame must be {expected} uint8, got {image.shape} {image.dtype}"
            )
        self.identity = identity
        self.identity_is_placeholder = False
        self.on_identity(identity)

    def push_lowres(self, frame: LowResFrame) -> None:
        pixels = self._checked_pixels(frame.pixels)
        ts = int(frame.timestamp_ms)
        if ts < 0:
            raise InputError(f"low-res frame has a negative timestamp ({ts} ms)")
        quant = float(frame.quant) if np.isfinite(frame.quant) and 0 <= frame.quant <= 64 else 0.0
        frame = LowResFrame(pixels=pixels, timestamp_ms=ts, quant=quant)
        if not self._times or ts > self._times[-1]:
            if self._times and ts - self._times[-1] <= self.max_lowres_interval_ms:
                self._intervals.append(ts - self._times[-1])
            self.lowres.append(frame)
            self._times.append(ts)
        else:
            j = bisect_right(self._times, ts)
            if j and self._times[j - 1] == ts:
                return  # duplicate
            if ts < self._out_time(self._next_out) - self.max_lateness_ms:
                return  # far too late to matter
            self.lowres.insert(j, frame)
            self._times.insert(j, ts)
        self._trim()

    def set_motion_anchor(self, points: np.ndarray, refresh_id: int = 0) -> None:
        """The identity frame's 68 landmarks (refresh id of that identity frame)."""
        pts = np.asarray(points, np.float64)
        if pts.shape != (68, 2) or not np.isfinite(pts).all():
            raise InputError(f"motion anchor must be (68, 2) finite points, got {pts.shape}")
        self.motion_anchor = pts
        self._anchor_refresh_id = int(refresh_id)
        self.on_motion_anchor()

    def push_motion(self, sample: MotionSample) -> None:
        ts = int(sample.timestamp_ms)
        pts = sample.points
        if pts is not None:
            pts = np.asarray(pts, np.float32)
            if pts.shape != (68, 2) or not np.isfinite(pts).all():
                raise InputError(f"motion sample must be (68, 2) finite points, got {pts.shape}")
        bg = sample.background
        if bg is not None:
            bg = np.asarray(bg, np.float64)
            if bg.shape != (2, 3) or not np.isfinite(bg).all():
                raise InputError(f"motion background must be a finite 2x3 matrix, got {bg.shape}")
        j = bisect_right(self._motion_times, ts)
        if j and self._motion_times[j - 1] == ts:
            self.motion[j - 1] = MotionSample(ts, pts, bg)
            return
        self.motion.insert(j, MotionSample(ts, pts, bg))
        self._motion_times.insert(j, ts)
        self._trim()

    def motion_usable(self) -> bool:
        """The anchor belongs to the identity frame being animated."""
        return (self.motion_anchor is not None and self.identity is not None
                and not self.identity_is_placeholder
                and self._anchor_refresh_id == self.identity.refresh_id)

    def motion_at(self, t_ms: float) -> np.ndarray | None:
        """(68, 2) landmarks at t from the code, or None (see the module's docstring)."""
        sample = self.motion_sample_at(t_ms)
        return None if sample is None else sample.points

    def motion_sample_at(self, t_ms: float) -> MotionSample | None:
        """The code's sample at t (landmarks and background interpolated between samples),
        or None where the code says nothing usable."""
        if not self.motion or not self.motion_usable():
            return None
        times = self._motion_times
        j = bisect_right(times, t_ms)
        if j and abs(times[j - 1] - t_ms) < 0.5:
            hit = self.motion[j - 1]
            return hit if hit.points is not None else None
        if j == 0:
            return None
        a = self.motion[j - 1]
        if j == len(times):  # past the newest sample: hold it briefly
            ok = a.points is not None and t_ms - a.timestamp_ms <= self.motion_hold_ms
            return a if ok else None
        b = self.motion[j]
        if a.points is None or b.points is None or b.timestamp_ms - a.timestamp_ms > self.max_motion_gap_ms:
            return None
        w = (t_ms - a.timestamp_ms) / (b.timestamp_ms - a.timestamp_ms)
        points = ((1.0 - w) * a.points + w * b.points).astype(np.float32)
        bg = None
        if a.background is not None or b.background is not None:
            eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
            ma = eye if a.background is None else a.background
            mb = eye if b.background is None else b.background
            bg = (1.0 - w) * ma + w * mb
        return MotionSample(int(round(t_ms)), points, bg)

    def push_audio(self, chunk: AudioChunk) -> None:
        samples = np.asarray(chunk.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise InputError(f"audio chunk must be mono (N,), got shape {samples.shape}")
        samples = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        self.audio.append(AudioChunk(samples=samples, timestamp_ms=int(chunk.timestamp_ms)))
        if len(self.audio) > 1 and self.audio[-1].timestamp_ms < self.audio[-2].timestamp_ms:
            self.audio.sort(key=lambda c: c.timestamp_ms)
        self._trim()

    # ---- output ------------------------------------------------------------------
    def pull(self, now_ms: float | None = None) -> list[OutputFrame]:
        """Every output frame that is ready. ``now_ms`` (the presentation clock of a live
        call) lets low-latency mode hold through loss, and bounds interpolate-mode waiting
        to one low-res interval."""
        out: list[OutputFrame] = []
        if not self.lowres or not self._ensure_identity(final=False):
            return out
        if now_ms is not None and now_ms - self._out_time(self._next_out) > self.max_gap_ms:
            self._next_out = math.floor(now_ms / FRAME_MS)  # clock far ahead: do not replay
        while True:
            self._skip_gap()
            t = self._out_time(self._next_out)
            if not self._ready(t, now_ms):
                break
            out.append(self._render_at(t))
            self._next_out += 1
        self._trim()
        return out

    def flush(self, end_ms: float | None = None) -> list[OutputFrame]:
        """Render every remaining frame: those starting before ``end_ms`` when the stream's
        end is known, else until the frame before the next expected low-res frame."""
        out: list[OutputFrame] = []
        if not self.lowres or not self._ensure_identity(final=True):
            return out
        last = self._times[-1]
        # Exclusive end: the frame shown at t lasts until t + 40 ms.
        stop = last + max(self.lowres_interval_ms(), FRAME_MS)
        if end_ms is not None:
            stop = min(float(end_ms), last + self.max_gap_ms)
        while True:
            self._skip_gap()
            t = self._out_time(self._next_out)
            if t >= stop - 1e-6:
                break
            out.append(self._render_at(t))
            self._next_out += 1
        return out

    def run(
        self,
        identity: IdentityFrame,
        lowres: Iterable[LowResFrame],
        audio: Iterable[AudioChunk] = (),
        *,
        end_ms: float | None = None,
    ) -> list[OutputFrame]:
        """Offline convenience: feed everything, return every output frame (those before
        ``end_ms`` when given: low-latency mode may have rendered a few beyond it)."""
        self.set_identity(identity)
        for chunk in audio:
            self.push_audio(chunk)
        frames: list[OutputFrame] = []
        for f in lowres:
            self.push_lowres(f)
            frames.extend(self.pull())
        frames.extend(self.flush(end_ms))
        if end_ms is not None:
            frames = [f for f in frames if f.timestamp_ms < end_ms]
        return frames

    # ---- for subclasses ------------------------------------------------------------
    def on_identity(self, identity: IdentityFrame) -> None:  # noqa: B027 - optional hook
        """Called when a (new) identity frame arrives (also for the placeholder)."""

    def on_motion_anchor(self) -> None:  # noqa: B027 - optional hook
        """Called when a (new) motion anchor arrives."""

    @abc.abstractmethod
    def render(self, t_ms: float) -> np.ndarray:
        """Return the (256, 256, 3) uint8 frame for output time t_ms."""

    # ---- helpers -------------------------------------------------------------------
    def lowres_interval_ms(self) -> float:
        """The low-res stream's frame interval: median of the recent in-order steps that
        were not gaps (200 ms until known)."""
        if self._intervals:
            recent = float(np.median(self._intervals))
            return min(max(recent, FRAME_MS), self.max_lowres_interval_ms)
        return 200.0

    def bracket(self, t_ms: float) -> tuple[int, int, float]:
        """Indices (i, j) of the low-res frames around t and the weight of j in [0, 1]
        (i == j outside the received range: hold)."""
        j = bisect_right(self._times, t_ms)
        if j == 0:
            return 0, 0, 0.0
        if j == len(self._times):
            return j - 1, j - 1, 0.0
        a, b = self._times[j - 1], self._times[j]
        return j - 1, j, float(t_ms - a) / max(1, b - a)

    def lowres_at(self, t_ms: float) -> np.ndarray:
        """Low-res frame at time t: linear interpolation between the bracketing frames
        (hold outside the received range). Returns float32 (s, s, 3)."""
        i, j, w = self.bracket(t_ms)
        if i == j or w == 0.0:
            return self.lowres[i].pixels
        return (1.0 - w) * self.lowres[i].pixels + w * self.lowres[j].pixels

    def audio_window(self, t_ms: float, before_ms: float, after_ms: float) -> np.ndarray:
        """Audio samples covering [t - before, t + after], zero-filled where missing."""
        rate = AUDIO_RATE
        n = int(round((before_ms + after_ms) * rate / 1000))
        out = np.zeros(n, np.float32)
        start = t_ms - before_ms
        for c in self.audio:
            off = int(round((c.timestamp_ms - start) * rate / 1000))
            s0, s1 = max(0, off), min(n, off + len(c.samples))
            if s1 > s0:
                out[s0:s1] = c.samples[s0 - off : s1 - off]
        return out

    def _render_at(self, t: float) -> OutputFrame:
        img = self.render(t)
        meta = {"identity": "placeholder"} if self.identity_is_placeholder else {}
        return OutputFrame(image=img, timestamp_ms=int(round(t)), meta=meta)

    def _out_time(self, k: int) -> float:
        return k * FRAME_MS

    def _ready(self, t: float, now_ms: float | None) -> bool:
        last = self._times[-1]
        if self.low_latency:
            if now_ms is not None:
                return t <= now_ms + 1e-6
            return t <= last + self.lowres_interval_ms() - FRAME_MS + 1e-6
        if now_ms is not None and t <= now_ms - self.lowres_interval_ms() - 1e-6:
            return True  # waited a whole interval for the next frame: hold
        if t > last:
            return False
        return t < last or now_ms is not None or not self._code_sample_due(t)

    def _code_sample_due(self, t: float) -> bool:
        """Offline (a file, no presentation clock): the frame at the newest 8x8 frame waits
        for the code's next sample when the code runs and has none at t, so that it is
        interpolated rather than held. At 12.5 samples/s every other 8x8 frame falls
        between two samples, and the later one travels with the next 8x8 frame. A live call
        does not wait: that would add 40 ms to its latency."""
        if not self.motion or not self.motion_usable():
            return False
        newest = self._motion_times[-1]
        return newest < t - 0.5 and t - newest <= self.max_motion_gap_ms

    def _skip_gap(self) -> None:
        """Jump the output clock over a gap in low-res time longer than max_gap_ms."""
        t = self._out_time(self._next_out)
        j = bisect_right(self._times, t)
        if j == len(self._times):
            return
        nxt = self._times[j]
        if j == 0:
            jump = nxt - t > self.max_gap_ms
        else:
            prev = self._times[j - 1]
            hold_end = prev + self.lowres_interval_ms()
            jump = nxt - prev > self.max_gap_ms and t >= hold_end
        if jump:
            self._next_out = math.ceil(nxt / FRAME_MS - 1e-9)

    def _ensure_identity(self, *, final: bool) -> bool:
        if self.identity is not None or self.renders_without_identity:
            return True
        if not final and self._times[-1] - self._times[0] < self.identity_wait_ms:
            return False
        first = self.lowres[0].pixels
        image = Upsampler(self.canvas_size)(first)
        placeholder = IdentityFrame(
            image=to_uint8(image),
            timestamp_ms=self._times[0],
        )
        self.identity = placeholder
        self.identity_is_placeholder = True
        self.on_identity(placeholder)
        return True

    def _checked_pixels(self, pixels: np.ndarray) -> np.ndarray:
        x = np.asarray(pixels, dtype=np.float32)
        if (
            x.ndim != 3
            or x.shape[0] != x.shape[1]
            or x.shape[2] != 3
            or x.shape[0] == 0
            or self.canvas_size % x.shape[0]
        ):
            raise InputError(
                f"low-res frame must be (s, s, 3) with s dividing {self.canvas_size}, "
                f"got shape {x.shape}"
            )
        return np.clip(np.nan_to_num(x, nan=128.0, posinf=255.0, neginf=0.0), 0.0, 255.0)

    def _trim(self) -> None:
        # Bounded memory: keep what the output clock can still need ...
        horizon = self._out_time(self._next_out) - 2000
        drop = 0
        while len(self._times) - drop > 2 and self._times[drop + 1] < horizon:
            drop += 1
        # ... and never more than the caps, even if nobody pulls (then the unrendered
        # time of the dropped frames is skipped).
        over_cap = len(self._times) - self.max_buffered_lowres > drop
        drop = max(drop, len(self._times) - self.max_buffered_lowres)
        if drop > 0:
            del self.lowres[:drop]
            del self._times[:drop]
            if over_cap:
                self._next_out = max(self._next_out, math.ceil(self._times[0] / FRAME_MS - 1e-9))
        k = 0
        while len(self._motion_times) - k > 2 and self._motion_times[k + 1] < horizon:
            k += 1
        k = max(k, len(self._motion_times) - 4 * self.max_buffered_lowres)
        if k > 0:
            del self.motion[:k]
            del self._motion_times[:k]
        while len(self.audio) > 1 and (
            self.audio[0].timestamp_ms + 1000 * len(self.audio[0].samples) / AUDIO_RATE
            < horizon
        ):
            self.audio.pop(0)
        cap = int(self.max_buffered_audio_s * AUDIO_RATE)
        total = sum(len(c.samples) for c in self.audio)
        while len(self.audio) > 1 and total > cap:
            total -= len(self.audio.pop(0).samples)
