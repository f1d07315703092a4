import numpy as np
import pytest
import scipy.linalg

from codec.metrics.fid import FEATURE_DIM, frechet_distance, inception_features
from tests._face_frames import CLIP_A, face_frames


def _textbook_fid(x: np.ndarray, y: np.ndarray) -> float:
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    d = x.mean(0) - y.mean(0)
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (4000, 3))
    b = rng.normal(0, 1, (4000, 3)) + np.array([2.0, 0, 0])
    # FID of N(0, I) and N(m, I) is |m|^2 = 4 (up to sampling error)
    assert frechet_distance(b, a) == pytest.approx(4.0, abs=0.3)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # scaling a set by 2: |mu|^2 + tr(4S) + tr(S) - 2 tr(2S) = |mu|^2 + tr(S), exactly
    expected = a.mean(0) @ a.mean(0) + np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(2 * a, a) == pytest.approx(expected, rel=1e-9)
    # both routes (N < dim: SVD of the cross product; N >= dim: eigen) match the textbook
    # formula with a general matrix square root
    for n1, n2 in ((5, 6), (40, 30)):
        x, y = rng.normal(0, 1, (n1, 8)), rng.normal(1, 2, (n2, 8))
        assert frechet_distance(x, y) == pytest.approx(_textbook_fid(x, y), rel=1e-5)


def test_inception_fid_zero_for_identical_sets_and_large_for_noise():
    frames = face_frames(CLIP_A)[::4][:6]
    feats = inception_features(frames)
    assert feats.shape == (6, FEATURE_DIM)
    assert np.isfinite(feats).all()
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-3)
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, frames.shape, dtype=np.uint8)
    assert frechet_distance(inception_features(noise), feats) > 100.0
