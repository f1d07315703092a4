"""The motion code's model: a head pose plus a linear basis of expression displacements.

A face's 68 landmarks ``L`` (canvas pixels) are described relative to the identity frame's
landmarks ``A`` (the *anchor*, sent once with each identity frame) as

    L  ~=  P( n(A) + B c )

- ``n(X)``: ``X`` normalised by the similarity that takes its rigid points (eye corners and
  nose) onto the template's (inter-ocular distance 1, centred at 0);
- ``P``: the pose, the similarity from template space back to the canvas,
  ``x' = a x - b y + tx, y' = b x + a y + ty``; four numbers per frame;
- ``B``: (136, K) orthonormal basis of pose-normalised landmark displacements ``n(L) - n(A)``
  between frames of the same person, fitted on the train split by PCA
  (``training/fit_motion_basis.py``); ``c`` are K expression coefficients per frame
  (jaw, lips, eyes, brows, and what a similarity cannot say of a turned head).

The expression is a displacement from the identity frame's own shape, so the basis never
has to describe a face's identity, only how faces move: that is what lets it generalise to
people it was not fitted on. The basis is a versioned model file like the networks:
``models/motion_basis-<sha256[:12]>.npz``, verified on load; the CONFIG packet names it by
the first 4 bytes of that hash, so a receiver never decodes a code with another basis.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from codec.models import models_dir

N_POINTS = 68
#: Points that move little with expression: eye corners, nose bridge, nose base.
RIGID = np.array([36, 39, 42, 45, 27, 28, 29, 30, 31, 33, 35])
BASIS_FORMAT = 1


@dataclass(frozen=True)
class Pose:
    """Similarity from template space to canvas pixels."""

    a: float
    b: float
    tx: float
    ty: float

    def as_array(self) -> np.ndarray:
        return np.array([self.a, self.b, self.tx, self.ty], np.float64)

    def apply(self, pts: np.ndarray) -> np.ndarray:
        x, y = pts[..., 0], pts[..., 1]
        return np.stack([self.a * x - self.b * y + self.tx, self.b * x + self.a * y + self.ty], -1)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> Pose:
    """Least-squares similarity (no reflection) taking src points onto dst points."""
    s, d = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    sm, dm = s.mean(0), d.mean(0)
    s0, d0 = s - sm, d - dm
    den = float((s0**2).sum())
    if den <= 1e-12:
        raise ValueError("degenerate points")
    a = float((s0 * d0).sum()) / den
    b = float((s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum()) / den
    tx = dm[0] - (a * sm[0] - b * sm[1])
    ty = dm[1] - (b * sm[0] + a * sm[1])
    return Pose(a, b, float(tx), float(ty))


def invert(p: Pose) -> Pose:
    det = p.a * p.a + p.b * p.b
    a, b = p.a / det, -p.b / det
    return Pose(a, b, -(a * p.tx - b * p.ty), -(b * p.tx + a * p.ty))


@dataclass(frozen=True)
class MotionBasis:
    template: np.ndarray  # (68, 2) mean normalised shape
    components: np.ndarray  # (136, K) orthonormal, strongest first
    scales: np.ndarray  # (K,) standard deviation of each coefficient on train
    digest: str  # sha256 hex of the file
    # Starting probabilities of the code's bit models (motion_codec._Models), by name.
    priors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_coeffs(self) -> int:
        return int(self.components.shape[1])

    @property
    def basis_id(self) -> int:
        """The 32-bit id the CONFIG packet carries (first 4 bytes of the file's hash)."""
        return int(self.digest[:8], 16)

    def pose_of(self, points: np.ndarray) -> Pose:
        """The pose P of a face: template space -> canvas pixels."""
        return fit_similarity(self.template[RIGID], np.asarray(points)[RIGID])

    def normalise(self, points: np.ndarray) -> np.ndarray:
        """n(points): the face in template space."""
        return invert(self.pose_of(points)).apply(np.asarray(points, np.float64))

    def analyse(self, points: np.ndarray, anchor_norm: np.ndarray,
                n_coeffs: int | None = None) -> tuple[Pose, np.ndarray]:
        """(pose, coefficients) of a face, relative to the anchor's normalised shape."""
        k = self.n_coeffs if n_coeffs is None else n_coeffs
        pose = self.pose_of(points)
        d = invert(pose).apply(np.asarray(points, np.float64)) - anchor_norm
        return pose, self.components[:, :k].T @ d.reshape(-1)

    def synthesise(self, pose: Pose, coeffs: np.ndarray, anchor_norm: np.ndarray) -> np.ndarray:
        """The (68, 2) canvas landmarks a code describes."""
        c = np.asarray(coeffs, np.float64)
        d = (self.components[:, : len(c)] @ c).reshape(N_POINTS, 2)
        return pose.apply(anchor_norm + d)


def save_basis(path_dir: Path, template: np.ndarray, components: np.ndarray,
               scales: np.ndarray, priors: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``motion_basis-<hash>.npz`` into path_dir (deterministic bytes)."""
    buf = io.BytesIO()
    extra = {f"prior_{k}": np.asarray(v, np.float32) for k, v in (priors or {}).items()}
    np.savez(buf, format=np.array(BASIS_FORMAT), template=template.astype(np.float32),
             components=components.astype(np.float32), scales=scales.astype(np.float32),
             **extra)  # type: ignore[arg-type]
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    out = Path(path_dir) / f"motion_basis-{digest[:12]}.npz"
    out.write_bytes(data)
    return out


def load_basis_file(path: Path) -> MotionBasis:
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    stem = Path(path).stem
    if "-" in stem and not digest.startswith(stem.rsplit("-", 1)[1]):
        raise ValueError(f"{path}: contents do not match the hash in its name")
    with np.load(io.BytesIO(data)) as z:
        if int(z["format"]) != BASIS_FORMAT:
            raise ValueError(f"{path}: motion basis format {int(z['format'])}")
        priors = {k[6:]: z[k].astype(np.float64) for k in z.files if k.startswith("prior_")}
        return MotionBasis(z["template"].astype(np.float64),
                           z["components"].astype(np.float64),
                           z["scales"].astype(np.float64), digest, priors)


@lru_cache(maxsize=4)
def load_basis(models: Path | None = None) -> MotionBasis | None:
    """The shipped basis (the newest ``motion_basis-*.npz``), or None when there is none."""
    root = models if models is not None else models_dir()
    files = sorted(Path(root).glob("motion_basis-*.npz"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    if len(files) > 1:
        raise ValueError(f"several motion bases in {root}: keep one")
    return load_basis_file(files[-1])
