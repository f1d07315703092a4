"""Animate the identity frame to a set of 68 landmarks: a piecewise-affine warp, no training.

The identity frame's landmarks (the motion code's anchor) and a frame's landmarks (decoded
from the code) are two triangulations of the same control points:

- the 68 face points;
- points that move rigidly with the head (the similarity fitted on the eye corners and
  nose): the forehead above the brows and a ring around the face that carries the hair,
  ears and chin line;
- points on the canvas border, which move with the background (the sender measures its
  similarity to the identity frame: still for a desk, moving for a handheld or pre-cropped
  video).

Delaunay triangles are built once on the anchor; each output pixel is taken from the
identity frame through its triangle's affine map (a backward map rasterised with OpenCV,
then ``cv2.remap``), so every pixel of the output is a pixel of the real identity frame:
the output keeps its detail wherever the face is visible in it. The displacement field is
smoothed slightly so the triangle edges leave no creases. Layers: the head (a soft mask of
the face and hair) moves with the mesh over the rest of the canvas, which moves only with
the background's similarity, so the wall behind a turning head does not bend with it.

What a warp cannot make, the inside of a mouth that opens wider than in the identity
frame, is painted: the part of the output's inner-lip polygon that the identity frame's
mouth does not cover gets the teeth and cavity that ``mouth_interior`` predicts from the
lips' shape and the face's colours (a linear model fitted on ``train``), or, without that
model file, a dark cavity shaded from the identity frame's lip colour with a band of teeth.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from codec.bitstream.motion_basis import RIGID, fit_similarity
from codec.receiver.mouth_interior import load_mouth_interior, texture_map

INNER_LIP = np.arange(60, 68)
OUTER_LIP = np.arange(48, 60)
_BROWS = np.arange(17, 27)
_JAW = np.arange(0, 17)
FLOW_SMOOTH_SIGMA = 1.5
CAVITY_SHADE = 0.5  # the mouth cavity's colour, as a fraction of the lips' mean colour
TEETH = True  # paint the upper teeth below the upper lip of an opened mouth
LAYERED = True  # only the head moves; the rest of the canvas stays as in the identity frame
HEAD_GROW = 1.12  # the head layer's outline: the face (jaw + raised brows) grown by this
TEETH_COLOUR = np.array([0.80, 0.76, 0.72], np.float32)  # of the skin's brightness
LEARNED_INTERIOR = True  # paint the mouth_interior model's teeth and cavity when shipped
INTERIOR_ALPHA = "opened"  # "opened": only what opened beyond the identity; "full": all
INTERIOR_STRENGTH = 0.75  # how much of the learned interior is painted over the warp


def _head_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Control points beyond the 68 that move with the head, derived from a face's 68
    points, and how much of the head's motion each follows (1: all of it)."""
    p = np.asarray(points, np.float64)
    eyes = (p[36:42].mean(0) + p[42:48].mean(0)) / 2
    chin = p[8]
    down = chin - eyes
    face_h = float(np.linalg.norm(down)) or 1.0
    down /= face_h
    right = np.array([-down[1], down[0]])
    centre = eyes + 0.35 * face_h * down
    # Forehead: above each brow point by half the eyes-chin distance.
    forehead = p[_BROWS] - 0.55 * face_h * down
    # An ellipse around the head (hair, ears, the top of the neck): wider above the eyes
    # than below the chin; the part below the jaw follows the head only half way (the neck
    # and shoulders turn less than the face).
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    c, s = np.cos(ang), np.sin(ang)
    ry = np.where(s < 0, 1.1, 0.85) * face_h
    ring = centre + (1.0 * face_h * c)[:, None] * right + (ry * s)[:, None] * down
    follow = np.concatenate([np.ones(len(forehead)), np.where(s > 0.5, 0.5, 1.0)])
    return np.concatenate([forehead, ring]), follow


def _border_points(size: int, n: int = 6) -> np.ndarray:
    s = size - 1.0
    t = np.linspace(0.0, s, n)
    pts = [(x, 0.0) for x in t] + [(x, s) for x in t]
    pts += [(0.0, y) for y in t[1:-1]] + [(s, y) for y in t[1:-1]]
    return np.array(pts, np.float64)


class LandmarkWarp:
    """The identity frame, warped to any landmarks of the same face."""

    def __init__(self, image: np.ndarray, anchor: np.ndarray) -> None:
        self.image = np.ascontiguousarray(np.asarray(image, np.float32))
        self.size = self.image.shape[0]
        self.anchor = np.asarray(anchor, np.float64)
        if self.anchor.shape != (68, 2) or not np.isfinite(self.anchor).all():
            raise ValueError("anchor must be (68, 2) finite points")
        self._border = _border_points(self.size)
        head, follow = _head_points(self.anchor)
        # Head points off the canvas (a face near its edge) are left out for good.
        inside = ((head >= 2.0) & (head <= self.size - 3.0)).all(1)
        self._head, self._follow = head[inside], follow[inside]
        src = self._controls(self.anchor)
        self._src = src
        tri = Delaunay(src)
        self.triangles = tri.simplices.astype(np.int32)
        self._grid = np.mgrid[0 : self.size, 0 : self.size].astype(np.float32)[::-1]  # x, y
        # Centres of the half-resolution grid's pixels, in full-resolution coordinates.
        half = np.mgrid[0 : self.size // 2, 0 : self.size // 2].astype(np.float32)[::-1]
        self._half_grid = 2.0 * half + 0.5
        lip = self.image[_mask_of(self.anchor[OUTER_LIP], self.size) > 0]
        lip_colour = lip.mean(0) if len(lip) else np.array([150.0, 80.0, 80.0])
        self.lip_colour = lip_colour.astype(np.float64)
        self.cavity_colour = (CAVITY_SHADE * lip_colour).astype(np.float32)
        self._anchor_inner_area = _area(self.anchor[INNER_LIP])
        cheeks = np.concatenate([self.anchor[[1, 2, 3, 31]], self.anchor[[15, 14, 13, 35]]])
        skin = self.image[_mask_of(cheeks[:4], self.size) + _mask_of(cheeks[4:], self.size) > 0]
        self.skin_colour = (skin.mean(0) if len(skin) else np.full(3, 170.0)).astype(np.float64)
        self.skin_brightness = float(self.skin_colour.mean())
        self._head_mask = _head_mask(self.anchor, self.size)
        self.interior = load_mouth_interior() if LEARNED_INTERIOR else None

    def _controls(self, points: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
        """68 points + head points (moved rigidly from the anchor's) + border points (moved
        with the background)."""
        sim = fit_similarity(self.anchor[RIGID], points[RIGID])
        moved = sim.apply(self._head)
        border = self._border
        behind = self._head
        if background is not None:
            border = _affine(background, border)
            behind = _affine(background, self._head)
        head = behind + self._follow[:, None] * (moved - behind)
        # Head points stay inside the canvas, just within the border points.
        head = np.clip(head, 1.0, self.size - 2.0)
        return np.concatenate([points, head, border])

    def flow(self, points: np.ndarray,
             background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Backward map (map_x, map_y) float32 (size, size): output pixel -> source pixel.

        The piecewise-affine map is evaluated on a half-resolution grid (its triangles are
        rasterised there) and upsampled: the map is smoothed by ``FLOW_SMOOTH_SIGMA`` pixels
        anyway, and it is four times cheaper."""
        dst = self._controls(np.asarray(points, np.float64), background)
        d, s_ = dst[self.triangles], self._src[self.triangles]  # (T, 3, 2)
        dh = np.concatenate([d, np.ones((len(d), 3, 1))], axis=2)  # (T, 3, 3)
        det = np.linalg.det(dh)
        ok = np.abs(det) > 1e-3
        mats = np.zeros((len(d) + 1, 3, 2), np.float32)
        mats[0] = [[1, 0], [0, 1], [0, 0]]  # pixels no triangle covers: identity
        mats[1:][ok] = np.linalg.solve(dh[ok], s_[ok])
        h = self.size // 2
        index = np.zeros((h, h), np.int32)
        scaled = np.rint((d - 0.5) * 8).astype(np.int32)  # half-res pixels, 4 fractional bits
        for i in np.flatnonzero(ok):
            cv2.fillConvexPoly(index, scaled[i], int(i) + 1, cv2.LINE_8, 4)
        m = mats[index]  # (h, h, 3, 2)
        gx, gy = self._half_grid
        map_x = m[..., 0, 0] * gx + m[..., 1, 0] * gy + m[..., 2, 0] - gx
        map_y = m[..., 0, 1] * gx + m[..., 1, 1] * gy + m[..., 2, 1] - gy
        size = (self.size, self.size)
        dx = cv2.resize(map_x, size, interpolation=cv2.INTER_LINEAR)
        dy = cv2.resize(map_y, size, interpolation=cv2.INTER_LINEAR)
        if FLOW_SMOOTH_SIGMA > 0:
            dx = cv2.GaussianBlur(dx, (0, 0), FLOW_SMOOTH_SIGMA)
            dy = cv2.GaussianBlur(dy, (0, 0), FLOW_SMOOTH_SIGMA)
        gx, gy = self._grid
        return gx + dx, gy + dy

    def render(self, points: np.ndarray, background: np.ndarray | None = None, *,
               fill_mouth: bool = True) -> np.ndarray:
        """float32 (size, size, 3): the identity frame animated to ``points``, its
        background moved by the 2x3 similarity ``background`` (None: held still)."""
        map_x, map_y = self.flow(points, background)
        out = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        if LAYERED:
            # The head layer moves over a static background (the camera holds still in a
            # call and the tracker holds the crop): background pixels never follow the face.
            m = cv2.remap(self._head_mask, map_x, map_y, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
            still = self.image
            if background is not None and not np.allclose(background, _EYE, atol=1e-4):
                still = cv2.warpAffine(self.image, background.astype(np.float32),  # type: ignore[assignment]
                                       (self.size, self.size), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
            out = m * out + (1.0 - m) * still
        if fill_mouth:
            if self.interior is not None:
                self._paint_interior(out, np.asarray(points, np.float64))
            else:
                self._paint_cavity(out, np.asarray(points, np.float64))
        return out

    def _mouth_box(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        lo = np.maximum(np.floor(points[OUTER_LIP].min(0)) - 4, 0).astype(int)
        hi = np.minimum(np.ceil(points[OUTER_LIP].max(0)) + 5, self.size).astype(int)
        return None if (hi - lo).min() < 2 else (lo, hi)

    def _paint_interior(self, full: np.ndarray, points: np.ndarray) -> None:
        """The learned interior (``mouth_interior``) inside the inner lips, as much as the
        mouth opened beyond the identity frame's own opening (``INTERIOR_ALPHA``)."""
        assert self.interior is not None
        inner = points[INNER_LIP]
        opened = _area(inner) - self._anchor_inner_area
        if INTERIOR_ALPHA == "opened" and opened <= 4.0:
            return
        if _area(inner) <= 4.0:
            return
        found = self._mouth_box(points)
        if found is None:
            return
        lo, hi = found
        out = full[lo[1] : hi[1], lo[0] : hi[0]]
        box = (int(hi[1] - lo[1]), int(hi[0] - lo[0]))
        tex = self.interior.predict(points, self.lip_colour, self.skin_colour)
        map_u, map_v, _ = texture_map(points, box, lo.astype(np.float64))
        fill = cv2.remap(tex, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = _mask_of(inner - lo, box, soft=1.0)
        w = 1.0 if INTERIOR_ALPHA == "full" else min(1.0, opened / max(_area(inner), 1.0) * 1.2)
        w *= INTERIOR_STRENGTH
        a = (w * mask)[..., None]
        out *= 1.0 - a
        out += a * fill

    def _paint_cavity(self, full: np.ndarray, points: np.ndarray) -> None:
        inner = points[INNER_LIP]
        opened = _area(inner) - self._anchor_inner_area
        if opened <= 4.0:
            return
        found = self._mouth_box(points)  # work in the mouth's box only
        if found is None:
            return
        lo, hi = found
        out = full[lo[1] : hi[1], lo[0] : hi[0]]
        points = points - lo
        inner = points[INNER_LIP]
        box = (hi[1] - lo[1], hi[0] - lo[0])
        mask = _mask_of(inner, box, soft=1.0)
        # Only as much as the mouth opened beyond the identity frame's own opening.
        w = min(1.0, opened / max(_area(inner), 1.0) * 1.2)
        a = (w * mask)[..., None]
        fill = np.broadcast_to(self.cavity_colour, out.shape).copy()
        if TEETH:
            upper = inner[:5]  # 60-64: the upper inner lip, corner to corner
            mouth_w = float(np.linalg.norm(points[54] - points[48]))
            gap = float(np.mean(np.linalg.norm(inner[[1, 2, 3]] - inner[[7, 6, 5]], axis=1)))
            h = min(0.45 * gap, 0.12 * mouth_w)
            if h > 1.0:
                band = np.concatenate([upper, upper[::-1] + np.array([0.0, h])])
                teeth = _mask_of(band, box, soft=0.8)[..., None]
                colour = np.clip(TEETH_COLOUR * self.skin_brightness, 0, 255)
                fill = fill * (1 - teeth) + teeth * colour
        out *= 1.0 - a
        out += a * fill


_EYE = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def _head_mask(points: np.ndarray, size: int) -> np.ndarray:
    """Soft mask of the head in the identity frame: the jaw line and the brows raised to
    the hairline, grown about the face's centre, with a soft edge."""
    p = np.asarray(points, np.float64)
    eyes = (p[36:42].mean(0) + p[42:48].mean(0)) / 2
    down = p[8] - eyes
    face_h = float(np.linalg.norm(down)) or 1.0
    down /= face_h
    top = p[_BROWS][::-1] - 0.6 * face_h * down
    outline = np.concatenate([p[_JAW], top])
    centre = outline.mean(0)
    outline = centre + HEAD_GROW * (outline - centre)
    return _mask_of(outline, size, soft=0.06 * face_h)


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _mask_of(poly: np.ndarray, size: int | tuple[int, int], soft: float = 0.0) -> np.ndarray:
    shape = (size, size) if isinstance(size, int) else size
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.rint(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    if soft > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), soft)  # type: ignore[assignment]
    return mask
