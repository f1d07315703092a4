"""The inside of an opened mouth, predicted from the lips' shape and the face's colours.

A warp of the identity frame cannot make what the identity frame does not show: the
teeth, tongue and dark cavity of a mouth that opens wider than in it. This module paints
them from a small linear model fitted on ``train`` (``training/fit_mouth_interior.py``).

The interior lives on a canonical grid between the inner lips: ``u`` runs from the left
inner corner (point 60) to the right one (64), ``v`` from the upper inner lip (60-64) to
the lower one (64-67, 60); a grid point is ``(1 - v) U(u) + v D(u)``. So the upper teeth
sit near ``v = 0`` whatever the head's pose or the mouth's opening, and a per-pixel linear
model of the grid's colours generalises over people. Its inputs: the 20 mouth points in
the mouth's own frame (corner to corner = 1), the opening, and the identity frame's lip
and skin colours; its output: the grid's colours as a fraction of the skin's colour
(lighting and complexion divide out). Closed form (ridge), so it cannot memorise faces.

The model file is ``models/mouth_interior-<sha256[:12]>.npz``, verified on load.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from codec.models import ModelError, models_dir

ROLE = "mouth_interior"
FORMAT = 1
NU, NV = 24, 10  # grid points corner to corner, upper lip to lower lip
UPPER = np.array([60, 61, 62, 63, 64])
LOWER = np.array([60, 67, 66, 65, 64])
MOUTH = np.arange(48, 68)
N_FEATURES = 2 * len(MOUTH) + 2 + 6 + 1


def _polyline(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Points at parameters ``u`` in [0, 1] along a polyline (by vertex index)."""
    s = u * (len(p) - 1)
    i = np.minimum(s.astype(int), len(p) - 2)
    f = (s - i)[:, None]
    return p[i] * (1 - f) + p[i + 1] * f


def grid_points(points: np.ndarray) -> np.ndarray:
    """(NV, NU, 2) image positions of the canonical grid for 68 landmarks."""
    p = np.asarray(points, np.float64)
    u = np.linspace(0.0, 1.0, NU)
    v = np.linspace(0.0, 1.0, NV)[:, None, None]
    up, down = _polyline(p[UPPER], u), _polyline(p[LOWER], u)
    return (1 - v) * up[None] + v * down[None]


def opening(points: np.ndarray) -> float:
    """Mean distance between the upper and lower inner lip (61-67, 62-66, 63-65), px."""
    p = np.asarray(points, np.float64)
    return float(np.mean(np.linalg.norm(p[[61, 62, 63]] - p[[67, 66, 65]], axis=1)))


def features(points: np.ndarray, lip_rgb: np.ndarray, skin_rgb: np.ndarray) -> np.ndarray:
    """The model's input for one frame: the mouth in its own frame (origin between the
    outer corners 48/54, x along them, unit = their distance), the opening and its
    square, lip and skin colours (0-1), 1."""
    p = np.asarray(points, np.float64)
    a, b = p[48], p[54]
    width = float(np.linalg.norm(b - a)) or 1.0
    x = (b - a) / width
    y = np.array([-x[1], x[0]])
    rel = (p[MOUTH] - (a + b) / 2) / width
    local = np.stack([rel @ x, rel @ y], axis=1).reshape(-1)
    gap = opening(p) / width
    return np.concatenate([local, [gap, gap * gap], np.asarray(lip_rgb) / 255.0,
                           np.asarray(skin_rgb) / 255.0, [1.0]])


def sample_grid(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(NV, NU, 3) float32: ``image``'s colours at the canonical grid of ``points``."""
    g = grid_points(points).astype(np.float32)
    return cv2.remap(np.asarray(image, np.float32), g[..., 0], g[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _surface(points: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Image positions (len(v), len(u), 2) of the interior's surface at parameters u, v."""
    p = np.asarray(points, np.float64)
    up, down = _polyline(p[UPPER], u), _polyline(p[LOWER], u)
    return (1 - v)[:, None, None] * up[None] + v[:, None, None] * down[None]


def _mesh_triangles(nv: int, nu: int) -> np.ndarray:
    idx = np.arange(nv * nu).reshape(nv, nu)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    return np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])


# The mesh texture_map rasterises: u at the lip polylines' vertices and half way between
# them (the surface is bilinear between the vertices), v in quarters: 64 triangles instead
# of the texture grid's 414, 0.3 ms a frame instead of 1.0. Against the full grid's map its
# v is off by 0.16-0.25 texel on average (under 0.1 px: the 10 texels span the opening).
_MESH_U = np.linspace(0.0, 1.0, 2 * len(UPPER) - 1)
_MESH_V = np.linspace(0.0, 1.0, 5)
_TRIANGLES = _mesh_triangles(len(_MESH_V), len(_MESH_U))
_TEX = np.stack(np.meshgrid(_MESH_U * (NU - 1), _MESH_V * (NV - 1)), axis=-1).reshape(-1, 2)


def texture_map(points: np.ndarray, box: tuple[int, int], origin: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel of a box (rows, cols) whose top-left is ``origin``: its texture
    coordinates (map_u, map_v) float32 on the (NV, NU) grid, and a mask (1 inside the
    surface). Piecewise affine over a mesh of the surface, rasterised at 1/16 px."""
    g = (_surface(points, _MESH_U, _MESH_V) - origin).reshape(-1, 2)
    d, s_ = g[_TRIANGLES], _TEX[_TRIANGLES]
    dh = np.concatenate([d, np.ones((len(d), 3, 1))], axis=2)
    det = np.linalg.det(dh)
    ok = np.abs(det) > 1e-4
    mats = np.zeros((len(d) + 1, 3, 2), np.float32)
    mats[1:][ok] = np.linalg.solve(dh[ok], s_[ok])
    index = np.zeros(box, np.int32)
    scaled = np.rint(d * 16).astype(np.int32)
    for i in np.flatnonzero(ok):
        cv2.fillConvexPoly(index, scaled[i], int(i) + 1, cv2.LINE_8, 4)
    m = mats[index]
    yy, xx = np.mgrid[0 : box[0], 0 : box[1]].astype(np.float32)
    map_u = m[..., 0, 0] * xx + m[..., 1, 0] * yy + m[..., 2, 0]
    map_v = m[..., 0, 1] * xx + m[..., 1, 1] * yy + m[..., 2, 1]
    return map_u, map_v, (index > 0).astype(np.float32)


@dataclass(frozen=True)
class MouthInteriorModel:
    """Ridge from ``features`` to the grid's colours over the skin's colour."""

    weights: np.ndarray  # (N_FEATURES, NV * NU * 3)
    digest: str = ""

    def predict(self, points: np.ndarray, lip_rgb: np.ndarray,
                skin_rgb: np.ndarray) -> np.ndarray:
        """(NV, NU, 3) float32 colours 0-255 of the interior of ``points``' mouth."""
        ratio = features(points, lip_rgb, skin_rgb) @ self.weights
        tex = ratio.reshape(NV, NU, 3) * np.asarray(skin_rgb, np.float64)
        return np.clip(tex, 0, 255).astype(np.float32)


def save_model(directory: Path, weights: np.ndarray) -> Path:
    """Write ``mouth_interior-<hash>.npz`` (deterministic bytes)."""
    buf = io.BytesIO()
    np.savez(buf, format=np.array(FORMAT), nu=np.array(NU), nv=np.array(NV),
             weights=np.asarray(weights, np.float32))
    data = buf.getvalue()
    out = Path(directory) / f"{ROLE}-{hashlib.sha256(data).hexdigest()[:12]}.npz"
    out.write_bytes(data)
    return out


def load_model_file(path: Path) -> MouthInteriorModel:
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:12]
    if not Path(path).stem.endswith(f"-{digest}"):
        raise ModelError(f"{Path(path).name}: content hash {digest} does not match its name")
    with np.load(io.BytesIO(data)) as z:
        if int(z["format"]) != FORMAT or int(z["nu"]) != NU or int(z["nv"]) != NV:
            raise ModelError(f"{Path(path).name}: not a mouth interior model of format "
                             f"{FORMAT} ({NU}x{NV})")
        w = z["weights"].astype(np.float64)
    if w.shape != (N_FEATURES, NV * NU * 3) or not np.isfinite(w).all():
        raise ModelError(f"{Path(path).name}: weights of shape {w.shape}")
    return MouthInteriorModel(w, digest)


@lru_cache(maxsize=2)
def load_mouth_interior(directory: Path | None = None) -> MouthInteriorModel | None:
    """The shipped model, or None when the models directory has none."""
    d = directory or models_dir()
    found = sorted(d.glob(f"{ROLE}-*.npz"))
    if not found:
        return None
    if len(found) > 1:
        raise ModelError(f"several {ROLE} models in {d}: {[p.name for p in found]}")
    return load_model_file(found[0])
