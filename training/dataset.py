"""Cached clips (see build_cache.py) and the low-res stream the receiver really sees."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from codec.bitstream.lowres_codec import LowResEncoder, LowResParams
from codec.receiver.neural.contract import N_BETWEEN
from training.networks.interpolator import Interpolator
from training.paths import cache_dir

KEY_EVERY = N_BETWEEN + 1  # 25 fps canvas / 5 fps low-res stream


@dataclass
class CachedClip:
    name: str
    meta: dict
    frames: np.ndarray  # (T, 256, 256, 3) uint8 memmap
    lowres: np.ndarray  # (T, 8, 8, 3) float32 exact box means
    mel: np.ndarray  # padded log-mel of the clip
    landmarks: np.ndarray  # (T, 68, 2)
    audio: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.meta["n_frames"])


def load_clips(split: str, min_frames: int = 30) -> list[CachedClip]:
    clips = []
    for d in sorted((cache_dir() / "clips").glob("*")):
        meta_p = d / "meta.json"
        if not meta_p.exists():
            continue
        meta = json.loads(meta_p.read_text())
        if meta["split"] != split or meta["n_frames"] < min_frames:
            continue
        t = meta["n_frames"]
        frames = np.memmap(d / "frames.u8", np.uint8, "r", shape=(t, 256, 256, 3))
        clips.append(CachedClip(d.name, meta, frames, np.load(d / "lowres.npy"),
                                np.load(d / "mel.npy"), np.load(d / "landmarks.npy"),
                                np.load(d / "audio.npy")))
    return clips


def dev_split(clips: list[CachedClip], step: int, start: int = 0
              ) -> tuple[list[CachedClip], list[CachedClip]]:
    """(fit, dev) by identity, never by clip: of the train identities sorted by name, every
    ``step``-th from index ``start`` is held out as dev (the checkpoint or setting is chosen
    on dev, never on val). Clip order is kept."""
    ids = sorted({c.meta["identity"] for c in clips})
    dev_ids = set(ids[start::step])
    return ([c for c in clips if c.meta["identity"] not in dev_ids],
            [c for c in clips if c.meta["identity"] in dev_ids])


def transmitted(lowres: np.ndarray) -> np.ndarray:
    """Copy of the exact 8x8 frames with every key frame replaced by what the receiver
    decodes (the bitstream's low-res codec, default parameters, in stream order)."""
    out = lowres.astype(np.float32).copy()
    enc = LowResEncoder(LowResParams(size=lowres.shape[1]))
    for i in range(0, len(out), KEY_EVERY):
        enc.encode(out[i])
        out[i] = enc.reconstruction()
    return out


def key_context(lowres: np.ndarray, k: int) -> np.ndarray:
    """(4, s, s, 3) key frames k-2..k+1 (key index k = canvas frame 5k), clamped at ends."""
    n_keys = (len(lowres) - 1) // KEY_EVERY + 1
    idx = [min(max(j, 0), n_keys - 1) * KEY_EVERY for j in range(k - 2, k + 2)]
    return lowres[idx]


def received_stream(lowres: np.ndarray, interp: Interpolator | None) -> np.ndarray:
    """The 25 fps low-res stream at the receiver: key frames every 5th canvas frame,
    in-betweens from the interpolator (linear when interp is None); held after the last
    key frame."""
    t = len(lowres)
    n_keys = (t - 1) // KEY_EVERY + 1
    out = np.repeat(lowres[(n_keys - 1) * KEY_EVERY][None], t, axis=0).astype(np.float32)
    keys = [key_context(lowres, k) for k in range(n_keys - 1)]
    if keys:
        x = torch.from_numpy(np.stack(keys)).permute(0, 4, 1, 2, 3).float()
        if interp is None:
            a, b = x[:, :, 2:3], x[:, :, 3:4]
            frac = torch.arange(1, KEY_EVERY, dtype=torch.float32).view(1, 1, -1, 1, 1) / 5
            mid = a + (b - a) * frac
        else:
            with torch.no_grad():
                mid = interp(x)
        mid = mid.permute(0, 2, 3, 4, 1).numpy()
        for k in range(n_keys - 1):
            out[k * KEY_EVERY + 1 : k * KEY_EVERY + KEY_EVERY] = mid[k]
    for k in range(n_keys):
        out[k * KEY_EVERY] = lowres[k * KEY_EVERY]
    return np.clip(out, 0.0, 255.0)
