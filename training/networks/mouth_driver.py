"""MouthDriver: the torch twin of the ONNX role ``mouth`` (training and export only).

Speech features (``mouth.block_features``) -> lip opening (inner-lip gap / mouth width):
standardisation and a linear map fitted by ridge regression in ``training/train_mouth.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from codec.receiver.neural.mouth import MAX_OPENING, N_FEATURES


class MouthDriver(nn.Module):
    """Standardise -> linear (ridge) -> lip opening clamped to [0, MAX_OPENING]."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mu", torch.zeros(N_FEATURES))
        self.register_buffer("sd", torch.ones(N_FEATURES))
        self.linear = nn.Linear(N_FEATURES, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, N_FEATURES) -> opening (B, 1)."""
        return self.linear((feats - self.mu) / self.sd).clamp(0.0, MAX_OPENING)
