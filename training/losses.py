"""Losses of the neural receiver: region-weighted L1 and a frequency-domain L1."""

from __future__ import annotations

import torch


def weighted_l1(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 in [0, 1] units, weighted per pixel (landmark regions count more)."""
    return (weight * (out - target).abs()).mean() / (255.0 * weight.mean())


def frequency_l1(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between log amplitude spectra (keeps high-frequency detail from washing out)."""
    fo = torch.fft.rfft2(out / 255.0, norm="ortho").abs()
    ft = torch.fft.rfft2(target / 255.0, norm="ortho").abs()
    return (torch.log1p(fo) - torch.log1p(ft)).abs().mean()
