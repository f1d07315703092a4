"""Animator: the per-output-frame network of the neural receiver (torch; training/export).

Inputs: a window of the 25 fps low-res stream (5 frames, t-80..t+80 ms), the identity's
cached encoding (its own 8x8 and feature maps at 16/32 px), the speech embedding of the
200 ms log-mel window and the identity frame itself. At 8x8 -> 32x32 internal resolution it
predicts a global affine motion plus a dense local flow, an occlusion/blend mask and a
low-res colour image. Output = mask * warp(identity) + (1 - mask) * up(colour), then a
back-projection step ``out += up(l - D(out))`` pulls the frame onto the transmitted 8x8
frame ``l`` (D = the exact box means; up = the smooth cubic upsampler made consistent with
D, ``codec.receiver.upsample``, so that D(out) == l exactly before clipping).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codec.receiver.neural.contract import HEAD_SIZE, ID_FEATURES, WINDOW
from codec.receiver.upsample import upsample_matrix
from training.networks.encoders import AudioEncoder, act

(C32, _), (C16, S16) = ID_FEATURES


class FiLM(nn.Module):
    def __init__(self, dim: int, channels: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, 2 * channels)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.lin(emb).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return x * (1.0 + scale) + shift


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def consistent_up(lowres: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, s, s) -> (B, C, size, size) with the box-consistent cubic (a fixed matrix)."""
    u = upsample_matrix(int(lowres.shape[-1]), int(size), "cubic", True)
    u = torch.from_numpy(u.copy()).to(lowres.device)
    return torch.matmul(torch.matmul(u, lowres), u.t())


def affine_points(t: torch.Tensor, x: torch.Tensor, y: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the affine motion (identity + theta) takes normalised points (x, y): ``t`` is
    theta viewed as (B, 6, ...) so that ``t[:, i]`` broadcasts against x and y."""
    return (x + t[:, 0] * x + t[:, 1] * y + t[:, 2],
            y + t[:, 3] * x + t[:, 4] * y + t[:, 5])


def back_project(out: torch.Tensor, target_lr: torch.Tensor) -> torch.Tensor:
    """out (B,3,H,H), target_lr (B,3,s,s), both [0, 255]: out + up(l - D(out))."""
    h = int(out.shape[-1])
    low = F.avg_pool2d(out, h // int(target_lr.shape[-1]))
    return out + consistent_up(target_lr - low, h)


class Animator(nn.Module):
    def __init__(self, audio_dim: int = 64) -> None:
        super().__init__()
        self.audio = AudioEncoder(dim=audio_dim)
        self.enc8 = nn.Sequential(nn.Conv2d(3 * WINDOW + 6, 64, 3, padding=1), act(),
                                  nn.Conv2d(64, 64, 3, padding=1), act())
        self.film8 = FiLM(audio_dim, 64)
        self.up16 = nn.Sequential(nn.Conv2d(64 + C16, 48, 3, padding=1), act())
        self.film16 = FiLM(audio_dim, 48)
        self.up32 = nn.Sequential(nn.Conv2d(48 + C32, 32, 3, padding=1), act())
        self.film32 = FiLM(audio_dim, 32)
        self.out32 = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), act())
        self.head = nn.Conv2d(32, 6, 3, padding=1)  # flow (2), mask (1), colour (3)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[2] = 3.0  # start from "show the warped identity"
        self.affine = nn.Linear(64, 6)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def heads(self, window: torch.Tensor, id_lr: torch.Tensor, f32: torch.Tensor,
              f16: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The network part: (theta (B, 6), flow (B, 2, 32, 32), mask (B, 1, 32, 32) in
        [0, 1], colour (B, 3, 32, 32) in [0, 255]). window (B, 5, 3, s, s) and id_lr
        (B, 3, s, s) in [0, 255]; mel (B, 20, 40)."""
        b, _, _, s, _ = window.shape
        emb = self.audio(mel)
        cur = window[:, WINDOW // 2]
        x = torch.cat([window.reshape(b, 3 * WINDOW, s, s), id_lr, cur - id_lr], 1) / 127.5
        x = self.film8(self.enc8(x), emb)
        theta = self.affine(x.mean(dim=(2, 3)))
        x = self.film16(self.up16(torch.cat([_up(x, (S16, S16)), f16], 1)), emb)
        x = self.film32(self.up32(torch.cat([_up(x, (HEAD_SIZE, HEAD_SIZE)), f32], 1)), emb)
        y = self.head(self.out32(x))
        colour = 127.5 * (torch.tanh(y[:, 3:]) + 1.0)
        return theta, y[:, :2], torch.sigmoid(y[:, 2:3]), colour

    def compose(self, identity: torch.Tensor, theta: torch.Tensor, flow: torch.Tensor,
                mask: torch.Tensor, colour: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Warp the identity, blend with the colour image, back-project onto ``cur``
        (the runtime does the same in numpy: ``compose.compose_frame``)."""
        h, w = identity.shape[-2:]
        grid = self._affine_grid(theta, h, w) + _up(flow, (h, w)).permute(0, 2, 3, 1)
        warped = F.grid_sample(identity, grid, mode="bilinear", padding_mode="border",
                               align_corners=False)
        m = _up(mask, (h, w))
        out = m * warped + (1.0 - m) * _up(colour, (h, w))
        return back_project(out, cur).clamp(0.0, 255.0)

    def forward(self, window: torch.Tensor, id_lr: torch.Tensor,
                f32: torch.Tensor, f16: torch.Tensor, mel: torch.Tensor,
                identity: torch.Tensor) -> torch.Tensor:
        """identity (B, 3, H, W) in [0, 255] -> (B, 3, H, W) in [0, 255]."""
        theta, flow, mask, colour = self.heads(window, id_lr, f32, f16, mel)
        return self.compose(identity, theta, flow, mask, colour, window[:, WINDOW // 2])

    @staticmethod
    def _affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, H, W, 2) sampling grid of the affine motion (identity + theta)."""
        ys = (torch.arange(h, dtype=torch.float32, device=theta.device) + 0.5) * (2.0 / h) - 1.0
        xs = (torch.arange(w, dtype=torch.float32, device=theta.device) + 0.5) * (2.0 / w) - 1.0
        u, v = affine_points(theta.view(-1, 6, 1, 1), xs.view(1, 1, w), ys.view(1, h, 1))
        return torch.stack([u, v], dim=-1)
