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

import numpy as np

# The face box and the 68 points are found by codec._dlib (the sender and the receiver use
# the same two functions); they are re-exported here with the measures built on them.
from codec._dlib import MAX_DETECT_SIDE, N_LANDMARKS, FaceBox, detect_face, landmarks

__all__ = ["MAX_DETECT_SIDE", "MOUTH", "N_LANDMARKS", "FaceBox", "detect_face", "distance_parts",
           "landmark_distance", "landmarks", "motion_correlation", "mouth_opening"]

MOUTH = slice(48, 68)
_INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
_MOUTH_CORNERS = (48, 54)


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
