import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from codec.metrics.erqa import erqa
from tests._face_frames import CLIP_A, face_frames


def test_identical_is_one():
    frame = face_frames(CLIP_A)[0]
    assert erqa(frame, frame) == pytest.approx(1.0)


def test_global_shift_is_compensated():
    frame = face_frames(CLIP_A)[0]
    shifted = np.roll(frame, (2, -1), axis=(0, 1))
    assert erqa(shifted, frame) > 0.97


def test_blur_loses_edges_and_flat_has_none():
    frame = face_frames(CLIP_A)[0]
    mild = gaussian_filter(frame.astype(float), sigma=(1.0, 1.0, 0)).astype(np.uint8)
    strong = gaussian_filter(frame.astype(float), sigma=(4.0, 4.0, 0)).astype(np.uint8)
    assert 1.0 > erqa(mild, frame) > erqa(strong, frame)
    assert erqa(np.full_like(frame, 128), frame) == 0.0


def test_matches_the_reference_package_on_bgr_input():
    erqa_pkg = pytest.importorskip("erqa")
    frame = face_frames(CLIP_A)[0]
    out = gaussian_filter(frame.astype(float), sigma=(1.5, 1.5, 0)).astype(np.uint8)
    ref = erqa_pkg.ERQA(version="1.1")(out[..., ::-1].copy(), frame[..., ::-1].copy())
    assert erqa(out, frame) == pytest.approx(ref)
