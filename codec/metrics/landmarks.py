"""68-point facial landmarks (dlib) and the measures built on them.

The face box is found once on the ground-truth frame and the same box is used to place the
landmarks on both the ground truth and the decoded frame, so a distorted output cannot move
the box; what differs is only where the shape predictor puts the points inside it.

- :func:`landmark_distance`: mean Euclidean distance between corresponding points, in
  pixels of the frame given (256x256 canvas in the benchmark), over all 68 points or the
  20 mouth points (48-67, iBUG numbering).
- :func:`mouth_opening`: inner-lip gap (mean of the 61-67, 62-66, 63-65 distances) divided
  by the mouth width (48-54), so it does not depend on face size.
- :func:`motion_correlation`: Pearson correlation over time of two such series.
- :func:`distance_parts`: a region's landmark distance split into where the region is
  (the mean offset of its points) and its shape (the distance left once that offset is
  removed), to tell a misplaced mouth from a mis-shaped one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import dlib
import numpy as np

from codec._dlib import as_dlib_image, face_detector, shape_predictor_68

N_LANDMARKS = 68
MAX_DETECT_SIDE = 640
MOUTH = slice(48, 68)
_INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
_MOUTH_CORNERS = (48, 54)


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
    shape = shape_predictor_68()(as_dlib_image(frame), box.to_dlib())
    return np.array([(shape.part(i).x, shape.part(i).y) for i in range(N_LANDMARKS)], np.float64)


def landmark_distance(points: np.ndarray, truth: np.ndarray, region: slice = slice(None)) -> float:
    """Mean Euclidean distance between corresponding landmarks (pixels)."""
    a = np.asarray(points, np.float64)[region]
    b = np.asarray(truth, np.float64)[region]
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"landmark arrays differ or are malformed: {a.shape} vs {b.shape}")
    return float(np.linalg.norm(a - b, axis=1).mean())


def distance_parts(points: np.ndarray, truth: np.ndarray,
                   region: slice = slice(None)) -> tuple[np.ndarray, float]:
    """(offset, shape): the mean displacement (dx, dy) of the region's points from the
    truth, and the mean Euclidean distance left after subtracting it. The offset's length
    and the shape distance are each at most :func:`landmark_distance` of the region."""
    landmark_distance(points, truth, region)  # validates the shapes
    d = np.asarray(points, np.float64)[region] - np.asarray(truth, np.float64)[region]
    offset = d.mean(0)
    return offset, float(np.linalg.norm(d - offset, axis=1).mean())


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip opening divided by mouth width (0 for closed lips)."""
    p = np.asarray(points, np.float64)
    gap = np.mean([np.linalg.norm(p[i] - p[j]) for i, j in _INNER_LIP_PAIRS])
    width = np.linalg.norm(p[_MOUTH_CORNERS[0]] - p[_MOUTH_CORNERS[1]])
    return float(gap / width) if width > 0 else 0.0


def motion_correlation(series: np.ndarray, truth: np.ndarray) -> float:
    """Pearson correlation over time of an output series with the ground-truth one.

    Returns NaN when the ground truth does not move (nothing to follow) or there are fewer
    than 3 samples, and 0.0 when the ground truth moves but the output is constant (the
    output does not follow it at all).
    """
    a = np.asarray(series, np.float64).ravel()
    b = np.asarray(truth, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"series lengths differ: {a.shape} vs {b.shape}")
    if a.size < 3 or np.std(b) < 1e-9:
        return float("nan")
    if np.std(a) < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
