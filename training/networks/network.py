"""The trainable whole: IdentityEncoder + Animator (+ the Interpolator trained apart).

The runtime receiver never imports this (ONNX Runtime only); training and export do.
"""

from __future__ import annotations

import torch
from torch import nn

from training.networks.animator import Animator
from training.networks.encoders import IdentityEncoder


class ReceiverNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.identity_encoder = IdentityEncoder()
        self.animator = Animator()

    def forward(self, window: torch.Tensor, mel: torch.Tensor,
                identity: torch.Tensor) -> torch.Tensor:
        id_lr, f32, f16 = self.identity_encoder(identity)
        return self.animator(window, id_lr, f32, f16, mel, identity)
