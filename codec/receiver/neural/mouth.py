"""Audio-driven mouth: speech -> lip opening -> a local warp of the identity frame's mouth.

At 8x8 the whole mouth is about one pixel; what the 8x8 stream cannot say about the lips,
the speech can in part. This stage makes that path explicit and measurable:

1. ``block_features``: from 415 ms of log-mel around an output frame (t-300 .. t+115 ms,
   the same ``log_mel`` the animator uses), 7 x 40 band means: three 200 ms windows
   centred at t-200, t-100 and t, and four 50 ms chunks of the last one.
2. ``MouthDriver`` (``training/networks/mouth_driver.py``, trained by
   ``training/train_mouth.py``, run as the ONNX role ``mouth``): standardised features ->
   a ridge-regressed lip opening (inner-lip gap / mouth width, the ratio
   ``codec.metrics.landmarks.mouth_opening`` measures).
3. ``MouthWarp``: the identity frame's 68 dlib landmarks, found once per identity frame;
   per output frame the lower lip and jaw move down and the upper lip up by the difference
   between the predicted and the identity frame's own opening (a smooth local displacement
   field, FOMM-style keypoint-driven motion), and the parted lips are filled with a dark
   mouth interior (the occluded region the identity frame does not show). Negative
   differences close the lips. The animator then warps this edited identity frame.

No face on the identity frame, or silence (predicted opening at the identity frame's own),
leaves the identity frame unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from codec.audio.features import (
    HOP_MS,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    WINDOW_FRAMES,
    log_mel,
)

BLOCK_BEFORE_MS = 300.0
BLOCK_FRAMES = 40  # 10 ms hops: windows [0:20], [10:30], [20:40] centred at t-200/-100/0 ms
# The block's last 200 ms window (t-100 .. t+115 ms) is exactly the animator's speech window
# (``codec.audio.features.window_span_ms``), so the receiver computes the log-mel once.
ANIMATOR_WINDOW = slice(BLOCK_FRAMES - WINDOW_FRAMES, BLOCK_FRAMES)
_SPANS = ((0, 20), (10, 30), (20, 40), (20, 25), (25, 30), (30, 35), (35, 40))
N_FEATURES = len(_SPANS) * N_MELS
MAX_OPENING = 0.6


def block_span_ms() -> tuple[float, float]:
    """(before_ms, after_ms) of audio around t that ``block_features`` needs."""
    n_samples = (BLOCK_FRAMES - 1) * (SAMPLE_RATE // 100) + N_FFT
    return BLOCK_BEFORE_MS, n_samples * 1000.0 / SAMPLE_RATE - BLOCK_BEFORE_MS


def block_from_samples(samples: np.ndarray) -> np.ndarray:
    """(BLOCK_FRAMES, N_MELS) log-mel of the samples of ``block_span_ms`` around t."""
    feats = log_mel(np.asarray(samples, np.float32))[:BLOCK_FRAMES]
    if len(feats) < BLOCK_FRAMES:
        fill = np.full((BLOCK_FRAMES - len(feats), N_MELS), np.log(LOG_FLOOR), np.float32)
        feats = np.concatenate([feats, fill])
    return feats


def block_from_clip(padded_feats: np.ndarray, t_ms: float) -> np.ndarray:
    """The same block from a clip's ``padded_clip_features`` (training): that array's
    frame j starts at j*10 ms - 100 ms of clip time, so t-300 ms is frame (t-200)/10."""
    j = round((t_ms - (BLOCK_BEFORE_MS - 100.0)) / HOP_MS)
    lo = max(j, 0)
    w = padded_feats[lo : j + BLOCK_FRAMES]
    floor = np.log(LOG_FLOOR)
    head = np.full((lo - j, N_MELS), floor, np.float32)
    tail = np.full((BLOCK_FRAMES - (lo - j) - len(w), N_MELS), floor, np.float32)
    return np.concatenate([head, w, tail]).astype(np.float32)


def block_features(block: np.ndarray) -> np.ndarray:
    """(..., BLOCK_FRAMES, N_MELS) -> (..., N_FEATURES) band means over ``_SPANS``."""
    return np.concatenate([block[..., a:b, :].mean(-2) for a, b in _SPANS], -1).astype(np.float32)


# ---- the warp ---------------------------------------------------------------------------
_UPPER_INNER = (60, 61, 62, 63, 64)
_LOWER_INNER = (60, 67, 66, 65, 64)
_INNER_PAIRS = ((61, 67), (62, 66), (63, 65))
# The receiver moves the lips half-way from the identity frame's opening to the predicted
# one: on val (eval_neural.py, the only two values tried) 1.0 gave mouth r 0.133 but cost
# 0.05 dB and 0.1 px of mouth landmark distance; 0.5 gave r 0.146 at -0.01 dB, +0.03 px.
MOUTH_STRENGTH = 0.5
UPPER_SHARE = 0.25  # of an opening change taken by the upper lip; the jaw takes the rest
INTERIOR = np.array([52.0, 28.0, 30.0], np.float32)  # RGB of the mouth cavity


@dataclass(frozen=True)
class MouthShape:
    """What the warp needs of the identity frame's landmarks (pixels of the 256 canvas)."""

    cx: float
    half_width: float
    width: float
    xs: np.ndarray  # inner-lip corner-to-corner x samples
    y_meet: np.ndarray  # lip meeting line at xs
    gap: float  # inner-lip gap at the centre (pixels)
    nose_y: float
    chin_y: float

    @property
    def opening(self) -> float:
        return self.gap / self.width if self.width > 0 else 0.0


def mouth_shape(points: np.ndarray) -> MouthShape | None:
    """From 68 landmarks (x, y); None when the mouth is degenerate (too small, inverted)."""
    p = np.asarray(points, np.float64)
    width = float(np.linalg.norm(p[54] - p[48]))
    chin_y, nose_y = float(p[8, 1]), float(p[33, 1])
    if not np.isfinite(p).all() or width < 8.0 or chin_y <= nose_y + 4:
        return None
    up = p[list(_UPPER_INNER)]
    lo = p[list(_LOWER_INNER)]
    xs = np.linspace(up[0, 0], up[-1, 0], 9)
    y_meet = 0.5 * (np.interp(xs, up[:, 0], up[:, 1]) + np.interp(xs, lo[:, 0], lo[:, 1]))
    gap = float(np.mean([p[b, 1] - p[a, 1] for a, b in _INNER_PAIRS]))
    cx = float(0.5 * (p[48, 0] + p[54, 0]))
    return MouthShape(cx, 0.5 * width, width, xs, y_meet, max(gap, 0.0), nose_y, chin_y)


class MouthWarp:
    """Opens or closes the identity frame's mouth to a target opening ratio."""

    def __init__(self, identity: np.ndarray, shape: MouthShape) -> None:
        self.identity = np.ascontiguousarray(identity, np.float32)
        self.shape = shape
        s = shape
        h, w = self.identity.shape[:2]
        below = s.chin_y - float(s.y_meet.mean())
        self.x0 = int(max(0, np.floor(s.cx - 2.4 * s.half_width)))
        self.x1 = int(min(w, np.ceil(s.cx + 2.4 * s.half_width)))
        self.y0 = int(max(0, np.floor(s.nose_y)))
        self.y1 = int(min(h, np.ceil(s.chin_y + 0.6 * below + 2 * s.width * MAX_OPENING)))
        if self.x1 - self.x0 < 4 or self.y1 - self.y0 < 4 or not 0 <= s.cx < w:
            raise ValueError("the mouth lies outside the frame")
        gx, gy = np.meshgrid(np.arange(self.x0, self.x1, dtype=np.float32),
                             np.arange(self.y0, self.y1, dtype=np.float32))
        self.gx, self.gy = gx, gy
        meet = np.interp(gx[0], s.xs, s.y_meet).astype(np.float32)[None, :]
        self.meet = np.broadcast_to(meet, gx.shape)
        # Horizontal profile: zero at the mouth corners on the lip line, widening to the
        # jaw below it; vertical: full from the lips to the chin, fading under it.
        depth = np.clip((gy - self.meet) / max(below, 1.0), 0.0, 1.0)
        half = s.half_width * (1.0 + 0.9 * depth)
        self.h = np.clip(1.0 - ((gx - s.cx) / half) ** 2, 0.0, 1.0) ** 0.75
        fade = max(0.6 * below, 1.0)
        self.v_low = np.clip(1.0 - (gy - s.chin_y) / fade, 0.0, 1.0)
        self.v_up = np.clip((gy - s.nose_y) / max(float(s.y_meet.mean()) - s.nose_y, 1.0),
                            0.0, 1.0)
        self.below_meet = gy >= self.meet

    def render(self, opening: float, strength: float = 1.0) -> np.ndarray:
        """The identity frame with its mouth at ``opening`` (inner gap / mouth width), or
        ``strength`` of the way there from its own."""
        s = self.shape
        delta = strength * (float(np.clip(opening, 0.0, MAX_OPENING)) * s.width - s.gap)
        if abs(delta) < 0.25:
            return self.identity
        down = (1.0 - UPPER_SHARE) * delta * self.h
        up = UPPER_SHARE * delta * self.h
        lower_edge = self.meet + down  # where the lower inner lip lands
        upper_edge = self.meet - up
        src_y = np.where(self.gy >= lower_edge, self.gy - down * self.v_low,
                         np.where(self.gy <= upper_edge, self.gy + up * self.v_up, self.meet))
        roi = cv2.remap(self.identity, self.gx, src_y.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        if delta > 0:
            # Parted lips: the cavity, feathered over a pixel at its edges.
            inside = np.minimum(self.gy - upper_edge, lower_edge - self.gy)
            alpha = np.clip(inside + 0.5, 0.0, 1.0)[..., None] * (self.h > 0.05)[..., None]
            roi = roi * (1.0 - alpha) + INTERIOR * alpha
        out = self.identity.copy()
        out[self.y0 : self.y1, self.x0 : self.x1] = roi
        return out
