"""codec/sender/canvas.py: any video -> 256x256 25 fps face canvas + aligned 16 kHz audio."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.errors import InputError, NoFaceError
from codec.sender.canvas import iter_face_canvas, load_face_clip, resample_to_grid
from codec.sender.crop_plan import canvas_jitter
from codec.sender.face_detector import FaceDetector
from codec.sender.video_io import VideoFrame
from tests._media import clip_path, first_frame, noise_frame, ramp_frame, write_video


def real(name_part: str) -> Path:
    path = clip_path(lambda r: name_part in r["file"])
    if path is None:
        pytest.skip("shared data not found")
    return path


@lru_cache(maxsize=1)
def face_image() -> np.ndarray:
    """A real 256x256 head (first frame of a 512x512 talking-head clip, val split)."""
    img = first_frame(real("MimicTalk__data__raw__examples__May_5s"))
    return cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)


def scene(w: int, h: int, x: int, y: int, with_face: bool = True, k: int = 0) -> np.ndarray:
    img = ramp_frame(w, h, 0)
    if with_face:
        f = face_image()
        img[y:y + f.shape[0], x:x + f.shape[1]] = f
    return img


# ---- the 25 fps grid --------------------------------------------------------------------

@pytest.mark.parametrize("fps", [10.0, 24.0, 30000 / 1001, 30.0, 50.0, 60.0])
def test_grid_takes_the_nearest_frame_by_timestamp(fps: float) -> None:
    n = int(round(4 * fps))
    frames = [VideoFrame(np.zeros((2, 2, 3), np.uint8), i / fps, (2, 2)) for i in range(n)]
    picked = np.array([f.time_s for f in resample_to_grid(frames)])
    # The video lasts until its last frame's time + one frame interval: ~4 s -> ~100 frames.
    expected = int(np.ceil(n / fps * 25 - 1e-6))
    assert len(picked) == expected and abs(expected - 100) <= 1
    grid = np.arange(expected) / 25
    src = np.arange(n) / fps
    nearest = src[np.abs(src[None, :] - grid[:, None]).argmin(axis=1)]
    assert np.allclose(picked, nearest)
    inside = grid <= src[-1]
    assert np.max(np.abs(picked - grid)[inside]) <= 0.5 / fps + 1e-9
    assert np.max(np.abs(picked - grid)) < 1 / fps  # the last frame is held to the end


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.001, 0.2), min_size=1, max_size=200))
def test_grid_any_timing(gaps: list[float]) -> None:
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    frames = [VideoFrame(np.zeros((2, 2, 3), np.uint8), float(t), (2, 2)) for t in times]
    picked = np.array([f.time_s for f in resample_to_grid(frames)])
    end = times[-1] + (gaps[-1] if len(times) > 1 else 1 / 25)
    assert len(picked) == int(np.ceil((end - 1e-6) * 25))
    grid = np.arange(len(picked)) / 25
    inside = grid <= times[-1]
    nearest = times[np.abs(times[None, :] - grid[inside][:, None]).argmin(axis=1)]
    assert np.allclose(np.abs(picked[inside] - grid[inside]), np.abs(nearest - grid[inside]))
    assert np.all(np.diff(picked) >= 0)


def test_grid_stops_at_max_seconds() -> None:
    frames = [VideoFrame(np.zeros((2, 2, 3), np.uint8), i / 29.97, (2, 2)) for i in range(60)]
    assert sum(1 for _ in resample_to_grid(frames, max_seconds=2.0)) == 50
    assert sum(1 for _ in resample_to_grid(frames)) == 51  # 60 frames last 2.002 s


def test_grid_uses_timestamps_not_counts() -> None:
    # Variable frame rate: a burst at 60 fps then 10 fps; counting frames would drift.
    times = list(np.arange(0, 1, 1 / 60)) + list(1 + np.arange(0, 2, 1 / 10))
    frames = [VideoFrame(np.zeros((2, 2, 3), np.uint8), float(t), (2, 2)) for t in times]
    picked = np.array([f.time_s for f in resample_to_grid(frames)])
    assert len(picked) == 75  # ends at 2.9 s + 0.1 s
    err = np.abs(picked - np.arange(75) / 25)
    assert err[:25].max() <= 1 / 120 + 1e-9  # the 60 fps part
    assert err[25:73].max() <= 0.05 + 1e-9  # the 10 fps part


# ---- real clips -------------------------------------------------------------------------

def test_real_clip_shapes_and_audio_alignment() -> None:
    path = real("MimicTalk__data__raw__examples__May_5s")
    clip = load_face_clip(path, max_seconds=4)
    assert clip.frames.shape == (100, 256, 256, 3) and clip.frames.dtype == np.uint8
    assert clip.frames.flags["C_CONTIGUOUS"]
    assert clip.fps == 25.0 and clip.sample_rate == 16000
    assert clip.audio is not None and clip.audio.dtype == np.float32
    assert len(clip.audio) == 100 * 640  # the same 4 s as the frames
    assert clip.boxes is not None and clip.boxes.shape == (100, 3)
    assert list(clip.timestamps_ms()[:3]) == [0, 40, 80]
    later = load_face_clip(path, start_s=2.0, max_seconds=1.0)
    assert later.n_frames == 25
    assert np.array_equal(later.frames[0], clip.frames[50])  # same crop plan, same frame
    assert later.audio is not None
    # same samples (a one-sample shift would differ by ~0.1), up to the resampler start-up
    assert np.abs(later.audio[:8000] - clip.audio[32000:40000]).max() < 0.01


def test_streaming_matches_whole_clip() -> None:
    path = real("MimicTalk__data__raw__examples__May_5s")
    frames = list(iter_face_canvas(path, max_seconds=1))
    assert [f.timestamp_ms for f in frames] == [40 * k for k in range(25)]
    clip = load_face_clip(path, max_seconds=1)
    assert all(np.array_equal(a.image, b) for a, b in zip(frames, clip.frames))


@pytest.mark.parametrize("name", ["video-retalking__examples__face__1.mp4",
                                  "icpr2020dfdc__notebook__samples__lynaeydofd"])
def test_crop_does_not_jitter_on_real_talking_clips(name: str) -> None:
    clip = load_face_clip(real(name), max_seconds=6)
    assert clip.boxes is not None
    assert clip.boxes[:, 2].min() < 0.95 * min(first_frame(real(name)).shape[:2])  # a real crop
    jitter = canvas_jitter(clip.boxes)
    assert jitter < 0.5, f"crop centre moves {jitter:.2f} canvas px per frame"
    det = FaceDetector()
    for img in clip.frames[::50]:
        faces = det.search(img)
        assert faces, "the face left the canvas"
        assert abs(faces[0].cx - 128) < 40 and 60 < faces[0].cy < 150


def test_portrait_1080x1920_clip() -> None:
    path = clip_path(lambda r: (r["width"], r["height"]) == ("1080", "1920"))
    if path is None:
        pytest.skip("shared data not found")
    clip = load_face_clip(path, max_seconds=2)
    assert clip.frames.shape == (50, 256, 256, 3)
    assert clip.boxes is not None and np.all(clip.boxes[:, 2] <= 1080)
    faces = FaceDetector().search(clip.frames[25])
    assert faces and abs(faces[0].cx - 128) < 40


def test_clip_without_audio_track_and_10_fps_source() -> None:
    path = clip_path(lambda r: r["has_audio"] == "no" and r["fps"] == "10")
    if path is None:
        pytest.skip("shared data not found")
    clip = load_face_clip(path, max_seconds=3)
    assert clip.audio is None
    assert clip.n_frames == 75  # 30 source frames -> 75 canvas frames


# ---- synthetic: no face, held boxes, 4K, broken files, A/V sync -------------------------

def test_no_face_raises_or_centres(tmp_path: Path) -> None:
    noise = write_video(tmp_path / "noise.mp4", lambda k: noise_frame(320, 240, k), 20,
                        Fraction(25))
    with pytest.raises(NoFaceError, match="no face"):
        load_face_clip(noise)
    ramp = write_video(tmp_path / "ramp.mp4", lambda k: ramp_frame(320, 240, k), 20, Fraction(25))
    with pytest.raises(NoFaceError):
        load_face_clip(ramp)
    clip = load_face_clip(ramp, on_no_face="center")
    assert clip.n_frames == 20
    assert clip.boxes is not None and np.allclose(clip.boxes, [40, 0, 240])
    with pytest.raises(ValueError):
        load_face_clip(ramp, on_no_face="guess")  # type: ignore[arg-type]


def test_frames_without_face_hold_the_last_box(tmp_path: Path) -> None:
    path = write_video(tmp_path / "leaves.mp4",
                       lambda k: scene(640, 480, 300, 150, with_face=k < 30), 60, Fraction(25))
    clip = load_face_clip(path)
    assert clip.boxes is not None
    assert np.allclose(clip.boxes[30:], clip.boxes[29])
    cx = clip.boxes[29, 0] + clip.boxes[29, 2] / 2
    assert abs(cx - 428) < 30  # centred on the face (pasted at x 300..556)


def test_4k_input_is_handled_with_bounded_memory(tmp_path: Path) -> None:
    big_face = cv2.resize(face_image(), (768, 768))

    def frame(k: int) -> np.ndarray:
        img = ramp_frame(3840, 2160, k)
        img[600:1368, 2000:2768] = big_face
        return img

    path = write_video(tmp_path / "uhd.mp4", frame, 3, Fraction(25))
    tracemalloc.start()
    clip = load_face_clip(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert clip.frames.shape == (3, 256, 256, 3)
    assert clip.boxes is not None
    cx = clip.boxes[0, 0] + clip.boxes[0, 2] / 2
    assert abs(cx - 2384) < 80  # source (4K) pixel coordinates
    assert peak < 120 * 2**20, f"{peak / 2**20:.0f} MiB of arrays for a 3-frame 4K clip"


def test_truncated_and_non_video_inputs(tmp_path: Path) -> None:
    path = write_video(tmp_path / "ok.mp4", lambda k: scene(320, 288, 40, 0), 10, Fraction(25))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(InputError):
        load_face_clip(cut)
    junk = tmp_path / "junk.mov"
    junk.write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(InputError):
        load_face_clip(junk)


def test_audio_and_video_stay_in_sync_over_60_s(tmp_path: Path) -> None:
    """Flashes and beeps at the same instants in a 29.97 fps file: they must still coincide
    on the canvas clock after 60 s (drift or count-based resampling would show)."""
    fps = Fraction(30000, 1001)
    n = int(60 * fps)
    flash_frames = [int(round((1.3 + 4.1 * i) * float(fps))) for i in range(14)]
    lit = set()
    for f0 in flash_frames:
        lit.update(range(f0, f0 + 4))
    dark, bright = ramp_frame(96, 96) // 4, np.full((96, 96, 3), 250, np.uint8)
    rate = 48000
    t = np.arange(int(60.2 * rate)) / rate
    audio = np.zeros_like(t, dtype=np.float32)
    for f0 in flash_frames:
        t0 = f0 / float(fps)
        on = (t >= t0) & (t < t0 + 0.08)
        audio[on] = 0.5 * np.sin(2 * np.pi * 1000 * (t[on] - t0))
    path = write_video(tmp_path / "sync.mp4", lambda k: bright if k in lit else dark, n, fps,
                       audio=audio, audio_rate=rate)
    clip = load_face_clip(path, on_no_face="center")
    assert clip.audio is not None
    assert abs(clip.n_frames - 60 * 25) <= 1
    assert abs(len(clip.audio) / 16000 - clip.duration_s) < 0.04
    luma = clip.frames.mean(axis=(1, 2, 3))
    v_on = np.flatnonzero((luma[1:] > 128) & (luma[:-1] <= 128)) + 1
    env = np.convolve(np.abs(clip.audio), np.ones(32) / 32, "same")
    a_on = np.flatnonzero((env[1:] > 0.1) & (env[:-1] <= 0.1)) + 1
    assert len(v_on) == len(flash_frames) == len(a_on)
    offsets = v_on / 25 - a_on / 16000
    assert np.max(np.abs(offsets)) < 0.04, f"A/V offsets (s): {np.round(offsets, 3)}"


def test_in_memory_clip_length_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import codec.sender.canvas as canvas

    path = write_video(tmp_path / "long.mp4", lambda k: scene(320, 288, 40, 0), 75, Fraction(25))
    monkeypatch.setattr(canvas, "MAX_IN_MEMORY_SECONDS", 2.0)
    with pytest.raises(InputError, match="longer than 2 s"):
        load_face_clip(path)
    assert load_face_clip(path, max_seconds=1.5).n_frames == 38
    assert sum(1 for _ in iter_face_canvas(path)) == 75  # streaming has no such limit


def test_phone_portrait_with_display_rotation(tmp_path: Path) -> None:
    upright = scene(288, 512, 16, 120)
    coded = np.ascontiguousarray(np.rot90(upright, 1))  # stored sideways, as phones do
    path = write_video(tmp_path / "phone.mp4", lambda k: coded, 10, Fraction(30),
                       display_rotation=-90)
    clip = load_face_clip(path)
    assert clip.boxes is not None
    assert np.all(clip.boxes[:, 2] <= 288)  # portrait: the crop fits the 288 px width
    faces = FaceDetector().search(clip.frames[0])
    assert faces, "canvas is not upright"
