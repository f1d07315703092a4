"""codec/sender/face_tracker.py and face_detector.py: detection, hysteresis, crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.errors import InputError
from codec.sender.crop_plan import canvas_jitter
from codec.sender.face_detector import DetectionSchedule, FaceBox, FaceDetector
from codec.sender.face_tracker import (
    CropBox,
    CropFollower,
    FaceTracker,
    TrackerConfig,
    clamp_box,
    crop_to_canvas,
    target_crop,
)
from codec.sender.video_io import iter_video_frames
from tests._media import clip_path, noise_frame

CFG = TrackerConfig()


def face(cx: float, cy: float, size: float) -> FaceBox:
    return FaceBox(cx - size / 2, cy - size / 2, size, size)


def real_frames(n: int, max_side: int = 512) -> list[np.ndarray]:
    path = clip_path(lambda r: r["file"].endswith("sstzal__DFRF__dataset__vids__french.mp4"))
    if path is None:
        pytest.skip("shared data not found")
    out = []
    for f in iter_video_frames(path, max_side=max_side, max_seconds=n / 30 + 0.5):
        out.append(f.image)
        if len(out) == n:
            break
    return out


# ---- geometry ---------------------------------------------------------------------------

def test_target_crop_is_head_and_shoulders_and_inside() -> None:
    box = target_crop(face(500, 400, 100), 1920, 1080, CFG)
    assert box.side == pytest.approx(CFG.crop_scale * 100)
    assert box.cx == pytest.approx(500)
    assert box.cy > 400  # face above the canvas centre
    fy = (400 - box.y0) / box.side
    assert fy == pytest.approx(CFG.face_y, abs=1e-6)
    near_edge = target_crop(face(30, 30, 100), 640, 480, CFG)
    assert near_edge.x0 >= 0 and near_edge.y0 >= 0
    tight = target_crop(face(80, 80, 120), 160, 160, CFG)  # already a face crop
    assert tight.side == 160 and (tight.x0, tight.y0) == (0, 0)


def test_crop_to_canvas_exact_and_padded() -> None:
    img = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    same = crop_to_canvas(img, CropBox(100 + 128, 20 + 128, 256), 256)
    assert np.array_equal(same, img[20:276, 100:356])
    out = crop_to_canvas(img, CropBox(0, 0, 200), 100)  # three quarters outside
    assert out.shape == (100, 100, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out[:50, :50], np.broadcast_to(img[0, 0], (50, 50, 3)))  # replicated
    far = crop_to_canvas(img, CropBox(5000, -5000, 64), 32)  # entirely outside
    assert np.array_equal(far, np.broadcast_to(img[0, 399], (32, 32, 3)))
    small = crop_to_canvas(img, CropBox(200, 150, 40), 256)  # enlargement
    assert small.shape == (256, 256, 3)
    huge = crop_to_canvas(img, CropBox(200, 150, 10**7), 64)  # bounded, no giant padding
    assert huge.shape == (64, 64, 3)
    assert small.shape == (256, 256, 3)


def test_crop_to_canvas_large_crop_matches_plain_area_resize() -> None:
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    img = cv2.resize(small, (1000, 1000), interpolation=cv2.INTER_CUBIC)  # smooth content
    fast = crop_to_canvas(img, CropBox(500, 500, 999), 256)
    plain = cv2.resize(img[0:999, 0:999], (256, 256), interpolation=cv2.INTER_AREA)
    assert np.abs(fast.astype(int) - plain).mean() < 2.0


def test_clamp_box() -> None:
    b = clamp_box(CropBox(10, 500, 900), 640, 480)
    assert b.side == 480 and b.x0 == 0 and b.y0 == 0


# ---- hysteresis -------------------------------------------------------------------------

def test_follower_holds_small_drift() -> None:
    f = CropFollower(CFG)
    base = CropBox(500, 500, 250)
    f.step(base)
    rng = np.random.default_rng(0)
    for _ in range(100):  # detections wobbling by +-5 px (2 % of the side)
        dx, dy, ds = rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(0.97, 1.03)
        b = f.step(CropBox(500 + dx, 500 + dy, 250 * ds))
        assert b == base


def test_follower_moves_smoothly_on_drift_and_settles() -> None:
    f = CropFollower(CFG)
    f.step(CropBox(500, 500, 250))
    target = CropBox(560, 500, 250)  # 24 % of the side: beyond the margin, not a cut
    xs = [f.step(target).cx for _ in range(80)]  # type: ignore[union-attr]
    steps = np.diff([500.0] + xs)
    assert np.all(steps >= 0) and xs[-1] <= 560  # monotonic, no overshoot
    assert steps.max() <= 0.2 * 60  # no jump
    assert abs(xs[-1] - 560) < 0.02 * 250  # arrived
    assert not f.moving


def test_follower_snaps_on_cut_but_ignores_single_outlier() -> None:
    f = CropFollower(CFG)
    f.step(CropBox(200, 200, 200))
    assert f.step(CropBox(900, 300, 200)) == CropBox(200, 200, 200)  # one wild detection
    assert f.step(CropBox(200, 200, 200)) == CropBox(200, 200, 200)
    f.step(CropBox(900, 300, 200))
    assert f.step(CropBox(900, 300, 200)) == CropBox(900, 300, 200)  # confirmed: snap
    assert f.step(None) == CropBox(900, 300, 200)  # nothing seen: hold


# ---- detection on real frames -----------------------------------------------------------

def test_detector_finds_the_real_face_and_nothing_in_noise() -> None:
    frames = real_frames(1)
    det = FaceDetector()
    faces = det.search(frames[0])
    assert faces, "no face found in a talking-head frame"
    f = faces[0]
    h, w = frames[0].shape[:2]
    assert 0.1 * w < f.size < 0.6 * w
    near = det.near(frames[0], f)
    assert near is not None and abs(near.cx - f.cx) < 0.1 * f.size
    assert det.search(noise_frame(640, 480)) == []


def test_schedule_looks_every_few_frames() -> None:
    frames = real_frames(12)
    sched = DetectionSchedule(track_every=3, search_every=5)
    looked = []
    for fr in frames:
        sched.observe(fr)
        looked.append(sched.looked)
    assert looked == [True, False, False] * 4
    blank = noise_frame(320, 240)
    sched = DetectionSchedule(track_every=3, search_every=5)
    looked = []
    for _ in range(10):
        assert sched.observe(blank) is None
        looked.append(sched.looked)
    assert looked == [True, False, False, False, False] * 2


def test_live_tracker_on_real_frames_is_stable() -> None:
    frames = real_frames(60)
    tracker = FaceTracker()
    boxes = [tracker.update(fr) for fr in frames]
    assert tracker.has_face
    arr = np.array([b.as_xys() for b in boxes])
    assert canvas_jitter(arr) < 0.5
    canvas = crop_to_canvas(frames[-1], boxes[-1])
    assert canvas.shape == (256, 256, 3)
    assert FaceDetector().search(canvas), "the face is not in the live crop"


def test_live_tracker_without_face_gives_centre_square() -> None:
    tracker = FaceTracker()
    box = tracker.update(noise_frame(640, 360))
    assert not tracker.has_face
    assert box == CropBox(320, 180, 360)


def test_live_tracker_snaps_after_a_cut() -> None:
    frames = real_frames(2)
    face_img = frames[0]  # 512x512 frame: the face is in it
    left = np.zeros((720, 1600, 3), np.uint8)
    right = np.zeros((720, 1600, 3), np.uint8)
    left[100:612, 0:512] = face_img
    right[100:612, 1088:1600] = face_img
    tracker = FaceTracker()
    boxes = [tracker.update(left) for _ in range(10)] + [tracker.update(right) for _ in range(12)]
    assert boxes[9].cx < 512
    assert boxes[-1].cx > 1088  # followed the cut
    step = np.abs(np.diff([b.cx for b in boxes]))
    assert step.max() > 500 and np.count_nonzero(step > 1) == 1  # one snap, no slide


def test_live_tracker_ignores_one_wild_detection() -> None:
    frames = real_frames(1)
    scene = np.zeros((720, 1600, 3), np.uint8)
    scene[100:612, 0:512] = frames[0]
    tracker = FaceTracker()
    boxes = [tracker.update(scene) for _ in range(6)]
    wild = FaceBox(1300, 300, 150, 150)  # one false detection far away
    real_observe = tracker.schedule.observe
    calls = iter([wild])
    tracker.schedule.observe = lambda fr: next(calls, None) or real_observe(fr)  # type: ignore
    tracker.schedule.last = None
    boxes += [tracker.update(scene) for _ in range(8)]
    assert max(abs(b.cx - boxes[0].cx) for b in boxes) < 20  # never snapped to it


def test_live_tracker_rejects_bad_frames() -> None:
    tracker = FaceTracker()
    with pytest.raises(InputError):
        tracker.update(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError):
        tracker.update(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InputError):
        crop_to_canvas(np.zeros((10, 10, 3), np.uint8), CropBox(float("nan"), 0, 5))


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 300), h=st.integers(1, 300),
       cx=st.floats(-1e6, 1e6), cy=st.floats(-1e6, 1e6), side=st.floats(0.01, 1e7))
def test_crop_to_canvas_any_box(w: int, h: int, cx: float, cy: float, side: float) -> None:
    img = np.full((h, w, 3), 77, np.uint8)
    out = crop_to_canvas(img, CropBox(cx, cy, side), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.all(out == 77)  # only source pixels (edge-replicated), nothing invented
