"""How the canvas around the face moves relative to the identity frame.

The face's landmarks say where the head is; they do not say where the rest of the canvas
went. In a call from a desk the background holds still, but a pre-cropped or handheld
video, a zooming camera, or the tracker re-centring its crop moves everything. The sender
measures it: corners tracked by pyramidal Lucas-Kanade from the identity frame to each
canvas frame (always from the identity frame, so nothing drifts), outside the head, kept
only where tracking back returns to the start, and a similarity fitted to them with RANSAC
(OpenCV). ``measure`` returns the 2x3 matrix that takes identity-frame pixels to this
frame's, or the identity matrix when too few corners agree or the move is implausibly
large (a textureless wall, a patterned shirt that moves with the speaker).
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_CORNERS = 80
MIN_INLIERS = 10
FB_MAX_PX = 0.7  # forward-backward tracking error above which a corner is not trusted
MIN_INLIER_FRACTION = 0.5
MAX_SHIFT_FRACTION = 0.12  # larger background moves (of the canvas side) are not believed
MAX_SCALE_CHANGE = 0.12
JUMP_PX = 4.0  # a change of the answer larger than this (at the canvas corners) waits a frame
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class BackgroundMotion:
    def __init__(self, identity_image: np.ndarray, face_points: np.ndarray | None) -> None:
        grey = cv2.cvtColor(np.ascontiguousarray(identity_image), cv2.COLOR_RGB2GRAY)
        self._ref = grey
        mask = np.full(grey.shape, 255, np.uint8)
        if face_points is not None:
            p = np.asarray(face_points, np.float64)
            centre = p.mean(0)
            hull = cv2.convexHull(np.rint(centre + 1.5 * (p - centre)).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 0)
            # The hair above the brows moves with the head, not the background.
            top = p[17:27] - 0.8 * (p[8] - p[27:31].mean(0))
            cv2.fillConvexPoly(mask, cv2.convexHull(np.rint(np.concatenate([top, p[17:27]]))
                                                   .astype(np.int32)), 0)
        corners = cv2.goodFeaturesToTrack(grey, MAX_CORNERS, 0.01, 8, mask=mask)
        self._corners = corners if corners is not None else np.zeros((0, 1, 2), np.float32)
        self._last = IDENTITY.copy()
        self._pending: np.ndarray | None = None
        self._size = float(max(grey.shape))

    def measure(self, canvas: np.ndarray) -> np.ndarray:
        """2x3 similarity: identity-frame pixel -> this frame's pixel. A jump from the last
        answer is believed only once the next frame confirms it (one wrong fit must not
        throw the picture)."""
        m = self._fit(canvas)
        if _moves(m, self._last) <= JUMP_PX or (self._pending is not None
                                                and _moves(m, self._pending) <= JUMP_PX / 2):
            self._last, self._pending = m, None
        else:
            self._pending = m
        return self._last.copy()

    def _fit(self, canvas: np.ndarray) -> np.ndarray:
        if len(self._corners) < MIN_INLIERS:
            return IDENTITY.copy()
        grey = cv2.cvtColor(np.ascontiguousarray(canvas), cv2.COLOR_RGB2GRAY)
        lk = {"winSize": (21, 21), "maxLevel": 3}
        moved, status, _ = cv2.calcOpticalFlowPyrLK(self._ref, grey, self._corners, None, **lk)  # type: ignore[call-overload]
        back, status_b, _ = cv2.calcOpticalFlowPyrLK(grey, self._ref, moved, None, **lk)  # type: ignore[call-overload]
        fb = np.linalg.norm((back - self._corners).reshape(-1, 2), axis=1)
        ok = (status.ravel() == 1) & (status_b.ravel() == 1) & (fb < FB_MAX_PX)
        if ok.sum() < MIN_INLIERS:
            return IDENTITY.copy()
        m, inliers = cv2.estimateAffinePartial2D(self._corners[ok], moved[ok],
                                                 method=cv2.RANSAC, ransacReprojThreshold=1.0)
        if m is None or inliers is None:
            return IDENTITY.copy()
        n_in = int(inliers.sum())
        if n_in < MIN_INLIERS or n_in < MIN_INLIER_FRACTION * ok.sum():
            return IDENTITY.copy()
        scale = float(np.hypot(m[0, 0], m[1, 0]))
        side = max(grey.shape)
        if (abs(scale - 1.0) > MAX_SCALE_CHANGE
                or np.hypot(m[0, 2], m[1, 2]) > MAX_SHIFT_FRACTION * side + abs(scale - 1) * side):
            return IDENTITY.copy()
        return m.astype(np.float64)


def _moves(a: np.ndarray, b: np.ndarray, size: float = 256.0) -> float:
    """Largest distance between where two similarities put the canvas corners."""
    corners = np.array([[0.0, 0.0], [size, 0.0], [0.0, size], [size, size]])
    pa = corners @ a[:, :2].T + a[:, 2]
    pb = corners @ b[:, :2].T + b[:, 2]
    return float(np.linalg.norm(pa - pb, axis=1).max())
