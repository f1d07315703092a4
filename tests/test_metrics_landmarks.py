import numpy as np
import pytest

from codec.metrics.landmarks import (
    MOUTH,
    detect_face,
    distance_parts,
    landmark_distance,
    landmarks,
    motion_correlation,
    mouth_opening,
)
from tests._face_frames import CLIP_A, face_frames


def _shift_right_down(img: np.ndarray, d: int) -> np.ndarray:
    out = np.empty_like(img)
    out[d:, d:] = img[:-d, :-d]
    out[:d, :] = img[:d, :]
    out[:, :d] = img[:, :d]
    return out


def test_finds_the_face_and_places_68_points_inside_it():
    frame = face_frames(CLIP_A)[0]
    box = detect_face(frame)
    assert box is not None and box.area > 64 * 64
    pts = landmarks(frame, box)
    assert pts.shape == (68, 2)
    assert box.left - 20 < pts[:, 0].mean() < box.right + 20


def test_no_face_in_a_flat_frame():
    assert detect_face(np.full((256, 256, 3), 90, np.uint8)) is None


def test_distance_zero_for_identical_frames():
    frame = face_frames(CLIP_A)[3]
    box = detect_face(frame)
    a, b = landmarks(frame, box), landmarks(frame.copy(), box)
    assert landmark_distance(a, b) == 0.0
    assert landmark_distance(a, b, MOUTH) == 0.0


def test_distance_follows_a_known_shift_with_the_box_fixed():
    frame = face_frames(CLIP_A)[3]
    box = detect_face(frame)  # box from the ground truth, used for both frames
    shift = 6
    moved = _shift_right_down(frame, shift)
    truth, out = landmarks(frame, box), landmarks(moved, box)
    expected = shift * np.sqrt(2.0)
    assert landmark_distance(out, truth) == pytest.approx(expected, abs=2.0)
    assert landmark_distance(out, truth, MOUTH) == pytest.approx(expected, abs=2.5)
    mean_move = (out - truth).mean(axis=0)
    assert mean_move == pytest.approx([shift, shift], abs=1.5)
    # A whole-face shift is an offset of the mouth, not a change of its shape.
    offset, shape = distance_parts(out, truth, MOUTH)
    assert offset == pytest.approx([shift, shift], abs=1.5)
    assert shape < 0.5 * landmark_distance(out, truth, MOUTH)


def test_distance_parts_split_offset_from_shape():
    rng = np.random.default_rng(0)
    truth = rng.uniform(50, 200, (68, 2))
    moved = truth + [3.0, -4.0]
    offset, shape = distance_parts(moved, truth, MOUTH)
    assert offset == pytest.approx([3.0, -4.0]) and shape == pytest.approx(0.0, abs=1e-9)
    # Opening the lips (lower points down, upper up) keeps the centre: all shape.
    opened = truth.copy()
    opened[48:58, 1] -= 2.0
    opened[58:68, 1] += 2.0
    offset, shape = distance_parts(opened, truth, MOUTH)
    assert offset == pytest.approx([0.0, 0.0], abs=1e-9) and shape == pytest.approx(2.0)
    both = opened + [0.0, 5.0]
    offset, shape = distance_parts(both, truth, MOUTH)
    assert np.linalg.norm(offset) <= landmark_distance(both, truth, MOUTH) + 1e-9
    assert shape <= landmark_distance(both, truth, MOUTH) + 1e-9
    with pytest.raises(ValueError):
        distance_parts(truth[:60], truth, MOUTH)


def test_mouth_opening_of_synthetic_lips():
    pts = np.zeros((68, 2))
    pts[48], pts[54] = (0, 0), (40, 0)  # mouth corners: width 40
    for top, bottom in ((61, 67), (62, 66), (63, 65)):
        pts[top], pts[bottom] = (20, -5), (20, 5)  # inner-lip gap 10
    assert mouth_opening(pts) == pytest.approx(0.25)


def test_motion_correlation_known_answers():
    t = np.linspace(0, 4 * np.pi, 50)
    gt = 0.2 + 0.1 * np.sin(t)
    assert motion_correlation(gt, gt) == pytest.approx(1.0)
    assert motion_correlation(0.5 - gt, gt) == pytest.approx(-1.0)
    assert motion_correlation(np.full(50, 0.2), gt) == 0.0  # output frozen
    assert np.isnan(motion_correlation(gt, np.full(50, 0.2)))  # nothing to follow
    with pytest.raises(ValueError):
        motion_correlation(gt[:10], gt)


def test_strided_views_give_the_same_points():
    frame = face_frames(CLIP_A)[2]
    box = detect_face(frame)
    wide = np.zeros((256, 300, 3), np.uint8)
    wide[:, :256] = frame
    strided = wide[:, :256]  # a non-contiguous view of the same pixels
    assert not strided.flags["C_CONTIGUOUS"]
    assert detect_face(strided) == box
    assert np.array_equal(landmarks(strided, box), landmarks(frame, box))


def test_a_4k_frame_is_searched_downscaled_and_the_box_scaled_back():
    import cv2

    frame = face_frames(CLIP_A)[2]
    big = np.full((2160, 3840, 3), 40, np.uint8)
    face = cv2.resize(frame, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    big[500:1524, 1400:2424] = face
    box = detect_face(big)
    small = detect_face(frame)
    assert box is not None and small is not None
    assert box.left == pytest.approx(1400 + small.left * 4, abs=40)
    assert box.top == pytest.approx(500 + small.top * 4, abs=40)
    assert (box.right - box.left) == pytest.approx((small.right - small.left) * 4, rel=0.2)
