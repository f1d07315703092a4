"""Rate measures: bits per pixel and kbit/s of a stream covering a clip."""

from __future__ import annotations


def bits_per_pixel(bits: float, n_frames: int, width: int = 256, height: int = 256) -> float:
    """Bits divided by the number of output pixels (width x height x frames)."""
    if n_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    return float(bits) / (width * height * n_frames)


def kbit_per_s(bits: float, duration_s: float) -> float:
    """Average rate in kbit/s (1 kbit = 1000 bits)."""
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    return float(bits) / duration_s / 1000.0
