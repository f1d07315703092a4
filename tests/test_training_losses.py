"""The receiver's training losses: the motion-equivariance loss and its low-res warp."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.losses import (  # noqa: E402
    _as_matrix,
    affine_equivariance,
    random_affines,
    warp_lowres,
)


def _theta_of(m: torch.Tensor) -> torch.Tensor:
    return torch.stack([m[:, 0, 0] - 1, m[:, 0, 1], m[:, 0, 2],
                        m[:, 1, 0], m[:, 1, 1] - 1, m[:, 1, 2]], 1)


def test_equivariance_is_zero_only_for_the_composed_motion() -> None:
    t = random_affines(6, torch.Generator().manual_seed(0))
    theta = 0.05 * torch.randn(6, 6, generator=torch.Generator().manual_seed(1))
    assert affine_equivariance(theta, _theta_of(_as_matrix(theta) @ t), t).item() < 1e-6
    # A network that ignores the transform is penalised.
    assert affine_equivariance(theta, theta, t).item() > 0.01


def test_random_affines_are_small_similarities() -> None:
    t = random_affines(100, torch.Generator().manual_seed(0))
    assert torch.all(t[:, 2] == torch.tensor([0.0, 0.0, 1.0]))
    scale = torch.linalg.det(t[:, :2, :2]).sqrt()
    assert torch.all((scale > 0.9) & (scale < 1.1))
    assert torch.all(t[:, :2, 2].abs() <= 0.12 + 1e-6)


def test_warp_lowres_follows_the_transformed_video() -> None:
    import torch.nn.functional as F

    w = 255 * torch.rand(2, 5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(warp_lowres(w, torch.eye(3).expand(2, 3, 3)), w, atol=1e-2)
    # Against the exact 8x8 of a warped smooth 256x256 frame: far closer than no warp.
    t = random_affines(2, torch.Generator().manual_seed(1))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 256),
                            indexing="ij")
    img = (128 + 100 * torch.sin(3 * xx + 1) * torch.cos(2 * yy)).expand(2, 3, 256, 256)
    grid = F.affine_grid(t[:, :2], [2, 3, 256, 256], align_corners=False)
    exact = F.avg_pool2d(F.grid_sample(img.contiguous(), grid, padding_mode="border",
                                       align_corners=False), 32)
    low = F.avg_pool2d(img, 32)
    approx = warp_lowres(low[:, None], t)[:, 0]
    assert (approx - exact).abs().mean() < 0.3 * (low - exact).abs().mean()


def test_gradient_l1_rewards_edges_not_offsets() -> None:
    import torch.nn.functional as F

    from training.losses import gradient_l1, weighted_l1

    g = torch.Generator().manual_seed(3)
    target = 255 * torch.rand(2, 3, 32, 32, generator=g)
    weight = torch.ones(2, 1, 32, 32)
    assert gradient_l1(target, target, weight).item() == 0.0
    # A constant offset costs plain L1 but no gradient loss; a blur costs both.
    assert gradient_l1(target + 10.0, target, weight).item() < 1e-6
    assert weighted_l1(target + 10.0, target, weight).item() > 0.03
    blur = F.avg_pool2d(F.pad(target, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert gradient_l1(blur, target, weight).item() > 0.05


def test_landmark_motion_matches_the_animators_sampling_field():
    from training.losses import landmark_motion
    from training.networks.animator import Animator, _up

    gen = torch.Generator().manual_seed(3)
    b, h = 2, 64
    theta = 0.1 * torch.randn(b, 6, generator=gen)
    flow = 0.05 * torch.randn(b, 2, 32, 32, generator=gen)
    grid = Animator._affine_grid(theta, h, h) + _up(flow, (h, h)).permute(0, 2, 3, 1)
    ix = torch.randint(0, h, (b, 7, 2), generator=gen)
    at = (ix.float() + 0.5) * (2.0 / h) - 1.0  # pixel centres, as (x, y)
    to = torch.stack([grid[i, ix[i, :, 1], ix[i, :, 0]] for i in range(b)])
    ones = torch.ones(b)
    assert landmark_motion(theta, flow, at, to, ones).item() == pytest.approx(0.0, abs=1e-5)
    # Off by a known amount in x on every point: that amount, in normalised units.
    assert landmark_motion(theta, flow, at, to + torch.tensor([0.05, 0.0]), ones).item() \
        == pytest.approx(0.05, abs=1e-5)
    # Invalid samples do not count; none valid gives 0, not NaN.
    bad = to.clone()
    bad[1] += 1.0
    assert landmark_motion(theta, flow, at, bad, torch.tensor([1.0, 0.0])).item() \
        == pytest.approx(0.0, abs=1e-5)
    assert landmark_motion(theta, flow, at, bad, torch.zeros(b)).item() == 0.0


def test_motion_points_mirror_with_the_frame():
    import numpy as np

    from training.samples import MOTION_POINTS, motion_points

    pts = np.zeros((68, 2), np.float32)
    pts[:, 0] = np.arange(68)
    pts[:, 1] = 100.0
    a, m = motion_points(pts, False), motion_points(pts, True)
    n = MOTION_POINTS.stop - MOTION_POINTS.start
    assert a.shape == (n, 2)
    # A pixel x and its mirror 255 - x land at u and -u; y is untouched.
    assert np.allclose(m[:, 0], -a[:, 0]) and np.allclose(m[:, 1], a[:, 1])
    assert a[0, 0] == pytest.approx((17 + 0.5) * 2 / 256 - 1)
