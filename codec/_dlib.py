"""dlib, once per process: its models and the one lock every caller holds.

The sender (face tracking, the motion code's landmarks), the receiver (the identity frame's
mouth), the metrics and training all use these objects: one HOG frontal face detector, one
68-point shape predictor, one face-descriptor network (``face-recognition-models``' data
files, no download), each built on first use, never at import. They are not safe to use
from several threads at once (two cameras tracked in two threads corrupted the heap), so
every call into them runs under ``DLIB_LOCK``; it is re-entrant, so a caller may hold it
around a sequence of calls that take it themselves. ``as_dlib_image`` makes the C-contiguous
uint8 RGB array dlib needs (its HOG detector misreads strided views).

``detect_face`` (the largest frontal face, as a ``FaceBox``) and ``landmarks`` (the 68
points inside a box) are the two calls the receiver's mouth stage and the metrics share
(``codec.metrics.landmarks`` re-exports them with the measures built on them).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import dlib
import numpy as np

DLIB_LOCK = threading.RLock()
N_LANDMARKS = 68
MAX_DETECT_SIDE = 640


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


@dataclass(frozen=True)
class FaceBox:
    """A face rectangle in pixel coordinates (right/bottom exclusive, as dlib gives them)."""

    left: int
    top: int
    right: int
    bottom: int

    def to_dlib(self) -> dlib.rectangle:
        return dlib.rectangle(self.left, self.top, self.right, self.bottom)

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)


def detect_face(frame: np.ndarray) -> FaceBox | None:
    """Largest frontal face in the frame (dlib HOG), or None when there is none.

    Frames larger than :data:`MAX_DETECT_SIDE` are searched on a downscaled copy (bounded
    time and memory for, e.g., a 4K frame) and the box is scaled back."""
    img = as_dlib_image(frame)
    scale = 1.0
    if max(img.shape[:2]) > MAX_DETECT_SIDE:
        scale = MAX_DETECT_SIDE / max(img.shape[:2])
        size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
        img = np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    detector = face_detector()
    with DLIB_LOCK:
        found = detector(img, 0)
        if len(found) == 0 and max(img.shape[:2]) <= MAX_DETECT_SIDE // 2:
            found = detector(img, 1)  # small frames: one upsampling step
    if len(found) == 0:
        return None
    boxes = [
        FaceBox(*(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom())))
        for r in found
    ]
    return max(boxes, key=lambda b: b.area)


def landmarks(frame: np.ndarray, box: FaceBox) -> np.ndarray:
    """The 68 landmark points (x, y) as float64 (68, 2), placed inside ``box``."""
    img = as_dlib_image(frame)
    predictor = shape_predictor_68()
    with DLIB_LOCK:
        shape = predictor(img, box.to_dlib())
    return np.array([(shape.part(i).x, shape.part(i).y) for i in range(N_LANDMARKS)], np.float64)
