"""Losses of the neural receiver: region-weighted L1, a frequency-domain L1, the
equivariance of the predicted head motion, and landmark supervision of that motion."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def weighted_l1(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 in [0, 1] units, weighted per pixel (landmark regions count more)."""
    return (weight * (out - target).abs()).mean() / (255.0 * weight.mean())


def frequency_l1(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between log amplitude spectra (keeps high-frequency detail from washing out)."""
    fo = torch.fft.rfft2(out / 255.0, norm="ortho").abs()
    ft = torch.fft.rfft2(target / 255.0, norm="ortho").abs()
    return (torch.log1p(fo) - torch.log1p(ft)).abs().mean()


def gradient_l1(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical pixel differences, weighted per pixel like
    ``weighted_l1``: rewards edges (lips, teeth, eyes) where plain L1 settles for a blur."""
    def diffs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]

    (ox, oy), (tx, ty) = diffs(out), diffs(target)
    wx, wy = weight[..., :, 1:], weight[..., 1:, :]
    num = (wx * (ox - tx).abs()).mean() / wx.mean() + (wy * (oy - ty).abs()).mean() / wy.mean()
    return num / (2 * 255.0)


def random_affines(n: int, gen: torch.Generator, rot_deg: float = 8.0, scale: float = 0.08,
                   shift: float = 0.12) -> torch.Tensor:
    """(n, 3, 3) small random similarity transforms of normalised image coordinates."""
    u = torch.rand(n, 4, generator=gen) * 2.0 - 1.0
    a = u[:, 0] * math.radians(rot_deg)
    s = 1.0 + u[:, 1] * scale
    t = torch.zeros(n, 3, 3)
    t[:, 0, 0], t[:, 0, 1], t[:, 0, 2] = s * torch.cos(a), -s * torch.sin(a), u[:, 2] * shift
    t[:, 1, 0], t[:, 1, 1], t[:, 1, 2] = s * torch.sin(a), s * torch.cos(a), u[:, 3] * shift
    t[:, 2, 2] = 1.0
    return t


def warp_lowres(window: torch.Tensor, t: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """The low-res window of the transformed video: each (s, s) frame upsampled ``factor``x
    with the box-consistent cubic (so T = identity gives the window back), resampled at
    T p (grid_sample conventions, border padding) and box-averaged back, so W'(p) = W(T p).
    window (B, F, 3, s, s); t (B, 3, 3)."""
    from training.networks.animator import consistent_up

    b, f, c, s, _ = window.shape
    x = window.reshape(b, f * c, s, s)
    big = consistent_up(x, s * factor)
    grid = F.affine_grid(t[:, :2], list(big.shape), align_corners=False)
    warped = F.grid_sample(big, grid, mode="bilinear", padding_mode="border",
                           align_corners=False)
    return F.avg_pool2d(warped, factor).reshape(b, f, c, s, s)


def _as_matrix(theta: torch.Tensor) -> torch.Tensor:
    """Animator theta (B, 6) -> (B, 3, 3): p -> (I + theta) p."""
    m = torch.zeros(theta.shape[0], 3, 3, device=theta.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = 1.0 + theta[:, 0], theta[:, 1], theta[:, 2]
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = theta[:, 3], 1.0 + theta[:, 4], theta[:, 5]
    m[:, 2, 2] = 1.0
    return m


def affine_equivariance(theta: torch.Tensor, theta_t: torch.Tensor,
                        t: torch.Tensor) -> torch.Tensor:
    """FOMM's equivariance, for a global motion instead of keypoints: the motion predicted
    for the transformed video must be the original motion composed with the transform,
    M' = M T (output p of the transformed frame is p' = T p of the original one). L1 over
    the 2x3 entries, in normalised coordinates."""
    target = _as_matrix(theta) @ t.to(theta.device)
    return (_as_matrix(theta_t)[:, :2] - target[:, :2]).abs().mean()


def landmark_motion(theta: torch.Tensor, flow: torch.Tensor, at: torch.Tensor,
                    to: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Motion supervised by landmarks: where the animator's sampling field (affine ``theta``
    + bilinearly upsampled ``flow``, as ``Animator.compose`` builds it) takes each target
    landmark ``at`` must be the same landmark ``to`` on the identity frame, since that is
    the identity pixel the output shows there. L1 in normalised coordinates (grid_sample's,
    align_corners=False), mean over points, then over the samples with ``valid`` 1.
    theta (B, 6); flow (B, 2, s, s); at, to (B, N, 2) as (x, y); valid (B,)."""
    from training.networks.animator import affine_points

    gu, gv = affine_points(theta.unsqueeze(-1), at[..., 0], at[..., 1])
    f = F.grid_sample(flow, at.unsqueeze(2), mode="bilinear", padding_mode="border",
                      align_corners=False)[..., 0]  # (B, 2, N)
    err = ((gu + f[:, 0] - to[..., 0]).abs() + (gv + f[:, 1] - to[..., 1]).abs()).mean(-1)
    return (err * valid).sum() / valid.sum().clamp(min=1.0)
