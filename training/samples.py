"""Training samples of the neural receiver, drawn from the cached clips."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from codec.audio.features import clip_window
from codec.metrics.landmarks import mouth_opening
from codec.receiver.neural.contract import FRAME_MS, WINDOW
from codec.receiver.neural.mouth import MOUTH_STRENGTH, MouthWarp, mouth_shape
from training.dataset import KEY_EVERY, CachedClip, received_stream, transmitted
from training.networks.interpolator import Interpolator

MOUTH = slice(48, 68)
EYES = slice(36, 48)
NOSE = slice(27, 36)
REGION_WEIGHTS = ((MOUTH, 6.0), (EYES, 3.0), (NOSE, 1.5))
# Brows, nose and eyes: points the mouth stage's warp of the identity frame does not move
# (it moves the lips and the jaw), so their identity-frame positions are still true.
MOTION_POINTS = slice(17, 48)


@dataclass
class Batch:
    window: torch.Tensor  # (B, 5, 3, 8, 8)
    mel: torch.Tensor  # (B, 20, 40)
    identity: torch.Tensor  # (B, 3, R, R)
    target: torch.Tensor  # (B, 3, R, R)
    weight: torch.Tensor  # (B, 1, R, R) landmark-region weights (1 elsewhere)
    # ``MOTION_POINTS`` of the target and identity frames, normalised (x, y) in [-1, 1]
    # (grid_sample's align_corners=False), and 1 where both frames have landmarks.
    points_target: torch.Tensor  # (B, N, 2)
    points_identity: torch.Tensor  # (B, N, 2)
    points_valid: torch.Tensor  # (B,)

    def to(self, device: torch.device) -> Batch:
        return Batch(*(getattr(self, f.name).to(device) for f in fields(self)))


def motion_points(landmarks: np.ndarray, flip: bool, canvas: int = 256) -> np.ndarray:
    """(N, 2) normalised coordinates of the ``MOTION_POINTS`` (NaN stays NaN)."""
    p = np.asarray(landmarks, np.float32)[MOTION_POINTS].copy()
    if flip:
        p[:, 0] = canvas - 1 - p[:, 0]
    return (p + 0.5) * (2.0 / canvas) - 1.0


def region_weight(landmarks: np.ndarray, size: int, canvas: int = 256) -> np.ndarray:
    """(size, size) loss weight: boxes around mouth, eyes, nose get extra weight."""
    wmap = np.ones((size, size), np.float32)
    if np.isnan(landmarks).any():
        return wmap
    pts = landmarks * (size / canvas)
    for sl, w in REGION_WEIGHTS:
        p = pts[sl]
        (x0, y0), (x1, y1) = p.min(0), p.max(0)
        m = 0.25 * max(x1 - x0, y1 - y0) + 1
        xa, xb = int(max(0, x0 - m)), int(min(size, x1 + m + 1))
        ya, yb = int(max(0, y0 - m)), int(min(size, y1 + m + 1))
        wmap[ya:yb, xa:xb] += w
    return wmap


class SampleSource:
    """Random (clip, target frame, identity frame) samples with the received 8x8 stream."""

    def __init__(self, clips: list[CachedClip], interp: Interpolator | None, seed: int,
                 openings: list[np.ndarray] | None = None) -> None:
        """``openings``: per clip, the lip opening the mouth stage predicts from the speech
        at every frame; when given, the identity frame's mouth is warped as the receiver
        warps it (half the samples to that prediction, half to the target frame's true
        opening, so the animator learns to keep a warped mouth without trusting it
        blindly)."""
        self.clips = clips
        self.streams = [received_stream(transmitted(c.lowres), interp) for c in clips]
        lengths = np.array([c.n_frames for c in clips], np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)
        self.openings = openings

    def identity(self, ci: int, k: int, t: int) -> np.ndarray:
        c = self.clips[ci]
        ident = c.frames[k]
        if self.openings is None:
            return ident
        shape = mouth_shape(c.landmarks[k])
        if shape is None:
            return ident
        if self.rng.random() < 0.5:
            opening, strength = float(self.openings[ci][t]), MOUTH_STRENGTH
        else:
            truth = c.landmarks[t]
            if np.isnan(truth).any():
                return ident
            opening, strength = mouth_opening(truth), 1.0
        return MouthWarp(ident.astype(np.float32), shape).render(opening, strength)

    def window(self, ci: int, t: int) -> np.ndarray:
        """Stream frames t-2..t+2 as the receiver has them when rendering t: nothing past
        the next key frame (held there), nothing past the clip's end."""
        s = self.streams[ci]
        next_key = -(-t // KEY_EVERY) * KEY_EVERY
        idx = np.arange(t - WINDOW // 2, t + WINDOW // 2 + 1)
        idx = np.clip(np.minimum(idx, next_key), 0, len(s) - 1)
        return s[idx]

    def sample(self, batch: int, size: int) -> Batch:
        wins, mels, ids, tgts, wts, pts, pks = [], [], [], [], [], [], []
        for _ in range(batch):
            ci = int(self.rng.choice(len(self.clips), p=self.p))
            c = self.clips[ci]
            t = int(self.rng.integers(1, c.n_frames))
            k = 0 if self.rng.random() < 0.5 else int(self.rng.integers(0, c.n_frames))
            win, ident, tgt = self.window(ci, t), self.identity(ci, k, t), c.frames[t]
            wmap = region_weight(c.landmarks[t], size)
            flip = self.rng.random() < 0.5
            if flip:
                win, ident, tgt, wmap = (win[:, :, ::-1], ident[:, ::-1], tgt[:, ::-1],
                                         wmap[:, ::-1])
            pts.append(motion_points(c.landmarks[t], flip))
            pks.append(motion_points(c.landmarks[k], flip))
            wins.append(np.ascontiguousarray(win))
            mels.append(clip_window(c.mel, t * FRAME_MS))
            ids.append(np.ascontiguousarray(ident))
            tgts.append(np.ascontiguousarray(tgt))
            wts.append(np.ascontiguousarray(wmap))
        return Batch(
            window=torch.from_numpy(np.stack(wins)).permute(0, 1, 4, 2, 3).float(),
            mel=torch.from_numpy(np.stack(mels)),
            identity=_resize(np.stack(ids), size),
            target=_resize(np.stack(tgts), size),
            weight=torch.from_numpy(np.stack(wts))[:, None],
            **_points(np.stack(pts), np.stack(pks)),
        )


def _points(at: np.ndarray, to: np.ndarray) -> dict[str, torch.Tensor]:
    valid = ~(np.isnan(at).any((1, 2)) | np.isnan(to).any((1, 2)))
    return {"points_target": torch.from_numpy(np.nan_to_num(at)),
            "points_identity": torch.from_numpy(np.nan_to_num(to)),
            "points_valid": torch.from_numpy(valid.astype(np.float32))}


def _resize(images: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    f = x.shape[-1] // size
    return F.avg_pool2d(x, f) if f > 1 else x
