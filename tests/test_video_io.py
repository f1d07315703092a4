"""codec/sender/video_io.py: decoding by presentation time, audio, bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codec.errors import InputError
from codec.sender.video_io import (
    iter_video_frames,
    probe_video,
    read_audio,
    scaled_size,
)
from tests._media import clip_path, ramp_frame, write_video

NTSC = Fraction(30000, 1001)


@pytest.fixture(scope="module")
def ntsc_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 29.97 fps, 96x64, with a 440 Hz tone starting at 0.5 s."""
    t = np.arange(2 * 48000) / 48000
    tone = np.where(t >= 0.5, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    path = tmp_path_factory.mktemp("vio") / "ntsc.mp4"
    return write_video(path, lambda k: ramp_frame(96, 64, k), 60, NTSC, audio=tone)


def test_probe(ntsc_video: Path) -> None:
    info = probe_video(ntsc_video)
    assert (info.width, info.height) == (96, 64)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert info.has_audio


def test_frames_carry_presentation_times(ntsc_video: Path) -> None:
    frames = list(iter_video_frames(ntsc_video))
    assert len(frames) == 60
    times = np.array([f.time_s for f in frames])
    assert np.allclose(times, np.arange(60) * 1001 / 30000, atol=1e-3)
    f = frames[7]
    assert f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8
    assert f.image.flags["C_CONTIGUOUS"]
    assert f.source_size == (96, 64)
    # The frame content is frame 7's (the blue channel encodes the index).
    assert abs(float(f.image[..., 2].mean()) - 49) < 4


def test_start_and_duration_window(ntsc_video: Path) -> None:
    frames = list(iter_video_frames(ntsc_video, start_s=1.0, max_seconds=0.5))
    times = [f.time_s for f in frames]
    assert times[0] >= 1.0 - 1e-6 and times[-1] < 1.5
    assert len(frames) == 15


def test_scaling_inside_the_decoder(ntsc_video: Path) -> None:
    f = next(iter_video_frames(ntsc_video, max_side=48))
    assert f.image.shape == (32, 48, 3)
    assert f.source_size == (96, 64)
    assert scaled_size(3840, 2160, 960) == (960, 540)
    assert scaled_size(200, 100, 960) == (200, 100)


def test_read_audio_16k_mono_aligned(ntsc_video: Path) -> None:
    pcm = read_audio(ntsc_video)
    assert pcm is not None and pcm.dtype == np.float32 and pcm.ndim == 1
    assert abs(len(pcm) / 16000 - 2.0) < 0.05
    env = np.abs(pcm)
    onset = int(np.argmax(env > 0.1)) / 16000
    assert abs(onset - 0.5) < 0.03  # tone starts at 0.5 s on the video clock
    part = read_audio(ntsc_video, start_s=0.25, max_seconds=1.0)
    assert part is not None and len(part) == 16000
    onset = int(np.argmax(np.abs(part) > 0.1)) / 16000
    assert abs(onset - 0.25) < 0.03


def test_no_audio_track(tmp_path: Path) -> None:
    silent = write_video(tmp_path / "mute.mp4", lambda k: ramp_frame(64, 64, k), 5, Fraction(25))
    assert read_audio(silent) is None
    real = clip_path(lambda r: r["has_audio"] == "no")
    if real is not None:
        assert read_audio(real) is None


def test_4k_frame_is_scaled_before_it_becomes_an_array(tmp_path: Path) -> None:
    big = write_video(tmp_path / "uhd.mp4", lambda k: ramp_frame(3840, 2160, k), 2, Fraction(25))
    frames = list(iter_video_frames(big, max_side=960))
    assert [f.image.shape for f in frames] == [(540, 960, 3)] * 2
    assert frames[0].source_size == (3840, 2160)


def test_missing_and_non_media_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(iter_video_frames(tmp_path / "nope.mp4"))
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    with pytest.raises(InputError):
        list(iter_video_frames(text))
    with pytest.raises(InputError):
        probe_video(text)
    with pytest.raises(InputError):
        read_audio(text)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError):
        list(iter_video_frames(empty))


def test_audio_only_file_is_not_a_video(tmp_path: Path) -> None:
    import av

    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=16000)
        s.layout = "mono"
        for i in range(10):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                            layout="mono")
            af.sample_rate, af.pts = 16000, i * 1024
            for p in s.encode(af):
                out.mux(p)
    with pytest.raises(InputError, match="no video stream"):
        list(iter_video_frames(path))


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.7, 0.97])
def test_truncated_mp4(ntsc_video: Path, tmp_path: Path, keep: float) -> None:
    data = ntsc_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    try:
        frames = list(iter_video_frames(cut))
    except InputError as e:
        assert "\n" not in str(e)
    else:  # a readable prefix is kept, never more than the file holds
        assert 0 < len(frames) <= 60


@pytest.mark.parametrize("seed,start", [(1, 0.25), (2, 0.0), (3, 0.6)])
def test_corrupted_payload_does_not_crash(ntsc_video: Path, tmp_path: Path, seed: int,
                                          start: float) -> None:
    data = bytearray(ntsc_video.read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.integers(int(len(data) * start), len(data), 400):
        data[i] = int(rng.integers(0, 256))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    try:
        frames = list(iter_video_frames(bad))
        assert all(f.image.flags["C_CONTIGUOUS"] for f in frames)
    except InputError:
        pass
    try:
        read_audio(bad)
    except InputError:
        pass


def test_real_portrait_clip_decodes_upright() -> None:
    path = clip_path(lambda r: r["width"] == "1080" and r["height"] == "1920")
    if path is None:
        pytest.skip("shared data not found")
    f = next(iter_video_frames(path, max_side=480))
    assert f.image.shape == (480, 270, 3)
    assert f.source_size == (1080, 1920)


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_display_rotation_is_applied(tmp_path: Path, degrees: int) -> None:
    coded = np.zeros((64, 96, 3), np.uint8)
    coded[:16, :16] = 255  # a white block in the coded top-left corner
    path = write_video(tmp_path / "rot.mp4", lambda k: coded, 3, Fraction(25),
                       display_rotation=degrees)
    f = next(iter_video_frames(path))
    upright = np.rot90(coded, degrees // 90)  # counter-clockwise, as the matrix says
    assert f.image.shape == upright.shape and f.image.flags["C_CONTIGUOUS"]
    assert f.source_size == (upright.shape[1], upright.shape[0])
    assert np.abs(f.image.astype(int) - upright).mean() < 8
    small = next(iter_video_frames(path, max_side=48))
    assert small.image.shape[:2] == tuple(s // 2 for s in upright.shape[:2])


def test_seeking_start_gives_the_same_frames_and_audio(tmp_path: Path) -> None:
    t = np.arange(4 * 48000) / 48000
    chirp = (0.4 * np.sin(2 * np.pi * (200 + 100 * t) * t)).astype(np.float32)
    path = write_video(tmp_path / "gop.mp4", lambda k: ramp_frame(96, 64, k), 100, Fraction(25),
                       audio=chirp, gop=10)
    every = list(iter_video_frames(path))
    window = list(iter_video_frames(path, start_s=2.3, max_seconds=0.8))  # seeks
    assert [f.time_s for f in window] == pytest.approx([f.time_s for f in every[58:78]])
    assert all(np.array_equal(a.image, b.image) for a, b in zip(window, every[58:78]))
    whole = read_audio(path)
    part = read_audio(path, start_s=2.3, max_seconds=0.8)
    assert whole is not None and part is not None and len(part) == int(0.8 * 16000)
    diff = np.abs(part - whole[int(2.3 * 16000):int(3.1 * 16000)])
    assert diff[64:].max() < 1e-4  # the same samples on the same clock
    assert diff[:64].max() < 0.05  # but for the resampler's start-up


def test_oversized_video_is_refused(ntsc_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import codec.sender.video_io as video_io

    monkeypatch.setattr(video_io, "MAX_SOURCE_SIDE", 80)  # the 96x64 file is "too large"
    with pytest.raises(InputError, match="limit"):
        list(iter_video_frames(ntsc_video))
    with pytest.raises(InputError, match="limit"):
        probe_video(ntsc_video)
