"""Lazy, cached loaders of the dlib models shipped by ``face-recognition-models``.

Nothing is loaded at import time; each model is read once, on first use, from the package's
own data files (no download).
"""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from typing import Any

import dlib
import numpy as np

# The shared detector / predictor objects are not safe to use from several threads at once;
# callers that may run concurrently (one receiver per caller in the call) hold this lock.
DLIB_LOCK = threading.Lock()


def _model_path(kind: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package imports the deprecated pkg_resources
        import face_recognition_models as frm

    if kind == "landmarks68":
        return str(frm.pose_predictor_model_location())
    if kind == "descriptor":
        return str(frm.face_recognition_model_location())
    raise ValueError(kind)


@lru_cache(maxsize=1)
def face_detector() -> Any:
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def shape_predictor_68() -> Any:
    return dlib.shape_predictor(_model_path("landmarks68"))


@lru_cache(maxsize=1)
def face_descriptor_model() -> Any:
    return dlib.face_recognition_model_v1(_model_path("descriptor"))


def as_dlib_image(frame: np.ndarray) -> np.ndarray:
    """dlib needs C-contiguous uint8 RGB (its HOG detector misreads strided views)."""
    x = np.asarray(frame)
    if x.dtype != np.uint8:
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB frame, got {x.shape}")
    return np.ascontiguousarray(x)
