"""Lip-sync scores (SyncNet's LSE-D, LSE-C, offset accuracy) from our own sync expert.

No pretrained SyncNet may be downloaded, so the expert is a small two-stream network trained
on the project's train clips (``training/train_sync.py``) and shipped as
``models/sync_expert-<sha256[:12]>.onnx``, verified against its name on load (the neural
receiver's ``weights`` functions).

Inputs of the expert, both defined here and used by training and scoring alike:

- video: 5 consecutive grayscale mouth crops (frames t-2..t+2), each
  :data:`CROP_H` x :data:`CROP_W` pixels, cut from the 256x256 canvas with a box that follows
  the mouth (centre and width of the dlib mouth points 48-67, linearly filled over frames
  without landmarks and averaged over 5 frames; the box width is :data:`BOX_SCALE` x the
  mouth-corner distance and its height half of that). The box comes from the *ground-truth*
  landmarks, so a receiver's output cannot move it (as in ``codec.metrics.landmarks``).
- audio: the 200 ms log-mel window centred on frame t, ``codec.audio.features.clip_window``
  of ``padded_clip_features`` (the receiver's own window definition).

Scores (per clip), as SyncNet's ``syncnet_python`` computes them (the LSE-D / LSE-C of the
Wav2Lip paper): for every window centre t whose audio offsets stay inside the clip, the
embedding distance d(t, o) between the video window at t and the audio window at t + o, for
o = -7..+7 frames; D(o) = mean over t of d(t, o). ``lse_d`` = min_o D(o); ``lse_c`` =
median_o D(o) - min_o D(o); ``av_offset`` = argmin_o D(o) (the clip's offset; positive: the
mouth matches later audio). Per window: ``offset_acc`` = share of windows whose own best
offset argmin_o d(t, o) is within +-1 frame of 0, and ``lse_d_window`` / ``lse_c_window`` =
the means over t of min_o d(t, o) and of median_o d(t, o) - min_o d(t, o). Embeddings are
L2-normalised, so distances lie in [0, 2]: the numbers are not on the scale of the
published SyncNet's (LSE-D about 6-8, LSE-C about 1-8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from codec import CANVAS_FPS, FRAME_MS
from codec.audio.features import SAMPLE_RATE, clip_window, padded_clip_features
from codec.errors import TalkcodecError
from codec.models import find_model, load_verified, onnx_session

ROLE = "sync_expert"
FPS = float(CANVAS_FPS)
WINDOW = 5  # video frames per window, centred on t
HALF = WINDOW // 2
VSHIFT = 7  # audio offsets -VSHIFT..+VSHIFT frames
CROP_H, CROP_W = 24, 48
PAD_H, PAD_W = 2, 4  # margin around the crop (training jitters inside it)
BOX_SCALE = 1.8
BOX_DROP = 0.1  # box centre below the mouth centre, in mouth widths
SMOOTH = 5
MOUTH = slice(48, 68)
MAX_AUDIO_MISMATCH_S = 1.0


class SyncError(TalkcodecError):
    """Inputs the lip-sync score cannot be computed from."""


@dataclass(frozen=True)
class SyncScores:
    lse_d: float
    lse_c: float
    av_offset: int
    offset_acc: float
    lse_d_window: float
    lse_c_window: float
    n_windows: int
    distances: np.ndarray  # (n_windows, 2 * VSHIFT + 1), column VSHIFT is offset 0

    def as_dict(self) -> dict[str, float]:
        return {"lse_c": self.lse_c, "lse_d": self.lse_d, "av_offset": float(self.av_offset),
                "offset_acc": self.offset_acc, "lse_c_window": self.lse_c_window,
                "lse_d_window": self.lse_d_window}


def mouth_track(points: Sequence[np.ndarray | None] | np.ndarray) -> np.ndarray:
    """(T, 3) mouth box track (centre x, centre y, box width) from per-frame 68-point
    landmarks (None or NaN where a frame has none)."""
    t = len(points)
    raw = np.full((t, 3), np.nan)
    for i, p in enumerate(points):
        if p is None:
            continue
        p = np.asarray(p, np.float64)
        if p.shape != (68, 2) or np.isnan(p).any():
            continue
        m = p[MOUTH]
        width = np.linalg.norm(p[54] - p[48])
        raw[i] = (m[:, 0].mean(), m[:, 1].mean() + BOX_DROP * width, BOX_SCALE * width)
    ok = ~np.isnan(raw[:, 0])
    if not ok.any():
        raise SyncError("no frame has mouth landmarks")
    idx = np.arange(t)
    for k in range(3):
        raw[:, k] = np.interp(idx, idx[ok], raw[ok, k])
    padded = np.concatenate([np.repeat(raw[:1], SMOOTH // 2, 0), raw,
                             np.repeat(raw[-1:], SMOOTH // 2, 0)])
    kernel = np.ones(SMOOTH) / SMOOTH
    return np.stack([np.convolve(padded[:, k], kernel, "valid") for k in range(3)], 1)


def mouth_crops(frames: Sequence[np.ndarray] | np.ndarray, track: np.ndarray) -> np.ndarray:
    """(T, CROP_H + 2 PAD_H, CROP_W + 2 PAD_W) uint8 grayscale crops with margin; the
    expert sees the centre ``[PAD_H:-PAD_H, PAD_W:-PAD_W]``."""
    out_h, out_w = CROP_H + 2 * PAD_H, CROP_W + 2 * PAD_W
    crops = np.empty((len(frames), out_h, out_w), np.uint8)
    for i, (f, (cx, cy, bw)) in enumerate(zip(frames, track, strict=True)):
        gray = cv2.cvtColor(np.ascontiguousarray(f, np.uint8), cv2.COLOR_RGB2GRAY)
        w = float(bw) * out_w / CROP_W
        h = w * out_h / out_w
        cx, cy = float(cx), float(cy)
        x0, y0 = round(cx - w / 2), round(cy - h / 2)
        x1, y1 = max(x0 + 2, round(cx + w / 2)), max(y0 + 2, round(cy + h / 2))
        pad = max(0, -x0, -y0, x1 - gray.shape[1], y1 - gray.shape[0])
        if pad:
            gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        sub = gray[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
        crops[i] = cv2.resize(sub, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return crops


def video_window(crops: np.ndarray, t: int, dy: int = PAD_H, dx: int = PAD_W) -> np.ndarray:
    """(WINDOW, CROP_H, CROP_W) float32 0..255 window centred on frame t."""
    w = crops[t - HALF : t + HALF + 1, dy : dy + CROP_H, dx : dx + CROP_W]
    return w.astype(np.float32)


def audio_window(mel: np.ndarray, t: int) -> np.ndarray:
    """(1, 20, 40) float32 log-mel window of frame t (``clip_window``)."""
    return clip_window(mel, t * FRAME_MS)[None].astype(np.float32)


def window_centres(n_frames: int, vshift: int = VSHIFT) -> np.ndarray:
    """Centres t whose video window and every audio offset t + o stay inside the clip."""
    lo = max(HALF, vshift)
    return np.arange(lo, n_frames - lo)


def offset_distances(video_emb: np.ndarray, audio_emb: np.ndarray, centres: np.ndarray,
                     vshift: int = VSHIFT) -> np.ndarray:
    """(len(centres), 2 vshift + 1): distance between video window t (row of video_emb)
    and audio window t + o (audio_emb indexed by frame)."""
    offs = np.arange(-vshift, vshift + 1)
    a = audio_emb[centres[:, None] + offs[None]]  # (N, O, D)
    return np.linalg.norm(video_emb[:, None] - a, axis=-1)


def scores_from_distances(d: np.ndarray, vshift: int = VSHIFT) -> SyncScores:
    mean_d = d.mean(0)
    best = d.argmin(1) - vshift
    return SyncScores(lse_d=float(mean_d.min()), lse_c=float(np.median(mean_d) - mean_d.min()),
                      av_offset=int(mean_d.argmin() - vshift),
                      offset_acc=float(np.mean(np.abs(best) <= 1)),
                      lse_d_window=float(d.min(1).mean()),
                      lse_c_window=float((np.median(d, 1) - d.min(1)).mean()),
                      n_windows=len(d), distances=d)


class SyncExpert:
    """The shipped sync expert through ONNX Runtime on the CPU (hash-verified on load)."""

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        self.path = path or find_model(ROLE)
        self.session = onnx_session(load_verified(self.path), threads, device="cpu")

    def embed(self, video: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(video (N, 5, 24, 48), audio (M, 1, 20, 40)) -> L2-normalised embeddings."""
        ve, ae = self.session.run(None, {"video": np.asarray(video, np.float32),
                                         "audio": np.asarray(audio, np.float32)})
        return ve, ae


@lru_cache(maxsize=1)
def default_expert() -> SyncExpert:
    return SyncExpert()


def _check(frames: Any, track: np.ndarray, audio: np.ndarray | None) -> None:
    n = len(frames)
    if n == 0:
        raise SyncError("empty clip: no frames")
    if n < WINDOW + 2 * VSHIFT:
        raise SyncError(f"clip of {n} frames is shorter than the {WINDOW + 2 * VSHIFT} "
                        f"frames one window with offsets -{VSHIFT}..+{VSHIFT} needs")
    if len(track) != n:
        raise SyncError(f"{n} frames but {len(track)} mouth boxes")
    shape = np.shape(frames[0])
    if len(shape) != 3 or shape[2] != 3:
        raise SyncError(f"frames must be (H, W, 3) RGB, got {shape}")
    if audio is None or len(audio) == 0:
        raise SyncError("no audio: lip sync needs the clip's speech")
    a_s, v_s = len(audio) / SAMPLE_RATE, n / FPS
    if abs(a_s - v_s) > MAX_AUDIO_MISMATCH_S:
        raise SyncError(f"audio ({a_s:.2f} s) and video ({v_s:.2f} s) lengths differ by more "
                        f"than {MAX_AUDIO_MISMATCH_S:g} s")


def sync_scores(frames: Sequence[np.ndarray] | np.ndarray,
                points: Sequence[np.ndarray | None] | np.ndarray,
                audio: np.ndarray | None, expert: SyncExpert | None = None,
                vshift: int = VSHIFT) -> SyncScores:
    """Lip-sync scores of ``frames`` (uint8 RGB at 25 fps) against 16 kHz ``audio``;
    ``points``: the ground-truth 68 landmarks per frame ((68, 2), None or NaN where none)."""
    if len(frames) == 0:
        raise SyncError("empty clip: no frames")
    if len(points) != len(frames):
        raise SyncError(f"{len(frames)} frames but {len(points)} landmark sets")
    track = mouth_track(points)
    _check(frames, track, audio)
    expert = expert or default_expert()
    n = len(frames)
    crops = mouth_crops(frames, track)
    mel = padded_clip_features(np.asarray(audio, np.float32), n, FPS)
    centres = window_centres(n, vshift)
    video = np.stack([video_window(crops, int(t)) for t in centres])
    aud = np.stack([audio_window(mel, t) for t in range(n)])
    ve, ae = expert.embed(video, aud)
    return scores_from_distances(offset_distances(ve, ae, centres, vshift), vshift)
