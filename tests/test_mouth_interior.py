"""The learned mouth interior (codec/receiver/mouth_interior.py) and its use in the landmark
warp: the canonical grid, the texture map, the shipped model's integrity, and that the
painted teeth and cavity beat the hand-painted cavity on an unseen (val) person (issue 12)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from codec.models import ModelError, models_dir
from codec.receiver.landmark_warp import INNER_LIP, LandmarkWarp, _mask_of
from codec.receiver.mouth_interior import (
    NU,
    NV,
    features,
    grid_points,
    load_model_file,
    load_mouth_interior,
    opening,
    sample_grid,
    texture_map,
)


def _open_mouth(points: np.ndarray, px: float) -> np.ndarray:
    """The same face with the lower lip and chin ``px`` lower."""
    p = np.array(points, np.float64)
    lower = [5, 6, 7, 8, 9, 10, 11, 55, 56, 57, 58, 59, 65, 66, 67]
    p[lower, 1] += px
    return p


def _face() -> tuple[np.ndarray, np.ndarray]:
    from codec.sender.landmarks import FaceLandmarker
    from tests._canvas_clip import canvas_frames

    frame = canvas_frames(1)[0]
    s = FaceLandmarker().measure(frame)
    assert s.points is not None and s.confident
    return frame, np.asarray(s.points, np.float64)


def test_grid_runs_corner_to_corner_between_the_inner_lips() -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform(50, 200, (68, 2))
    g = grid_points(pts)
    assert g.shape == (NV, NU, 2)
    np.testing.assert_allclose(g[0, 0], pts[60])
    np.testing.assert_allclose(g[-1, 0], pts[60])
    np.testing.assert_allclose(g[0, -1], pts[64])
    np.testing.assert_allclose(g[-1, -1], pts[64])
    # Each column runs straight from the upper inner lip to the lower one.
    v = np.linspace(0, 1, NV)[:, None, None]
    np.testing.assert_allclose(g, (1 - v) * g[:1] + v * g[-1:], atol=1e-9)
    # The top row passes through the upper inner lip's points, the bottom row the lower's.
    for row, ids in ((0, [61, 62, 63]), (-1, [67, 66, 65])):
        for i in ids:
            assert np.linalg.norm(g[row] - pts[i], axis=1).min() < 0.2 * np.linalg.norm(
                pts[64] - pts[60]) + 1


def test_texture_map_inverts_the_grid() -> None:
    """Paint a gradient texture through texture_map, read it back with sample_grid."""
    import cv2

    _, pts = _face()
    pts = _open_mouth(pts, 14)
    tex = np.zeros((NV, NU, 3), np.float32)
    tex[..., 0] = np.linspace(0, 250, NU)[None]
    tex[..., 1] = np.linspace(0, 250, NV)[:, None]
    map_u, map_v, inside = texture_map(pts, (256, 256), np.zeros(2))
    assert inside.sum() > 100
    img = cv2.remap(tex, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    back = sample_grid(img, pts)
    # Inner grid points (the border ones sit on the triangles' edges).
    err = np.abs(back[1:-1, 1:-1] - tex[1:-1, 1:-1])
    assert float(err.mean()) < 6.0, float(err.mean())


def test_shipped_model_is_verified_and_a_tampered_copy_refused(tmp_path: Path) -> None:
    model = load_mouth_interior()
    assert model is not None, "models/ ships a mouth_interior model"
    (src,) = sorted(models_dir().glob("mouth_interior-*.npz"))
    bad = tmp_path / src.name
    shutil.copy(src, bad)
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="hash"):
        load_model_file(bad)
    assert load_mouth_interior(tmp_path / "nothing-here") is None


def test_an_opened_mouth_gets_a_dark_interior_and_nothing_else_changes() -> None:
    frame, pts = _face()
    warp = LandmarkWarp(frame, pts)
    assert warp.interior is not None
    # The identity's own mouth: nothing is painted.
    np.testing.assert_array_equal(warp.render(pts), warp.render(pts, fill_mouth=False))
    wide = _open_mouth(pts, 14)
    assert opening(wide) > opening(pts) + 10
    painted, bare = warp.render(wide), warp.render(wide, fill_mouth=False)
    inner = _mask_of(wide[INNER_LIP], 256) > 0.99
    changed = np.abs(painted - bare).max(-1) > 1.0
    assert changed[inner].mean() > 0.8
    assert not changed[~(_mask_of(wide[INNER_LIP], 256, soft=1.0) > 0.01)].any()
    # The painted pixels are the predicted grid's colours, darker than the skin.
    tex = warp.interior.predict(wide, warp.lip_colour, warp.skin_colour)
    assert tex.shape == (NV, NU, 3) and np.isfinite(tex).all()
    assert tex.mean() < warp.skin_colour.mean()
    assert tex.min() - 1 <= painted[inner].mean() <= tex.max() + 1
    assert features(wide, warp.lip_colour, warp.skin_colour).shape == (warp.interior.weights.shape[0],)


def test_learned_interior_beats_the_painted_cavity_on_an_unseen_person() -> None:
    """A val clip (a person the model never saw): the mouth box of the warped identity frame,
    back-projected onto the 8x8 as the receiver does, is closer to the truth with the
    learned interior than with the hand-painted cavity."""
    from benchmarks.clip_metrics import mouth_box
    from codec.metrics.fidelity import psnr
    from codec.receiver.backproject import back_project
    from codec.receiver.upsample import Upsampler
    from codec.sender.canvas import load_face_clip
    from codec.sender.downsample import box_downsample
    from training.measure_landmarks import measure_clip
    from training.paths import data_dir

    path = data_dir() / "clips/OpenTalker__video-retalking__examples__face__1.mp4"
    if not path.exists():
        pytest.skip("../shared/data is absent")
    clip = load_face_clip(str(path), max_seconds=4.0)
    points, confident = measure_clip(clip.frames)
    warp = LandmarkWarp(clip.frames[0], points[0])
    model = warp.interior
    up = Upsampler(256)
    scores: dict[str, list[float]] = {"learned": [], "cavity": []}
    for k in range(2, len(points), 3):
        if not confident[k] or opening(points[k]) < opening(points[0]) + 2:
            continue
        low = box_downsample(clip.frames[k][None].astype(np.float32), 32)[0]
        y0, y1, x0, x1 = mouth_box(points[k], 256)
        for name, interior in (("learned", model), ("cavity", None)):
            warp.interior = interior
            img = np.clip(np.rint(back_project(warp.render(points[k]), low, up)), 0, 255)
            scores[name].append(psnr(img[y0:y1, x0:x1].astype(np.uint8),
                                     clip.frames[k][y0:y1, x0:x1]))
    assert len(scores["learned"]) >= 5, "the clip opens its mouth"
    learned, cavity = np.mean(scores["learned"]), np.mean(scores["cavity"])
    print(f"\nmouth-box PSNR on {len(scores['learned'])} open frames: learned {learned:.2f} dB, "
          f"painted cavity {cavity:.2f} dB")
    assert learned > cavity + 0.2, (learned, cavity)
