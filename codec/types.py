"""Shared data types of the sender -> bitstream -> receiver flow.

Conventions used everywhere:
- images are numpy arrays in RGB, shape (H, W, 3); canvas and identity frames are uint8,
  low-resolution frames are float32 in [0, 255] (exact box means before quantisation,
  decoded values after it);
- timestamps are integer milliseconds from the start of the call / clip;
- audio is mono float32 in [-1, 1] at 16 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codec import CANVAS_FPS


@dataclass
class FaceClip:
    """A face video as the sender sees it: the 256x256, 25 fps canvas and the 16 kHz speech."""

    frames: np.ndarray  # (T, 256, 256, 3) uint8
    fps: float = float(CANVAS_FPS)
    audio: np.ndarray | None = None  # (N,) float32 at sample_rate, None when no audio track
    sample_rate: int = 16000
    # Crop box (x0, y0, side) in source pixels for each canvas frame; for diagnostics.
    boxes: np.ndarray | None = None
    source: str = ""

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    def timestamps_ms(self) -> np.ndarray:
        return np.round(np.arange(self.n_frames) * 1000.0 / self.fps).astype(np.int64)


@dataclass
class IdentityFrame:
    """The high-resolution frame sent once at call start (and on refresh)."""

    image: np.ndarray  # (256, 256, 3) uint8
    timestamp_ms: int = 0
    refresh_id: int = 0


@dataclass
class LowResFrame:
    """One low-resolution frame of the 8x8 (or 16x16, 32x32) stream."""

    pixels: np.ndarray  # (s, s, 3) float32 in [0, 255]
    timestamp_ms: int
    quant: float = 0.0  # the quantiser step it was coded with (grey levels; 0: not known)


@dataclass
class AudioChunk:
    """Decoded speech samples starting at timestamp_ms."""

    samples: np.ndarray  # (N,) float32 in [-1, 1] at 16 kHz
    timestamp_ms: int


@dataclass
class OutputFrame:
    """One reconstructed 256x256 frame at its presentation time."""

    image: np.ndarray  # (256, 256, 3) uint8
    timestamp_ms: int
    meta: dict = field(default_factory=dict)
