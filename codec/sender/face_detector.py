"""Face detection for the sender: dlib's HOG frontal face detector on small images.

Two ways to look for a face, both on scaled-down copies so the cost does not grow with the
source resolution:

- ``search``: the whole frame, resized so its longest side is ``search_side`` pixels
  (faces down to about 80 / search_side of the frame's longest side are found);
- ``near``: only a region around a face seen recently, resized so the face is about
  ``roi_face_px`` pixels wide (about ten times cheaper than a search, and it keeps
  following the same person when there are several).

The dlib detector is the process's one (``codec._dlib``), created on first use, never at
import, and run under its lock. Boxes are returned in the pixel
coordinates of the frame that was passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from codec._dlib import DLIB_LOCK, as_dlib_image, face_detector

# dlib's HOG window is 80x80: a face smaller than this in the analysed image is missed.
HOG_MIN_FACE_PX = 80
# Small frames are enlarged for the search, but at most this much (faces of 1/10 of a
# 256 px frame are still found; tiny frames do not cost a full-size search).
MAX_SEARCH_UPSCALE = 3.0


@dataclass(frozen=True)
class FaceBox:
    """A detected face: the HOG box (eyebrows to chin, cheek to cheek) in frame pixels."""

    x: float
    y: float
    w: float
    h: float
    score: float = 0.0

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def size(self) -> float:
        return (self.w + self.h) / 2

    def scaled(self, s: float) -> FaceBox:
        return FaceBox(self.x * s, self.y * s, self.w * s, self.h * s, self.score)


class FaceDetector:
    """dlib HOG detector with whole-frame search and region-of-interest modes."""

    def __init__(self, *, search_side: int = 800, roi_face_px: int = 110) -> None:
        self.search_side = search_side
        self.roi_face_px = roi_face_px
        self._dlib: Any = None

    def _detector(self) -> Any:
        if self._dlib is None:
            self._dlib = face_detector()  # the process's one detector (codec._dlib)
        return self._dlib

    def _run(self, image: np.ndarray, scale: float, ox: float = 0.0,
             oy: float = 0.0) -> list[FaceBox]:
        """Detect on ``image`` resized by ``scale``; map boxes back with the offset."""
        h, w = image.shape[:2]
        if scale != 1.0:
            size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            image = cv2.resize(image, size, interpolation=interp)
        if min(image.shape[:2]) < HOG_MIN_FACE_PX:
            return []
        img = as_dlib_image(image)  # contiguous uint8: dlib misreads strided arrays
        with DLIB_LOCK:
            rects, scores, _ = self._detector().run(img, 0, 0.0)
        out = []
        for r, sc in zip(rects, scores):
            b = FaceBox(r.left() / scale + ox, r.top() / scale + oy,
                        r.width() / scale, r.height() / scale, float(sc))
            out.append(b)
        return out

    def search(self, frame: np.ndarray) -> list[FaceBox]:
        """All faces in the whole frame, largest first."""
        h, w = frame.shape[:2]
        scale = min(self.search_side / max(h, w), MAX_SEARCH_UPSCALE)
        faces = self._run(frame, scale)
        return sorted(faces, key=lambda b: -b.size)

    def near(self, frame: np.ndarray, face: FaceBox, *, reach: float = 1.6) -> FaceBox | None:
        """The face closest to ``face`` within ``reach`` face sizes of its centre, if any."""
        h, w = frame.shape[:2]
        half = reach * face.size
        x0, x1 = int(max(0, face.cx - half)), int(min(w, face.cx + half))
        y0, y1 = int(max(0, face.cy - half)), int(min(h, face.cy + half))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        roi = frame[y0:y1, x0:x1]
        scale = min(4.0, self.roi_face_px / max(face.size, 1.0))
        faces = self._run(roi, scale, x0, y0)
        if not faces:
            return None
        return min(faces, key=lambda b: (b.cx - face.cx) ** 2 + (b.cy - face.cy) ** 2)


class DetectionSchedule:
    """Decides when to look, and where: the sender-side face observation loop.

    While a face is known, it is re-detected near its last position every ``track_every``
    frames (a miss there falls back to a whole-frame search). While no face is known, a
    whole-frame search runs every ``search_every`` frames. ``observe`` returns the face
    found on this frame, or None when it did not look or found nothing; ``looked`` says
    which.
    """

    def __init__(self, detector: FaceDetector | None = None, *, track_every: int = 2,
                 search_every: int = 5) -> None:
        self.detector = detector or FaceDetector()
        self.track_every = max(1, track_every)
        self.search_every = max(1, search_every)
        self.last: FaceBox | None = None
        self.looked = False
        self._since = 10**9  # frames since the last look: look on the first frame

    def observe(self, frame: np.ndarray) -> FaceBox | None:
        """Advance one frame; look at it if due. Returns the face found, if any."""
        return self.look(frame) if self.tick() else None

    def tick(self) -> bool:
        """Advance one frame; True when this frame is to be looked at (then call ``look``).

        Lets a caller skip converting the pixels of frames nobody looks at.
        """
        period = self.track_every if self.last is not None else self.search_every
        self._since += 1
        self.looked = self._since >= period
        if self.looked:
            self._since = 0
        return self.looked

    def look(self, frame: np.ndarray) -> FaceBox | None:
        found = self.detector.near(frame, self.last) if self.last is not None else None
        if found is None:
            faces = self.detector.search(frame)
            found = faces[0] if faces else None
        # Lost: go back to searching (the crop holds meanwhile).
        self.last = found
        return found
