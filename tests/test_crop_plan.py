"""codec/sender/crop_plan.py: the offline crop track of a whole clip."""

from __future__ import annotations

import numpy as np
import pytest

from codec.sender.crop_plan import canvas_jitter, plan_crop_track
from codec.sender.face_detector import FaceBox


def face(cx: float, cy: float, size: float) -> FaceBox:
    return FaceBox(cx - size / 2, cy - size / 2, size, size)


def xys(boxes: np.ndarray) -> np.ndarray:
    """(cx, cy, side) -> (x0, y0, side)."""
    b = np.asarray(boxes, dtype=np.float64).copy()
    b[:, 0] -= b[:, 2] / 2
    b[:, 1] -= b[:, 2] / 2
    return b


def test_plan_steady_noisy_detections_do_not_jitter() -> None:
    rng = np.random.default_rng(3)
    faces: list[FaceBox | None] = [None] * 300
    for i in range(0, 300, 2):
        faces[i] = face(640 + rng.normal(0, 3), 300 + rng.normal(0, 3), 120 + rng.normal(0, 2))
    faces[101] = face(100, 100, 40)  # a false positive elsewhere
    boxes = plan_crop_track(faces, 1280, 720)
    assert boxes is not None and boxes.shape == (300, 3)
    assert canvas_jitter(xys(boxes)) < 0.05
    assert np.ptp(boxes[:, 0]) < 8


def test_plan_cut_snaps_and_drift_moves() -> None:
    faces: list[FaceBox | None] = []
    for i in range(200):
        if i < 100:
            faces.append(face(400 + 0.6 * i, 300, 100))  # slow drift: 60 px over 4 s
        else:
            faces.append(face(1400, 500, 140))  # cut to another shot
    boxes = plan_crop_track(faces, 1920, 1080)
    assert boxes is not None
    step = np.hypot(np.diff(boxes[:, 0]), np.diff(boxes[:, 1]))
    assert int(np.argmax(step)) == 99  # the snap is at the cut
    assert step[:99].max() < 3  # moving with the drift is smooth
    assert boxes[99, 0] > 420  # it did follow the drift
    assert boxes[150, 0] == pytest.approx(1400, abs=2)


def test_plan_without_faces_and_with_gaps() -> None:
    assert plan_crop_track([None] * 50, 640, 480) is None
    faces: list[FaceBox | None] = [None] * 100
    faces[20] = faces[22] = face(320, 240, 80)
    faces[90] = faces[92] = face(330, 240, 80)
    boxes = plan_crop_track(faces, 640, 480)
    assert boxes is not None
    assert np.allclose(boxes[:20], boxes[20])  # before the first face: its box
    assert np.allclose(boxes[23:90, 0], boxes[22, 0])  # face unseen: hold




def test_canvas_jitter_measures_centre_motion_in_canvas_pixels() -> None:
    still = np.tile([100.0, 50.0, 512.0], (10, 1))
    assert canvas_jitter(still) == 0.0
    moving = still.copy()
    moving[:, 0] += np.arange(10) * 2.0  # 2 source px per frame on a 512 px crop
    assert canvas_jitter(moving) == pytest.approx(1.0)
