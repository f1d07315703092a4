"""The ``voice`` receiver (issue 14): gender annotation, model, receiver, mixing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from codec.data import data_dir

ROOT = Path(__file__).resolve().parents[1]


def _annotations() -> list[dict[str, str]]:
    lines = (ln for ln in open(ROOT / "training" / "perceived_gender.csv") if not ln.startswith("#"))
    return list(csv.DictReader(lines))


def test_perceived_gender_covers_every_identity() -> None:
    rows = _annotations()
    ids = [r["identity"] for r in rows]
    assert len(ids) == len(set(ids))
    assert {r["perceived_gender"] for r in rows} <= {"male", "female"}
    assert {r["unsure"] for r in rows} <= {"yes", "no"}
    manifest = data_dir() / "manifest.csv"
    if not manifest.exists():
        pytest.skip("the data set is not here")
    want = {(r["identity"], r["split"]) for r in csv.DictReader(open(manifest))}
    assert {(r["identity"], r["split"]) for r in rows} == want


def _voice_or_skip() -> None:
    from codec.receiver.voice import weights_problem

    problem = weights_problem()
    if problem:
        pytest.skip(problem)


def test_voice_receiver_renders_without_identity_and_keeps_the_8x8() -> None:
    from codec.receiver.registry import get_receiver
    from codec.receiver.upsample import area_downsample
    from codec.types import AudioChunk
    from tests._canvas_clip import clip_audio, stream

    _voice_or_skip()
    _, lowres = stream(40)
    rx = get_receiver("voice")
    rx.push_audio(AudioChunk(np.array(clip_audio(1.6)), 0))
    frames = []
    for f in lowres:
        rx.push_lowres(f)
        frames += rx.pull()
    frames += rx.flush(1600)
    assert len(frames) == 40
    assert all(f.image.shape == (256, 256, 3) and f.image.dtype == np.uint8 for f in frames)
    # back-projected: the output's box means are the received 8x8 frame (up to rounding)
    err = np.abs(area_downsample(frames[0].image.astype(np.float32), 8) - lowres[0].pixels)
    assert err.mean() < 0.5 and err.max() < 8.0  # clipping to 0..255 moves a few
    code, p_male = rx.voice_code()  # type: ignore[attr-defined]
    assert code.shape == (16,) and 0.0 <= p_male <= 1.0


def test_silence_and_hostile_audio_still_give_a_face() -> None:
    from codec.receiver.voice import VoiceReceiver, voiced_stats
    from codec.types import AudioChunk, LowResFrame

    _voice_or_skip()
    assert voiced_stats(np.zeros((10, 40), np.float32)) is None
    rx = VoiceReceiver()
    rx.push_audio(AudioChunk(np.full(8000, np.nan, np.float32), 0))
    rx.push_audio(AudioChunk(np.zeros(3), 500))
    rx.push_lowres(LowResFrame(np.full((8, 8, 3), 300.0), 0))
    rx.push_lowres(LowResFrame(np.zeros((8, 8, 3)), 200))
    out = rx.flush(400)
    assert len(out) == 10 and all(np.isfinite(f.image).all() for f in out)


def _clip_file(tmp_path: Path, *, identity: bool) -> Path:
    from codec.bitstream.container import write_container
    from codec.bitstream.packet import StreamKind
    from codec.sender.sender import Sender
    from codec.types import FaceClip
    from tests._canvas_clip import canvas_frames, clip_audio

    clip = FaceClip(frames=np.array(canvas_frames(40)), audio=np.array(clip_audio(1.6)))
    packets = [p for p in Sender().encode_clip(clip)
               if identity or p.kind is not StreamKind.IDENTITY]
    path = tmp_path / ("with.tc" if identity else "no_identity.tc")
    write_container(path, packets, {})
    return path


def test_file_without_identity_frame_decodes_to_a_face(tmp_path: Path) -> None:
    import av

    from codec.file_codec import decode_file
    from codec.receiver.registry import get_receiver

    _voice_or_skip()
    src = _clip_file(tmp_path, identity=False)
    summary = decode_file(src, tmp_path / "out.mp4", get_receiver("voice"))
    assert summary["frames"] == 40
    with av.open(str(tmp_path / "out.mp4")) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert img.shape == (256, 256, 3) and img.std() > 5  # a picture, not a flat placeholder


def test_cli_decode_with_another_voice(tmp_path: Path) -> None:
    import wave

    from codec.cli import main
    from tests._canvas_clip import clip_audio

    _voice_or_skip()
    src = _clip_file(tmp_path, identity=True)
    wav = tmp_path / "b.wav"
    with wave.open(str(wav), "wb") as w:  # 8 kHz 16-bit: the decoder resamples it
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.array(clip_audio(1.6))[::2] * 3000).astype("<i2").tobytes())
    assert main(["decode", str(src), "-o", str(tmp_path / "mix.mp4"), "--receiver", "voice",
                 "--voice", str(wav)]) == 0
    assert (tmp_path / "mix.mp4").stat().st_size > 0
    assert main(["decode", str(src), "-o", str(tmp_path / "x.mp4"), "--voice", str(wav),
                 "--receiver", "bicubic"]) != 0


def test_read_voice_file_takes_a_videos_soundtrack_and_refuses_silent_files(tmp_path: Path) -> None:
    from codec.errors import InputError
    from codec.receiver.voice import read_voice_file
    from tests._canvas_clip import CLIP, DATA, canvas_frames

    canvas_frames(1)  # skips without the data
    audio = read_voice_file(DATA / CLIP, max_seconds=2.0)
    assert audio.dtype == np.float32 and len(audio) == 32000
    assert abs(float(np.abs(audio).max()) - 0.9) < 1e-3  # peak-normalised
    with pytest.raises(InputError):
        read_voice_file(tmp_path / "missing.wav")
    (tmp_path / "junk.mp3").write_bytes(b"not audio")
    with pytest.raises(InputError):
        read_voice_file(tmp_path / "junk.mp3")
