"""Which frame becomes the identity frame: the most useful face of the first second.

The receiver animates the identity frame for the whole call, so the frame it gets matters
more than any other: closed eyes or a turned head in it stay visible, and a warp can open
a closed mouth only by painting it. Among the candidate frames (the first second of a
file; the camera's first frames in a call), ``choose_identity`` takes the one whose face
the landmarks show most frontal, with the eyes open and the lips just apart (a neutral
speaking face), preferring the earliest on a tie. Frames without a confident face are
never chosen while any other has one; with none, the first frame stays.
"""

from __future__ import annotations

import numpy as np

from codec.sender.landmarks import FaceLandmarker


def eye_openness(points: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes (about 0.3 open, under 0.15 closed)."""
    p = np.asarray(points, np.float64)
    out = []
    for e in (p[36:42], p[42:48]):
        v = np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])
        h = 2.0 * np.linalg.norm(e[0] - e[3])
        out.append(v / max(h, 1e-6))  # type: ignore[operator]
    return float(np.mean(out))


def yaw(points: np.ndarray) -> float:
    """How far the nose tip sits from the jaw's centre, in half jaw widths (0: frontal)."""
    p = np.asarray(points, np.float64)
    jaw = p[16] - p[0]
    w = float(np.linalg.norm(jaw)) or 1.0
    return abs(float(np.dot(p[30] - (p[0] + p[16]) / 2, jaw / w))) / (w / 2)


def lip_gap(points: np.ndarray) -> float:
    """Inner-lip gap over mouth width."""
    p = np.asarray(points, np.float64)
    gap = np.mean([np.linalg.norm(p[a] - p[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
    return float(gap / max(np.linalg.norm(p[54] - p[48]), 1e-6))


def identity_score(points: np.ndarray) -> float:
    """Higher is better: eyes open, frontal, lips slightly apart."""
    return (min(eye_openness(points), 0.32) - 0.6 * yaw(points)
            - 0.5 * abs(lip_gap(points) - 0.05))


def choose_identity(frames: np.ndarray | list[np.ndarray], *, step: int = 2) -> int:
    """Index of the best identity frame among ``frames`` (every ``step``-th is looked at)."""
    lm = FaceLandmarker(smooth=False, redetect_every=1)
    best, best_score = 0, -np.inf
    for k in range(0, len(frames), max(1, step)):
        s = lm.measure(frames[k])
        if not s.confident or s.points is None:
            continue
        score = identity_score(s.points)
        if score > best_score + 0.01:
            best, best_score = k, score
    return best
