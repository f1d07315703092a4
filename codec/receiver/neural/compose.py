"""The Animator's last stage in numpy/OpenCV (the runtime path; torch twin: Animator.compose).

Warps the identity frame by the affine motion + the upsampled dense flow (cv2.remap,
bilinear, border replicate: grid_sample's ``align_corners=False`` convention), blends it
with the upsampled low-res colour image by the occlusion mask, then back-projects onto the
transmitted 8x8 frame with the box-consistent cubic upsampler, so D(out) == l.
Doing this outside ONNX Runtime is ~10x faster than its GridSample.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from codec.receiver.backproject import back_project
from codec.receiver.upsample import Upsampler


@lru_cache(maxsize=4)
def _base(size: int) -> np.ndarray:
    return ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)


@lru_cache(maxsize=4)
def _upsampler(size: int) -> Upsampler:
    return Upsampler(size, kind="cubic", consistent=True)


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """(C, s, s) -> (size, size, C) bilinear, half-pixel centres (torch align_corners=False)."""
    img = np.ascontiguousarray(x.transpose(1, 2, 0))
    out = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return out.reshape(size, size, -1)


def compose_frame(identity: np.ndarray, theta: np.ndarray, flow: np.ndarray, mask: np.ndarray,
                  colour: np.ndarray, lowres: np.ndarray) -> np.ndarray:
    """identity (H, H, 3) float32 [0, 255]; theta (6,); flow (2, s, s); mask (1, s, s);
    colour (3, s, s); lowres (8, 8, 3). Returns the (H, H, 3) float32 frame in [0, 255]."""
    h = identity.shape[0]
    g = _base(h)
    t = theta.astype(np.float32)
    fl = _resize(flow, h)
    u = g[None, :] * (1 + t[0]) + g[:, None] * t[1] + t[2] + fl[..., 0]
    v = g[None, :] * t[3] + g[:, None] * (1 + t[4]) + t[5] + fl[..., 1]
    map_x = ((u + 1.0) * h - 1.0) * 0.5
    map_y = ((v + 1.0) * h - 1.0) * 0.5
    warped = cv2.remap(identity, map_x.astype(np.float32), map_y.astype(np.float32),
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    m = _resize(mask, h)
    out = m * warped + (1.0 - m) * _resize(colour, h)
    return np.clip(back_project(out, lowres, _upsampler(h)), 0.0, 255.0)
