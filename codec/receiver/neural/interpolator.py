"""Interpolator: a light 3D CNN that fills the 8x8 stream from 5 to 25 fps (training/export).

Input: the low-res key frames k-2, k-1, k, k+1 (only frames the receiver already has when
it renders between k and k+1). Output: the 4 in-between frames at k + 0.2, 0.4, 0.6, 0.8,
as a correction of linear interpolation between k and k+1. Pixel values are in [0, 255].
"""

from __future__ import annotations

import torch
from torch import nn

N_CONTEXT = 4  # key frames in
N_BETWEEN = 4  # frames out (5 -> 25 fps)
SCALE = 127.5


class Interpolator(nn.Module):
    def __init__(self, width: int = 48) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(3, 32, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv3d(32, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv3d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv3d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
        )
        self.head = nn.Conv3d(width, 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        w = torch.arange(1, N_BETWEEN + 1, dtype=torch.float32) / (N_BETWEEN + 1)
        self.register_buffer("frac", w.view(1, 1, N_BETWEEN, 1, 1), persistent=False)

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        """keys (B, 3, 4, s, s) in [0, 255] -> (B, 3, 4, s, s) in-between frames."""
        x = keys / SCALE - 1.0
        a, b = keys[:, :, 2:3], keys[:, :, 3:4]
        linear = a + (b - a) * self.frac
        return linear + SCALE * self.head(self.body(x))
