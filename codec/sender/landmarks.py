"""The sender's face measurement: 68 landmarks per canvas frame, tracked and de-jittered.

The sender sees the face at the canvas resolution (256x256, 32 times the 8x8 stream's),
so it measures here what the receiver would otherwise have to guess: where the head is and
what the jaw, lips, eyes and brows do. ``FaceLandmarker.measure(canvas)`` returns one
:class:`LandmarkSample` per frame:

- **Tracking.** dlib's HOG detector runs on the canvas every ``redetect_every`` samples
  (by default every 2nd; and whenever the face was lost); in between, the shape predictor's box follows the
  previous frame's landmarks, placed as the detector placed it (the box-to-landmark offset
  and size ratio of the last detection). The predictor itself costs about 1 ms a frame.
- **De-jittering.** A causal One-Euro filter per point (Casiez et al., CHI 2012): slow
  points are low-pass filtered, fast ones (a lip opening) pass with little lag. The
  cutoff is high (``SMOOTH_CUTOFF_HZ``): a lower one lagged the lips at the code's rate.
- **Confidence.** A sample is confident only when the face was found by the last
  detection, every point lies on the canvas (with a margin), the face is big enough for
  the predictor, and the head is not turned far from the camera (the nose tip stays well
  inside the jaw line). Frames that fail carry ``confident=False``; the receiver then
  falls back to the 8x8 stream and the speech for them.

The landmark model is dlib's 68-point predictor (``face-recognition-models``), the one
the metrics use; docs/DESIGN.md says why and what its licence means for a deployment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from codec import CANVAS_FPS
from codec._dlib import DLIB_LOCK, as_dlib_image, face_detector, shape_predictor_68

N_POINTS = 68
_NOSE_TIP = 30
_JAW_LEFT, _JAW_RIGHT = 0, 16
MIN_FACE_PX = 40.0  # landmark box width below which the predictor is unreliable
EDGE_MARGIN_FRACTION = 0.15  # points may sit this far outside the canvas, in face widths
MAX_YAW_RATIO = 0.92  # nose tip offset from the jaw centre, in half jaw widths (near profile)
# The One-Euro filter's cutoff for slow points. At the code's 12.5 samples/s a 1.5 Hz cutoff
# lagged the lips by about a sample: on val (benchmarks/diagnostics/code_budget.py) the landmarks the
# sender sent were 1.74 px off the true mouth, against 1.24 px at 20 Hz.
SMOOTH_CUTOFF_HZ = 20.0
# Detection every 2nd sample (160 ms at 12.5 samples/s): following the shape predictor's own
# box for 10 frames drifted by up to 7 px on val's fast-moving heads (measured mouth error on
# every frame: 2.09 px with a detection every 10 frames, 0.82 px with one every frame).
REDETECT_EVERY = 2


@dataclass(frozen=True)
class LandmarkSample:
    """One frame's measurement: (68, 2) float32 canvas pixels, or None when no face."""

    points: np.ndarray | None
    confident: bool


class OneEuroFilter:
    """Causal One-Euro filter over (N, 2) points at a fixed frame rate."""

    def __init__(self, fps: float, *, min_cutoff: float = 1.5, beta: float = 0.02,
                 d_cutoff: float = 2.0) -> None:
        self.dt = 1.0 / fps
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau / self.dt)

    def reset(self) -> None:
        self._x = None
        self._dx = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or self._dx is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self._x) / self.dt
        a_d = self._alpha(self.d_cutoff)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True)  # px/s per point
        a = self._alpha(self.min_cutoff + self.beta * speed)
        self._x = a * x + (1 - a) * self._x
        return self._x.copy()


def load_models() -> None:
    """Load dlib's detector and 68-point predictor now. The first load takes ~0.9 s on the
    dev box and holds the GIL for ~0.8 s of it (measured, /tmp/t_id2.py-style timing): on
    a live link that stalls the event loop, so the sender loads them before it connects."""
    face_detector()
    shape_predictor_68()


class FaceLandmarker:
    """Landmarks of the face on successive canvas frames (one instance per stream)."""

    def __init__(self, *, fps: float = float(CANVAS_FPS), redetect_every: int = REDETECT_EVERY,
                 smooth: bool = True, smooth_cutoff_hz: float = SMOOTH_CUTOFF_HZ) -> None:
        self.redetect_every = max(1, redetect_every)
        self.filter = OneEuroFilter(fps, min_cutoff=smooth_cutoff_hz) if smooth else None
        self._box: tuple[float, float, float] | None = None  # centre x, y and side
        self._offset = np.zeros(2)  # detector box centre minus landmark box centre
        self._ratio = 1.0  # detector box side / landmark box width
        self._since_detect = 10**9
        self._found = False

    def reset(self) -> None:
        self._box = None
        self._since_detect = 10**9
        self._found = False
        if self.filter is not None:
            self.filter.reset()

    def measure(self, canvas: np.ndarray) -> LandmarkSample:
        img = as_dlib_image(canvas)
        with DLIB_LOCK:
            raw = self._measure(img)
        if raw is None:
            if self.filter is not None:
                self.filter.reset()
            return LandmarkSample(None, False)
        points = self.filter(raw) if self.filter is not None else raw
        confident = self._found and plausible(points, img.shape[1], img.shape[0])
        return LandmarkSample(points.astype(np.float32), confident)

    def _measure(self, img: np.ndarray) -> np.ndarray | None:
        self._since_detect += 1
        if self._box is None or self._since_detect >= self.redetect_every:
            self._since_detect = 0
            rects = face_detector()(img, 0)
            if len(rects) == 0 and self._box is None:
                rects = face_detector()(img, 1)
            if len(rects) == 0:
                self._found = False
                if self._box is None:
                    return None
                # Keep following the last face for this frame; it is not confident.
            else:
                r = max(rects, key=lambda r: r.width() * r.height())
                if self._box is not None:  # several faces: the one nearest the last
                    cx, cy, _ = self._box
                    r = min(rects, key=lambda r: (r.center().x - cx) ** 2 + (r.center().y - cy) ** 2)
                self._found = True
                side = float(r.width())
                self._box = (r.left() + side / 2, r.top() + side / 2, side)
                points = self._predict(img, self._box)
                lo, hi = points.min(0), points.max(0)
                self._offset = np.array(self._box[:2]) - (lo + hi) / 2
                self._ratio = side / max(hi[0] - lo[0], 1.0)
                return points
        assert self._box is not None
        points = self._predict(img, self._box)
        lo, hi = points.min(0), points.max(0)
        centre = (lo + hi) / 2 + self._offset
        side = self._ratio * max(hi[0] - lo[0], 1.0)
        if not (np.isfinite(centre).all() and 20.0 < side < 4 * max(img.shape[:2])):
            self._box = None
            self._found = False
            return None
        self._box = (float(centre[0]), float(centre[1]), float(side))
        return points

    @staticmethod
    def _predict(img: np.ndarray, box: tuple[float, float, float]) -> np.ndarray:
        import dlib

        cx, cy, side = box
        rect = dlib.rectangle(int(round(cx - side / 2)), int(round(cy - side / 2)),
                              int(round(cx + side / 2)), int(round(cy + side / 2)))
        shape = shape_predictor_68()(img, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


def plausible(points: np.ndarray, width: int, height: int) -> bool:
    """True for a face the code can describe: on the canvas, big enough, not turned away."""
    p = np.asarray(points, np.float64)
    if p.shape != (N_POINTS, 2) or not np.isfinite(p).all():
        return False
    jaw_w = float(np.linalg.norm(p[_JAW_RIGHT] - p[_JAW_LEFT]))
    m = EDGE_MARGIN_FRACTION * jaw_w
    if (p < -m).any() or (p[:, 0] > width - 1 + m).any() or (p[:, 1] > height - 1 + m).any():
        return False
    if jaw_w < MIN_FACE_PX:
        return False
    mid = (p[_JAW_RIGHT] + p[_JAW_LEFT]) / 2
    axis = (p[_JAW_RIGHT] - p[_JAW_LEFT]) / jaw_w
    yaw = abs(float(np.dot(p[_NOSE_TIP] - mid, axis))) / (jaw_w / 2)
    return yaw < MAX_YAW_RATIO
