"""dlib, once per process: its models and the one lock every caller holds.

The sender (face tracking, the motion code's landmarks), the receiver (the identity frame's
mouth), the metrics and training all use these objects: one HOG frontal face detector, one
68-point shape predictor, one face-descriptor network (``face-recognition-models``' data
files, no download), each built on first use, never at import. They are not safe to use
from several threads at once (two cameras tracked in two threads corrupted the heap), so
every call into them runs under ``DLIB_LOCK``; it is re-entrant, so a caller may hold it
around a sequence of calls that take it themselves. ``as_dlib_image`` makes the C-contiguous
uint8 RGB array dlib needs (its HOG detector misreads strided views).
"""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from typing import Any

import dlib
import numpy as np

DLIB_LOCK = threading.RLock()


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
