"""The two encoders of the neural receiver (torch; used by training and ONNX export).

- ``IdentityEncoder``: the identity frame -> feature maps at 32 and 16 px plus its own
  8x8 box-downsampled version; run ONCE per identity frame, cached by the receiver.
- ``AudioEncoder``: a (20, 40) log-mel window (200 ms) -> a 64-d speech embedding; a small
  1D conv net, run per output frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codec.receiver.neural.contract import ID_FEATURES, N_MELS, NET_LOWRES

(C32, S32), (C16, _) = ID_FEATURES
MEL_MEAN = -6.0
MEL_STD = 4.0


def act() -> nn.Module:
    return nn.LeakyReLU(0.2)


class IdentityEncoder(nn.Module):
    def __init__(self, lowres: int = NET_LOWRES) -> None:
        super().__init__()
        self.lowres = lowres
        self.f32 = nn.Sequential(nn.Conv2d(3, C32, 3, padding=1), act(),
                                 nn.Conv2d(C32, C32, 3, padding=1), act())
        self.f16 = nn.Sequential(nn.Conv2d(C32, C16, 3, stride=2, padding=1), act())

    def forward(self, identity: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """identity (B, 3, H, W) in [0, 255] -> (id_lr (B,3,8,8) in [0, 255], f32, f16)."""
        h = identity.shape[-1]
        id_lr = F.avg_pool2d(identity, h // self.lowres)
        x = F.avg_pool2d(identity, h // S32) / 127.5 - 1.0
        f32 = self.f32(x)
        f16 = self.f16(f32)
        return id_lr, f32, f16


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int = N_MELS, dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(n_mels, 64, 3, padding=1), act(),
            nn.Conv1d(64, 64, 3, stride=2, padding=1), act(),
            nn.Conv1d(64, 64, 3, stride=2, padding=1), act(),
        )
        self.out = nn.Linear(64, dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, frames, n_mels) log-mel -> (B, dim)."""
        x = (mel.transpose(1, 2) - MEL_MEAN) / MEL_STD
        return self.out(self.net(x).mean(dim=2))
