import math

import numpy as np
import pytest

from codec.metrics import bits_per_pixel, kbit_per_s, mean_psnr, psnr, ssim


def _smooth_image(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 128 + 60 * np.sin(6 * xx + 3 * yy)[..., None] + rng.normal(0, 8, (size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_psnr_of_a_known_constant_error():
    a = np.full((32, 32, 3), 100, np.uint8)
    b = a + np.uint8(10)  # MSE = 100 exactly
    assert psnr(b, a) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)


def test_psnr_of_gaussian_noise_matches_its_variance():
    rng = np.random.default_rng(0)
    a = np.full((256, 256, 3), 128.0)
    noisy = a + rng.normal(0, 5.0, a.shape)
    assert psnr(noisy, a) == pytest.approx(10 * math.log10(255**2 / 25.0), abs=0.05)


def test_psnr_identical_is_infinite_and_mean_caps_it():
    a = _smooth_image(1)
    assert psnr(a, a) == float("inf")
    assert mean_psnr([float("inf"), 30.0]) == pytest.approx(65.0)


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))


def test_ssim_identical_is_one_and_degrades_with_noise():
    a = _smooth_image(2)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(3)
    mild = np.clip(a + rng.normal(0, 5, a.shape), 0, 255)
    strong = np.clip(a + rng.normal(0, 40, a.shape), 0, 255)
    assert 1.0 > ssim(mild, a) > ssim(strong, a) > 0.0


def test_ssim_matches_the_scikit_image_reference_on_luma():
    metrics = pytest.importorskip("skimage.metrics")
    from codec.metrics import luma

    a = _smooth_image(4)
    rng = np.random.default_rng(5)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    ref = metrics.structural_similarity(
        luma(b), luma(a), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255.0,
    )
    assert ssim(b, a) == pytest.approx(ref, abs=1e-6)


def test_rates():
    # 1 kbit over 25 frames of 256x256 and over one second
    assert bits_per_pixel(1000, 25) == pytest.approx(1000 / (256 * 256 * 25))
    assert kbit_per_s(8000, 2.0) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        bits_per_pixel(10, 0)
