"""Similarity warps of the identity frame and their fit to a low-resolution frame.

Analysis by synthesis, no training: find the warp ``W`` (shift, scale, rotation about the
canvas centre) whose exact box downsampling best matches the low-res frame ``l``,

    minimise  || D(W(I)) + b - l ||^2 + prior(W)

with ``b`` a per-channel brightness offset (solved in closed form, so lighting changes do
not pull the geometry) and a weak prior towards the starting warp and the identity warp.
Levenberg-Marquardt on the 4 parameters with a finite-difference Jacobian. To keep it cheap
the model is evaluated on a reduced copy of the identity frame (box-downsampled to
``model_size``; warping then box-downsampling commute closely for these smooth warps).
A fit that does not beat the identity warp, or leaves the plausible range, falls back.

Layered model (default): only the head and shoulders move. The face tracker centres them
in the canvas, so a fixed soft ellipse (``head_mask``) splits the identity frame into a head
layer that the warp moves (mask moved with it) over a static background:
``W(I) = W(m I) + (1 - W(m)) I``. On the val clips this scored about 0.6 dB above warping
the whole frame (see ``benchmarks/bench_receivers.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from codec.receiver.upsample import area_downsample
from codec.sender.downsample import box_downsample

# Finite-difference steps and prior scales, in canvas pixels / log-scale / radians.
_STEPS = np.array([0.5, 0.5, 0.005, 0.005])
_PARAM_SCALE = np.array([8.0, 8.0, 0.08, 0.08])  # one "unit" of prior per this much change
_BOUNDS = np.array([80.0, 80.0, np.log(1.5), np.deg2rad(35.0)])


@dataclass(frozen=True)
class SimilarityWarp:
    """Output = centre + shift + scale * R(angle) (source - centre), in canvas pixels."""

    tx: float = 0.0
    ty: float = 0.0
    log_scale: float = 0.0
    angle: float = 0.0  # radians, counter-clockwise in image coordinates

    def as_array(self) -> np.ndarray:
        return np.array([self.tx, self.ty, self.log_scale, self.angle], np.float64)

    @classmethod
    def from_array(cls, p: np.ndarray) -> SimilarityWarp:
        return cls(float(p[0]), float(p[1]), float(p[2]), float(p[3]))

    def matrix(self, size: int, canvas_size: int) -> np.ndarray:
        """2x3 source -> destination matrix for images of side ``size`` (the parameters are
        in units of a ``canvas_size`` canvas; shifts scale with the image)."""
        k = size / canvas_size
        s = np.exp(self.log_scale)
        c, sn = s * np.cos(self.angle), s * np.sin(self.angle)
        rot = np.array([[c, sn], [-sn, c]])
        # cv2 pixel centres: the image centre is at (size - 1) / 2.
        centre = np.full(2, (size - 1) / 2.0)
        shift = centre + k * np.array([self.tx, self.ty]) - rot @ centre
        return np.hstack([rot, shift[:, None]]).astype(np.float64)

    def lerp(self, other: SimilarityWarp, w: float) -> SimilarityWarp:
        return SimilarityWarp.from_array((1.0 - w) * self.as_array() + w * other.as_array())


def warp_image(image: np.ndarray, warp: SimilarityWarp, canvas_size: int) -> np.ndarray:
    """Warp an (H, H, C) image (bilinear, border replicate); keeps the dtype and shape."""
    size = image.shape[0]
    out = cv2.warpAffine(
        image,
        warp.matrix(size, canvas_size),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(image.shape)


def head_mask(size: int) -> np.ndarray:
    """(size, size, 1) float32 soft ellipse over the canvas' head and shoulders: 1 inside,
    0 in the background corners (semi-axes 100 x 140 canvas pixels, centre 22 px below the
    canvas centre, a ramp of about a quarter of the radius)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) * (256.0 / size)
    d = ((c[None, :] - 128.0) / 100.0) ** 2 + ((c[:, None] - 150.0) / 140.0) ** 2
    return np.clip((1.0 - d) / 0.5 + 0.5, 0.0, 1.0)[..., None].astype(np.float32)


class LayeredImage:
    """An identity frame that a similarity warp moves: the whole of it, or (with a mask)
    only its masked head layer over the static rest."""

    def __init__(self, image: np.ndarray, mask: np.ndarray | None) -> None:
        self.image = np.asarray(image, dtype=np.float32)
        self.mask = mask
        # premultiplied head layer and its mask, warped together in one call
        self._layer = None if mask is None else np.concatenate([self.image * mask, mask], 2)

    def compose(self, warp: SimilarityWarp, canvas_size: int) -> np.ndarray:
        if self._layer is None:
            return warp_image(self.image, warp, canvas_size)
        moved = warp_image(self._layer, warp, canvas_size)
        return moved[..., :3] + (1.0 - moved[..., 3:]) * self.image


@dataclass(frozen=True)
class WarpFit:
    warp: SimilarityWarp
    cost: float  # mean squared residual per low-res value, after the brightness offset
    identity_cost: float  # the same for the identity warp
    iterations: int
    fell_back: bool


class WarpFitter:
    """Fits similarity warps of one identity frame to low-res frames."""

    def __init__(
        self,
        identity: np.ndarray,
        *,
        canvas_size: int = 256,
        model_size: int = 64,
        iterations: int = 12,
        prior_weight: float = 2.0,
        identity_prior_weight: float = 0.2,
        layered: bool = True,
    ) -> None:
        self.canvas_size = canvas_size
        self.model_size = model_size
        self.iterations = iterations
        self.prior_weight = prior_weight
        self.identity_prior_weight = identity_prior_weight
        small = box_downsample(identity, canvas_size // model_size)
        self.model = LayeredImage(small, head_mask(model_size) if layered else None)

    def synthesise(self, warp: SimilarityWarp, lowres_size: int) -> np.ndarray:
        """Approximately ``D(W(I))`` at lowres_size (float32)."""
        return area_downsample(self.model.compose(warp, self.canvas_size), lowres_size)

    def _residual(self, p: np.ndarray, lowres: np.ndarray) -> np.ndarray:
        r = self.synthesise(SimilarityWarp.from_array(p), lowres.shape[0]) - lowres
        r -= r.mean(axis=(0, 1), keepdims=True)  # the brightness offset, in closed form
        return r.ravel().astype(np.float64)

    def _cost(self, r: np.ndarray, p: np.ndarray, p0: np.ndarray) -> float:
        return float(r @ r) / r.size + self._prior(p, p0)

    def _prior(self, p: np.ndarray, p0: np.ndarray) -> float:
        a = (p - p0) / _PARAM_SCALE
        b = p / _PARAM_SCALE
        return float(self.prior_weight * (a @ a) + self.identity_prior_weight * (b @ b))

    def fit(self, lowres: np.ndarray, start: SimilarityWarp | None = None) -> WarpFit:
        lowres = np.asarray(lowres, dtype=np.float32)
        if lowres.shape[0] > self.model_size:  # e.g. a 128x128 stream: fit at model size
            lowres = area_downsample(lowres, self.model_size)
        if self.model_size % lowres.shape[0]:
            raise ValueError(f"low-res size {lowres.shape[0]} does not divide {self.model_size}")
        p0 = (start or SimilarityWarp()).as_array()
        p0 = np.clip(np.nan_to_num(p0), -_BOUNDS, _BOUNDS)
        zero = np.zeros(4)
        r_id = self._residual(zero, lowres)
        identity_cost = float(r_id @ r_id) / r_id.size
        p = p0.copy()
        r = self._residual(p, lowres)
        cost = self._cost(r, p, p0)
        n = r.size
        lam = 1e-3
        # Normalised prior as a quadratic in p: (w_a + w_b) |p/s|^2 - 2 w_a p0.p/s^2 + c.
        inv_s2 = 1.0 / _PARAM_SCALE**2
        wa, wb = self.prior_weight, self.identity_prior_weight
        it = 0
        for it in range(1, self.iterations + 1):  # noqa: B007 - the count is returned
            jac = np.empty((n, 4))
            for k in range(4):
                dp = np.zeros(4)
                dp[k] = _STEPS[k]
                jac[:, k] = (self._residual(p + dp, lowres) - r) / _STEPS[k]
            hess = jac.T @ jac / n + np.diag((wa + wb) * inv_s2)
            grad = jac.T @ r / n + (wa * (p - p0) + wb * p) * inv_s2
            improved = False
            while lam < 1e6:
                step = np.linalg.solve(hess + lam * np.diag(np.diag(hess)), -grad)
                q = np.clip(p + step, -_BOUNDS, _BOUNDS)
                rq = self._residual(q, lowres)
                cq = self._cost(rq, q, p0)
                if cq < cost:
                    p, r, cost, improved = q, rq, cq, True
                    lam = max(lam / 4.0, 1e-6)
                    break
                lam *= 8.0
            if not improved or np.all(np.abs(step) < _STEPS * 0.05):
                break
        data_cost = float(r @ r) / n
        fell_back = not np.all(np.isfinite(p)) or data_cost > identity_cost
        if fell_back:
            p, data_cost = zero, identity_cost
        return WarpFit(SimilarityWarp.from_array(p), data_cost, identity_cost, it, fell_back)
