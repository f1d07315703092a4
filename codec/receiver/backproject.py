"""The ``backproject`` baseline: the identity frame corrected to agree with each low-res frame.

    out = I + up(l - D(I))

with ``l`` the low-res frame interpolated to the output time, ``D`` the exact box
downsampler of the sender (``codec/sender/downsample.py``) and ``up`` a smooth upsampler
that is consistent with it (``D(up(r)) == r``), so ``D(out) == l`` exactly before the final
rounding / clipping to uint8. The default ``up`` is the consistent cubic: on val it tied with
the consistent linear (24.49 vs 24.51 dB, ``python -m benchmarks.bench_receivers --kind linear``)
and it is the same upsampler the ``bicubic`` baseline uses.
"""

from __future__ import annotations

import numpy as np

from codec.receiver.base import to_uint8
from codec.receiver.bicubic import UpsamplingReceiver
from codec.receiver.upsample import Upsampler, area_downsample


def soft_threshold(residual: np.ndarray, noise: float) -> np.ndarray:
    """``sign(r) max(|r| - noise, 0)``: a residual with the low-res frame's coding noise
    taken out (unchanged when ``noise`` <= 0)."""
    if noise <= 0:
        return residual
    return np.sign(residual) * np.maximum(np.abs(residual) - np.float32(noise), 0.0)


def back_project(image: np.ndarray, lowres: np.ndarray, upsampler: Upsampler, *,
                 noise: float = 0.0) -> np.ndarray:
    """``image + up(lowres - D(image))`` as float32 (not clipped).

    ``noise`` > 0 (grey levels): the residual is soft-thresholded by it first,
    ``sign(r) max(|r| - noise, 0)``, so a low-res frame's coding noise is not copied onto
    an image that already agrees with it to within that noise (the motion code's warp,
    whose own low frequencies are right), while real differences (lighting, colour, a
    misplaced head) are still corrected, less ``noise``."""
    x = np.asarray(image, dtype=np.float32)
    residual = np.asarray(lowres, dtype=np.float32) - area_downsample(x, lowres.shape[0])
    return x + upsampler(soft_threshold(residual, noise))


class BackprojectReceiver(UpsamplingReceiver):
    """Back-projects the identity frame onto each (time-interpolated) low-res frame."""

    name = "backproject"

    def render(self, t_ms: float) -> np.ndarray:
        assert self.identity is not None  # the base class guarantees it before rendering
        return to_uint8(back_project(self.identity.image, self.lowres_at(t_ms), self.upsampler))
