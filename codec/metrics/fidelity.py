"""Pixel-fidelity measures: PSNR and SSIM between a decoded frame and its ground truth.

Conventions (the usual ones in video-codec evaluation):
- PSNR over all pixels and all three RGB channels, peak 255, in dB; identical frames give
  ``inf`` (callers average per clip with :func:`mean_psnr`, which caps at 100 dB).
- SSIM of Wang et al. (2004) on the luma plane (BT.601 Y from RGB), 11x11 Gaussian window
  with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, statistics without the sample-size
  correction, mean over the valid (un-padded) window positions. This is what
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)`` computes on the same plane.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

PSNR_CAP_DB = 100.0
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5  # -> an 11x11 window for sigma 1.5, as in the reference implementation
_SSIM_PAD = 5


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"frame shapes differ: {a.shape} vs {b.shape}")


def psnr(output: np.ndarray, truth: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical frames)."""
    _check_pair(output, truth)
    diff = output.astype(np.float64) - truth.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(peak * peak / mse))


def mean_psnr(values: list[float] | np.ndarray) -> float:
    """Average of per-frame PSNRs with ``inf`` capped at :data:`PSNR_CAP_DB`."""
    v = np.minimum(np.asarray(values, dtype=np.float64), PSNR_CAP_DB)
    return float(v.mean()) if v.size else float("nan")


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma (Y, 0..255) of an RGB image, float64; a 2-D input is returned as is."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 2:
        return x
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def ssim(output: np.ndarray, truth: np.ndarray, data_range: float = 255.0) -> float:
    """Structural similarity on luma (1.0 for identical frames)."""
    _check_pair(output, truth)
    x, y = luma(output), luma(truth)
    if min(x.shape) < 2 * _SSIM_PAD + 1:
        raise ValueError(f"frame {x.shape} is smaller than the 11x11 SSIM window")

    def blur(z: np.ndarray) -> np.ndarray:
        return gaussian_filter(z, sigma=_SSIM_SIGMA, truncate=_SSIM_TRUNCATE, mode="reflect")

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    p = _SSIM_PAD
    return float(s[p:-p, p:-p].mean())
