"""Interpolator: a light 3D CNN that fills the 8x8 stream from 5 to 25 fps (training/export).

Input: the low-res key frames k-2, k-1, k, k+1 (only frames the receiver already has when
it renders between k and k+1; k+2 would add 200 ms of latency). Output: the 4 in-between
frames at k + 0.2, 0.4, 0.6, 0.8, as a residual over a learned per-frame mix of the 4 keys
(``mix``, 16 numbers, initialised to linear interpolation between k and k+1). The keys are
the decoded (quantised) frames, so the network also undoes some of the low-res codec's
quantisation error. Pixel values are in [0, 255].
"""

from __future__ import annotations

import torch
from torch import nn

from codec.receiver.neural.contract import N_BETWEEN, N_CONTEXT

SCALE = 127.5


def linear_mix() -> torch.Tensor:
    """(N_BETWEEN, N_CONTEXT) weights of linear interpolation between keys k and k+1."""
    w = torch.arange(1, N_BETWEEN + 1, dtype=torch.float32) / (N_BETWEEN + 1)
    mix = torch.zeros(N_BETWEEN, N_CONTEXT)
    mix[:, N_CONTEXT - 2] = 1 - w
    mix[:, N_CONTEXT - 1] = w
    return mix


class Interpolator(nn.Module):
    def __init__(self, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv3d(3, width, 3, padding=1), nn.LeakyReLU(0.2)]
        for _ in range(depth - 1):
            layers += [nn.Conv3d(width, width, 3, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv3d(width, 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.mix = nn.Parameter(linear_mix())

    def base(self, keys: torch.Tensor) -> torch.Tensor:
        """The mix of the keys: (B, 3, 4, s, s) -> (B, 3, 4, s, s)."""
        return (keys.permute(0, 1, 3, 4, 2) @ self.mix.t()).permute(0, 1, 4, 2, 3)

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        """keys (B, 3, 4, s, s) in [0, 255] -> (B, 3, 4, s, s) in-between frames."""
        x = keys / SCALE - 1.0
        return self.base(keys) + SCALE * self.head(self.body(x))
