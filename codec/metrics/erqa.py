"""ERQA (Edge Restoration Quality Assessment, Kirillova et al. 2021), as used by VFH-GAN.

ERQA is the F1 score of Canny edges (thresholds 100/200) of the output against those of the
ground truth, after a global shift of up to +-3 px that best aligns the two (MSE) and with
one-pixel edge shifts forgiven; 1.0 means every edge restored in place. We call the
reference implementation itself (PyPI ``erqa``, version 1.1 of the metric, the package CLI's
default), installed without its ``opencv-python`` dependency so that the project's headless
OpenCV stays the only ``cv2``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

ERQA_VERSION = "1.1"


@lru_cache(maxsize=1)
def _metric() -> Any:
    try:
        from erqa import ERQA
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "ERQA needs the 'erqa' package: pip install --no-deps erqa==1.1.2 "
            "(scripts/bootstrap.sh does this for the 'bench' extra)"
        ) from exc
    return ERQA(version=ERQA_VERSION)


def erqa(output: np.ndarray, truth: np.ndarray) -> float:
    """ERQA of an RGB uint8 output frame against its ground truth (0..1, higher is better)."""
    if output.shape != truth.shape or output.ndim != 3 or output.shape[2] != 3:
        raise ValueError(f"expected two (H, W, 3) frames, got {output.shape} and {truth.shape}")
    a = np.ascontiguousarray(np.asarray(output, np.uint8)[..., ::-1])  # the package wants BGR
    b = np.ascontiguousarray(np.asarray(truth, np.uint8)[..., ::-1])
    return float(_metric()(a, b))
