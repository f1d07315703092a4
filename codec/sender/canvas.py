"""Any video file -> the sender's 256x256, 25 fps face canvas and its 16 kHz speech.

The canvas clock: canvas frame k is shown at ``start_s + k / 25`` seconds after the first
video frame, and shows the source frame whose presentation time is nearest (so 10, 24,
29.97, 30 and 60 fps inputs all map onto the same grid by their timestamps, never by frame
counts). Audio sample 0 is at the time of canvas frame 0.

Files are read in two streaming passes, so memory does not grow with the clip length:
1. decode small frames, detect the face on the canvas grid (``DetectionSchedule``), and plan
   the whole clip's crop track offline (``plan_crop_track``: hysteresis, outlier
   rejection, zero-phase smoothing);
2. decode again at the resolution the crops need and cut each canvas frame out.

A video with no face raises :class:`NoFaceError`, unless ``on_no_face="center"``, which
uses the largest centred square for every frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from codec import AUDIO_RATE, CANVAS_FPS, CANVAS_SIZE
from codec.errors import InputError, NoFaceError
from codec.sender.crop_plan import plan_crop_track
from codec.sender.face_detector import DetectionSchedule, FaceBox
from codec.sender.face_tracker import CropBox, TrackerConfig, crop_to_canvas
from codec.sender.video_io import VideoFrame, iter_video_frames, read_audio, scaled_size
from codec.types import FaceClip

NoFacePolicy = Literal["error", "center"]

DETECT_SIDE = 960  # longest side of the frames the detection pass decodes
CROP_OVERSAMPLE = 1.5  # decode so the smallest crop still has >= 1.5 x 256 source pixels
MIN_PRESCALE = 0.6  # shrink whole frames in the decoder only when that halves them or so
# load_face_clip holds every canvas frame (196 KiB each): 5 minutes are 1.5 GB. Longer
# material goes through iter_face_canvas (streaming) or a max_seconds window.
MAX_IN_MEMORY_SECONDS = 300.0


@dataclass
class CanvasFrame:
    """One canvas frame, its time on the canvas clock and the crop it came from."""

    image: np.ndarray  # (256, 256, 3) uint8
    timestamp_ms: int
    box: tuple[float, float, float]  # (x0, y0, side) in source pixels


@dataclass
class CropPlan:
    """The crop of every canvas frame, in source pixels, and what the search found."""

    boxes: np.ndarray  # (T, 3) float64: cx, cy, side
    source_size: tuple[int, int]
    has_face: bool
    n_looked: int


def resample_to_grid(frames: Iterable[VideoFrame], fps: float = CANVAS_FPS, start_s: float = 0.0,
                     max_seconds: float | None = None) -> Iterator[VideoFrame]:
    """For every grid time ``start_s + k / fps`` inside the video, the nearest source frame.

    The video ends one source frame interval after its last frame's presentation time, or
    at ``start_s + max_seconds``. Yields the source frame objects (repeated or skipped as
    the rates require).
    """
    limit = None if max_seconds is None else int(np.ceil(max_seconds * fps - 1e-6))
    k = 0
    prev: VideoFrame | None = None
    dt = 1.0 / fps
    for cur in frames:
        if prev is not None:
            dt = max(1e-3, cur.time_s - prev.time_s)
            mid = (prev.time_s + cur.time_s) / 2
            while start_s + k / fps < mid - 1e-9 and (limit is None or k < limit):
                yield prev
                k += 1
        prev = cur
    if prev is not None:
        end = prev.time_s + dt
        while start_s + k / fps < end - 1e-6 and (limit is None or k < limit):
            yield prev
            k += 1


def plan_crops(path: str | os.PathLike[str], *, start_s: float = 0.0,
               max_seconds: float | None = None, cfg: TrackerConfig | None = None) -> CropPlan:
    """Pass 1: detect on the canvas grid and plan the crop track of the whole clip."""
    cfg = cfg or TrackerConfig()
    schedule = DetectionSchedule(track_every=cfg.track_every, search_every=cfg.search_every)
    faces: list[FaceBox | None] = []
    src_size = (0, 0)
    n_looked = 0
    frames = iter_video_frames(path, max_side=DETECT_SIDE, start_s=start_s,
                               max_seconds=max_seconds, fast_scaling=True)
    for vf in resample_to_grid(frames, start_s=start_s, max_seconds=max_seconds):
        if not faces:
            src_size = vf.source_size  # boxes are in the first frame's pixels
        face = schedule.look(vf.image) if schedule.tick() else None
        n_looked += int(schedule.looked)
        faces.append(face.scaled(src_size[0] / vf.size[0]) if face is not None else None)
    w, h = src_size
    boxes = plan_crop_track(faces, w, h, cfg)
    if boxes is None:
        side = float(min(w, h))
        boxes = np.tile([w / 2, h / 2, side], (len(faces), 1))
        return CropPlan(boxes, src_size, False, n_looked)
    return CropPlan(boxes, src_size, True, n_looked)


def iter_face_canvas(
    path: str | os.PathLike[str],
    *,
    max_seconds: float | None = None,
    start_s: float = 0.0,
    on_no_face: NoFacePolicy = "error",
    size: int = CANVAS_SIZE,
    cfg: TrackerConfig | None = None,
) -> Iterator[CanvasFrame]:
    """Stream the canvas frames of a video file (two decoding passes, bounded memory)."""
    plan = _checked_plan(path, start_s=start_s, max_seconds=max_seconds, on_no_face=on_no_face,
                         cfg=cfg)
    yield from _cut_canvas(path, plan, start_s=start_s, max_seconds=max_seconds, size=size)


def _checked_plan(path: str | os.PathLike[str], *, start_s: float, max_seconds: float | None,
                  on_no_face: NoFacePolicy, cfg: TrackerConfig | None) -> CropPlan:
    if on_no_face not in ("error", "center"):
        raise ValueError(f"on_no_face must be 'error' or 'center', not {on_no_face!r}")
    if start_s < 0 or (max_seconds is not None and max_seconds <= 0):
        raise ValueError("start_s must be >= 0 and max_seconds > 0")
    plan = plan_crops(path, start_s=start_s, max_seconds=max_seconds, cfg=cfg)
    if not plan.has_face and on_no_face == "error":
        secs = len(plan.boxes) / CANVAS_FPS
        raise NoFaceError(f"{Path(path).name}: no face found in {secs:.1f} s of video "
                          f"({plan.n_looked} frames searched)")
    return plan


def _cut_canvas(path: str | os.PathLike[str], plan: CropPlan, *, start_s: float,
                max_seconds: float | None, size: int) -> Iterator[CanvasFrame]:
    """Pass 2: decode at the resolution the crops need and cut every canvas frame."""
    w, h = plan.source_size
    min_side = float(plan.boxes[:, 2].min()) if len(plan.boxes) else float(min(w, h))
    need = min(1.0, CROP_OVERSAMPLE * size / max(min_side, 1.0))
    if need > MIN_PRESCALE:  # a mild rescale of the whole frame costs more than it saves
        need = 1.0
    work_w, work_h = scaled_size(w, h, int(np.ceil(max(w, h) * need)))
    s = work_w / w
    frames = iter_video_frames(path, max_side=max(work_w, work_h), start_s=start_s,
                               max_seconds=max_seconds)
    for k, vf in enumerate(resample_to_grid(frames, start_s=start_s, max_seconds=max_seconds)):
        if k >= len(plan.boxes):
            break
        cx, cy, side = plan.boxes[k]
        box = CropBox(cx, cy, side)
        img = vf.image
        if vf.size[0] != work_w:  # decoder gave another size (mid-stream change)
            box = box.scaled(img.shape[1] / w)
        else:
            box = box.scaled(s)
        yield CanvasFrame(crop_to_canvas(img, box, size), int(round(k * 1000 / CANVAS_FPS)),
                          (cx - side / 2, cy - side / 2, side))


def load_face_clip(
    path: str | os.PathLike[str],
    *,
    max_seconds: float | None = None,
    start_s: float = 0.0,
    on_no_face: NoFacePolicy = "error",
    cfg: TrackerConfig | None = None,
) -> FaceClip:
    """The whole canvas clip in memory: frames (T, 256, 256, 3) uint8 at 25 fps, the 16 kHz
    mono speech aligned to frame 0 (None when the file has no audio track) and the boxes."""
    bounded = max_seconds is not None and max_seconds <= MAX_IN_MEMORY_SECONDS
    window = max_seconds if bounded else MAX_IN_MEMORY_SECONDS + 1.0  # one second to notice
    plan = _checked_plan(path, start_s=start_s, max_seconds=window, on_no_face=on_no_face,
                         cfg=cfg)
    if len(plan.boxes) > int(round(MAX_IN_MEMORY_SECONDS * CANVAS_FPS)):
        raise InputError(f"{Path(path).name}: longer than {MAX_IN_MEMORY_SECONDS:.0f} s; "
                         "pass max_seconds or stream it with iter_face_canvas")
    frames = np.empty((len(plan.boxes), CANVAS_SIZE, CANVAS_SIZE, 3), np.uint8)
    boxes = np.empty((len(plan.boxes), 3), np.float64)
    n = 0
    for cf in _cut_canvas(path, plan, start_s=start_s, max_seconds=window, size=CANVAS_SIZE):
        frames[n] = cf.image
        boxes[n] = cf.box
        n += 1
    if n == 0:
        raise InputError(f"{Path(path).name}: no video frames in the requested range")
    frames, boxes = frames[:n], boxes[:n]  # a second pass that ends early (damaged file)
    audio = read_audio(path, start_s=start_s, max_seconds=max_seconds)
    if audio is not None:
        audio = audio[: int(round(n * AUDIO_RATE / CANVAS_FPS))]
    return FaceClip(frames=frames, fps=float(CANVAS_FPS), audio=audio, sample_rate=AUDIO_RATE,
                    boxes=boxes, source=str(path))
