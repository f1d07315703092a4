"""The one receiver interface, shared by the file decoder and the live call.

A receiver is fed, in any interleaving, the identity frame, low-resolution frames with
their timestamps and decoded audio, and emits 256x256 frames on the 25 fps output grid
(t = 0, 40, 80, ... ms). It is streaming by construction: ``pull()`` returns every output
frame whose inputs are complete; ``flush()`` returns the rest at end of stream.

Timing modes:
- ``interpolate`` (default): an output frame at time t waits for the first low-res frame at
  or after t, so it can interpolate between the two that bracket it (adds up to one
  low-res frame interval of latency, 200 ms at 5 fps).
- ``low_latency``: an output frame is produced as soon as its time has come, using the
  latest low-res frame received (hold / extrapolation); no waiting for the next frame.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

import numpy as np

from codec import CANVAS_FPS, CANVAS_SIZE
from codec.types import AudioChunk, IdentityFrame, LowResFrame, OutputFrame

FRAME_MS = 1000.0 / CANVAS_FPS


class Receiver(abc.ABC):
    """Base class: keeps the input buffers and the output clock; subclasses render."""

    name: str = "base"

    def __init__(self, *, low_latency: bool = False, canvas_size: int = CANVAS_SIZE) -> None:
        self.low_latency = low_latency
        self.canvas_size = canvas_size
        self.identity: IdentityFrame | None = None
        self.lowres: list[LowResFrame] = []  # sorted by timestamp
        self.audio: list[AudioChunk] = []
        self._next_out = 0  # index of next output frame on the 25 fps grid
        self._ended = False

    # ---- input -------------------------------------------------------------------
    def set_identity(self, identity: IdentityFrame) -> None:
        self.identity = identity
        self.on_identity(identity)

    def push_lowres(self, frame: LowResFrame) -> None:
        ts = frame.timestamp_ms
        if self.lowres and ts <= self.lowres[-1].timestamp_ms:
            if any(f.timestamp_ms == ts for f in self.lowres):
                return  # duplicate
            if ts < self._out_time(self._next_out) - 1000:
                return  # far too late to matter
            self.lowres.append(frame)
            self.lowres.sort(key=lambda f: f.timestamp_ms)
        else:
            self.lowres.append(frame)
        self._trim()

    def push_audio(self, chunk: AudioChunk) -> None:
        self.audio.append(chunk)
        self._trim()

    # ---- output ------------------------------------------------------------------
    def pull(self) -> list[OutputFrame]:
        out: list[OutputFrame] = []
        if self.identity is None or not self.lowres:
            return out
        while True:
            t = self._out_time(self._next_out)
            last = self.lowres[-1].timestamp_ms
            ready = self._due(t) if self.low_latency else t <= last
            if not ready:
                break
            out.append(self._render_at(t))
            self._next_out += 1
        return out

    def flush(self) -> list[OutputFrame]:
        """Render every remaining frame up to the last low-res frame's time."""
        out: list[OutputFrame] = []
        if self.identity is None or not self.lowres:
            return out
        last = self.lowres[-1].timestamp_ms
        while self._out_time(self._next_out) <= last + FRAME_MS * 0.5 + 1e-6 or (
            self._out_time(self._next_out) <= last + self.lowres_interval_ms() - FRAME_MS + 1e-6
        ):
            out.append(self._render_at(self._out_time(self._next_out)))
            self._next_out += 1
        return out

    def run(
        self,
        identity: IdentityFrame,
        lowres: Iterable[LowResFrame],
        audio: Iterable[AudioChunk] = (),
    ) -> list[OutputFrame]:
        """Offline convenience: feed everything, return every output frame."""
        self.set_identity(identity)
        for chunk in audio:
            self.push_audio(chunk)
        frames: list[OutputFrame] = []
        for f in lowres:
            self.push_lowres(f)
            frames.extend(self.pull())
        frames.extend(self.flush())
        return frames

    # ---- for subclasses ------------------------------------------------------------
    def on_identity(self, identity: IdentityFrame) -> None:  # noqa: B027 - optional hook
        """Called when a (new) identity frame arrives."""

    @abc.abstractmethod
    def render(self, t_ms: float) -> np.ndarray:
        """Return the (256, 256, 3) uint8 frame for output time t_ms."""

    # ---- helpers -------------------------------------------------------------------
    def lowres_interval_ms(self) -> float:
        if len(self.lowres) >= 2:
            d = np.diff([f.timestamp_ms for f in self.lowres[-8:]])
            return float(np.median(d))
        return 200.0

    def lowres_at(self, t_ms: float) -> np.ndarray:
        """Low-res frame at time t: linear interpolation between the bracketing frames
        (hold outside the received range). Returns float32 (s, s, 3)."""
        frames = self.lowres
        if t_ms <= frames[0].timestamp_ms:
            return frames[0].pixels
        if t_ms >= frames[-1].timestamp_ms:
            return frames[-1].pixels
        times = [f.timestamp_ms for f in frames]
        j = int(np.searchsorted(times, t_ms, side="right"))
        a, b = frames[j - 1], frames[j]
        w = (t_ms - a.timestamp_ms) / max(1, b.timestamp_ms - a.timestamp_ms)
        return (1.0 - w) * a.pixels + w * b.pixels

    def audio_window(self, t_ms: float, before_ms: float, after_ms: float) -> np.ndarray:
        """Audio samples covering [t - before, t + after], zero-filled where missing."""
        rate = 16000
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
        return OutputFrame(image=img, timestamp_ms=int(round(t)))

    def _out_time(self, k: int) -> float:
        return k * FRAME_MS

    def _due(self, t: float) -> bool:
        # Low-latency: every grid time up to the newest low-res frame's time, plus the
        # frames between it and the next expected one (they are extrapolated by hold).
        last = self.lowres[-1].timestamp_ms
        return t <= last + self.lowres_interval_ms() - FRAME_MS + 1e-6

    def _trim(self) -> None:
        # Bounded memory: keep what the output clock can still need.
        horizon = self._out_time(self._next_out) - 2000
        while len(self.lowres) > 2 and self.lowres[1].timestamp_ms < horizon:
            self.lowres.pop(0)
        while len(self.audio) > 1 and (
            self.audio[0].timestamp_ms + 1000 * len(self.audio[0].samples) / 16000 < horizon
        ):
            self.audio.pop(0)
