"""The exact low-resolution operator shared by sender and receiver.

The sender transmits ``box_downsample(canvas, factor)``: each low-resolution pixel is the
plain mean of a factor x factor block of the 256x256 canvas. The receiver knows this
operator exactly, which is what back-projection and analysis-by-synthesis rely on.
"""

from __future__ import annotations

import numpy as np


def box_downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks. Works on (..., H, W, C); returns float32.

    H and W must be multiples of ``factor``.
    """
    x = np.asarray(images, dtype=np.float32)
    *lead, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"size {h}x{w} is not a multiple of {factor}")
    x = x.reshape(*lead, h // factor, factor, w // factor, factor, c)
    return x.mean(axis=(-4, -2))


def box_upsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, the adjoint (up to scale) of ``box_downsample``."""
    x = np.asarray(images, dtype=np.float32)
    return np.repeat(np.repeat(x, factor, axis=-3), factor, axis=-2)


def lowres_factor(canvas_size: int, lowres_size: int) -> int:
    if canvas_size % lowres_size:
        raise ValueError(f"low-res size {lowres_size} does not divide canvas {canvas_size}")
    return canvas_size // lowres_size
