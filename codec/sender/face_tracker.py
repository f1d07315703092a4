"""A stable square head-and-shoulders crop that follows a talking face.

The crop is a square box (centre, side) in source pixels whose side is ``crop_scale`` times
the detected face size, placed so the face centre sits at ``face_y`` of the canvas height
(a little above the middle, leaving room for the shoulders). Where that square would leave
the image it is first shrunk to the frame's short side and then shifted back inside, so a
planned crop never needs padding; :func:`crop_to_canvas` still accepts any box and pads
by edge replication where a box leaves the image.

The crop does not follow every detection (HOG boxes wobble by a few pixels from frame to
frame). ``CropFollower`` applies hysteresis: the box stays put while the wanted box is within
``inner_margin`` (position) and ``size_margin`` (scale) of it; once the face drifts beyond
that, the box moves towards it smoothly (``follow_rate`` of the remaining distance per frame)
until it has settled; a jump larger than ``cut_jump`` (a cut, a new person) snaps at once.

Two ways to use it:
- live: ``FaceTracker.update(frame) -> CropBox`` per frame (causal);
- offline: ``crop_plan.plan_crop_track`` on the detections of a whole clip (outlier
  rejection, interpolation between detections, zero-phase smoothing), used by ``canvas.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from codec import CANVAS_SIZE
from codec.errors import InputError
from codec.sender.face_detector import DetectionSchedule, FaceBox, FaceDetector

MAX_FRAME_SIDE = 8192


@dataclass(frozen=True)
class CropBox:
    """Square crop in source pixels: centre (cx, cy) and side."""

    cx: float
    cy: float
    side: float

    @property
    def x0(self) -> float:
        return self.cx - self.side / 2

    @property
    def y0(self) -> float:
        return self.cy - self.side / 2

    def as_xys(self) -> tuple[float, float, float]:
        """(x0, y0, side), the layout of ``FaceClip.boxes``."""
        return (self.x0, self.y0, self.side)

    def scaled(self, s: float) -> CropBox:
        return CropBox(self.cx * s, self.cy * s, self.side * s)


@dataclass(frozen=True)
class TrackerConfig:
    crop_scale: float = 2.6  # crop side / face box size
    face_y: float = 0.47  # face centre height in the canvas (0 top, 1 bottom)
    inner_margin: float = 0.08  # tolerated drift, fraction of the side
    size_margin: float = 0.15  # tolerated relative change of the wanted side
    settle: float = 0.01  # moving stops when this close (fraction of the side)
    follow_rate: float = 0.15  # fraction of the remaining distance moved per frame
    cut_jump: float = 0.45  # a jump beyond this fraction of the side (or 1.6x size) snaps
    cut_size: float = 1.6
    track_every: int = 2  # detection period while tracking, in frames
    search_every: int = 5  # detection period while no face is known
    smooth_frames: float = 3.0  # offline zero-phase smoothing time constant, frames
    size_median: int = 15  # detections in the running median of the face size (offline)


def centre_box(width: int, height: int) -> CropBox:
    """The largest centred square: the fallback crop when there is no face."""
    side = float(min(width, height))
    return CropBox(width / 2, height / 2, side)


def clamp_box(box: CropBox, width: int, height: int) -> CropBox:
    """Shrink to the short side if needed and shift the square inside the image."""
    side = max(8.0, min(box.side, float(min(width, height))))
    cx = min(max(box.cx, side / 2), width - side / 2)
    cy = min(max(box.cy, side / 2), height - side / 2)
    return CropBox(cx, cy, side)


def target_crop(face: FaceBox, width: int, height: int, cfg: TrackerConfig) -> CropBox:
    """The crop a single detection asks for (before hysteresis), fitted into the frame."""
    return clamp_box(unclamped_crop(face, cfg), width, height)


def unclamped_crop(f: FaceBox, cfg: TrackerConfig) -> CropBox:
    """The crop a detection asks for, before it is fitted into the frame."""
    side = cfg.crop_scale * f.size
    return CropBox(f.cx, f.cy + (0.5 - cfg.face_y) * side, side)


def is_cut(a: CropBox, b: CropBox, cfg: TrackerConfig) -> bool:
    """True when b is too far from a to be reached by following (cut, new person)."""
    d = math.hypot(b.cx - a.cx, b.cy - a.cy) / a.side
    r = max(b.side / a.side, a.side / b.side)
    return d > cfg.cut_jump or r > cfg.cut_size


class CropFollower:
    """Hysteresis + smooth approach; ``step(target)`` gives this frame's crop."""

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.box: CropBox | None = None
        self.moving = False
        self._cut_votes = 0

    def step(self, target: CropBox | None, *, snap: bool = False, confirm_cuts: bool = True,
             fresh: bool = True) -> CropBox | None:
        """This frame's box, given the wanted one (None: nothing seen, hold). ``snap`` jumps
        straight to it; ``confirm_cuts`` waits for a second far-away observation before a
        cut (``fresh`` says whether ``target`` comes from a new detection or is held)."""
        cfg = self.cfg
        if target is None:  # nothing seen: hold
            return self.box
        cur = self.box
        if cur is None or snap:
            self.box, self.moving, self._cut_votes = target, False, 0
            return self.box
        if is_cut(cur, target, cfg):
            self._cut_votes += int(fresh)
            if not confirm_cuts or self._cut_votes >= 2:  # a single wild detection is ignored
                self.box, self.moving, self._cut_votes = target, False, 0
            return self.box
        self._cut_votes = 0
        d = math.hypot(target.cx - cur.cx, target.cy - cur.cy) / cur.side
        ds = abs(math.log(target.side / cur.side))
        if not self.moving and (d > cfg.inner_margin or ds > math.log1p(cfg.size_margin)):
            self.moving = True
        if self.moving:
            a = cfg.follow_rate
            self.box = CropBox(cur.cx + a * (target.cx - cur.cx), cur.cy + a * (target.cy - cur.cy),
                               cur.side * math.exp(a * math.log(target.side / cur.side)))
            if d < cfg.settle and ds < cfg.settle:
                self.moving = False
        return self.box


class FaceTracker:
    """Live (causal) tracker: one ``update(frame)`` per frame, returns the crop box.

    Before any face has been seen it returns the centred square (``has_face`` is False).
    Frames where the face is not found hold the last box.
    """

    def __init__(self, cfg: TrackerConfig | None = None,
                 detector: FaceDetector | None = None) -> None:
        self.cfg = cfg or TrackerConfig()
        self.schedule = DetectionSchedule(detector, track_every=self.cfg.track_every,
                                          search_every=self.cfg.search_every)
        self.follower = CropFollower(self.cfg)
        self.face: FaceBox | None = None
        self._recent: list[FaceBox] = []

    @property
    def has_face(self) -> bool:
        return self.face is not None

    def _smoothed(self, found: FaceBox) -> FaceBox:
        """Running median of the recent detections (position over 3, size over 7); a jump
        (cut, another person) restarts it."""
        recent = self._recent
        cfg = self.cfg
        if recent and is_cut(unclamped_crop(recent[-1], cfg), unclamped_crop(found, cfg), cfg):
            recent.clear()
        recent.append(found)
        del recent[:-self.cfg.size_median // 2]
        cx = float(np.median([f.cx for f in recent[-3:]]))
        cy = float(np.median([f.cy for f in recent[-3:]]))
        size = float(np.median([f.size for f in recent]))
        return FaceBox(cx - size / 2, cy - size / 2, size, size, found.score)

    def update(self, frame_rgb: np.ndarray) -> CropBox:
        """Crop box (source pixels) for this frame: (H, W, 3) uint8 RGB, any size."""
        check_frame(frame_rgb)
        h, w = frame_rgb.shape[:2]
        found = self.schedule.observe(frame_rgb)
        if found is not None:
            self.face = self._smoothed(found)
        target = target_crop(self.face, w, h, self.cfg) if self.face is not None else None
        box = self.follower.step(target, fresh=found is not None)
        return clamp_box(box, w, h) if box is not None else centre_box(w, h)


def check_frame(frame: np.ndarray) -> None:
    """InputError unless ``frame`` is an (H, W, 3) uint8 image of a sane size."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        got = getattr(frame, "shape", type(frame).__name__)
        raise InputError(f"frame must be an (H, W, 3) RGB array, not {got}")
    if frame.dtype != np.uint8:
        raise InputError(f"frame must be uint8, not {frame.dtype}")
    if min(frame.shape[:2]) < 1 or max(frame.shape[:2]) > MAX_FRAME_SIDE:
        raise InputError(f"frame size {frame.shape[1]}x{frame.shape[0]} is out of bounds")


def crop_to_canvas(frame: np.ndarray, box: CropBox, size: int = CANVAS_SIZE) -> np.ndarray:
    """Cut ``box`` out of ``frame`` (edge-replicating outside it) and resize to size x size.

    Memory stays bounded for any box: one far outside the image or far larger than it is
    sampled on a ``size`` x ``size`` grid of (edge-clamped) source pixels instead.
    """
    check_frame(frame)
    if not all(math.isfinite(v) for v in (box.cx, box.cy, box.side)):
        raise InputError(f"crop box is not finite: {box}")
    h, w = frame.shape[:2]
    side = max(1, int(round(box.side)))
    x0, y0 = int(round(box.cx - side / 2)), int(round(box.cy - side / 2))
    x1, y1 = x0 + side, y0 + side
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 <= cx0 or cy1 <= cy0 or side > 2 * max(w, h):
        n = min(side, size)
        rows = np.clip(np.round(np.linspace(y0, y1 - 1, n)).astype(np.int64), 0, h - 1)
        cols = np.clip(np.round(np.linspace(x0, x1 - 1, n)).astype(np.int64), 0, w - 1)
        patch = frame[rows[:, None], cols[None, :]]
        side = n
    else:
        patch = frame[cy0:cy1, cx0:cx1]
        pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
        if any(pads):
            patch = cv2.copyMakeBorder(patch, *pads, borderType=cv2.BORDER_REPLICATE)
    if side == size:
        return np.ascontiguousarray(patch, dtype=np.uint8)
    if side >= 2 * size:  # integer-factor area averaging first: OpenCV's fast path
        k = side // size
        keep = (side // k) * k
        o = (side - keep) // 2  # (k - 1 px at most, split between the edges)
        patch = cv2.resize(np.ascontiguousarray(patch[o:o + keep, o:o + keep]),
                           (keep // k, keep // k), interpolation=cv2.INTER_AREA)
        side = keep // k
        if side == size:
            return np.ascontiguousarray(patch, dtype=np.uint8)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    out = cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interp)
    return np.ascontiguousarray(out, dtype=np.uint8)
