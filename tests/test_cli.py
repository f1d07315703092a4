"""The talkcodec command: encode -> info -> decode on a real val clip, and clean failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from codec.cli import main
from codec.data import data_dir

REPO = Path(__file__).resolve().parents[1]
DATA = data_dir()
VAL_CLIP = DATA / "clips" / "rizkiarm__LipNet__evaluation__samples__GRID__bbaf2n.mpg"
needs_data = pytest.mark.skipif(not VAL_CLIP.exists(), reason="shared data not present")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not VAL_CLIP.exists():
        pytest.skip("shared data not present")
    out = tmp_path_factory.mktemp("cli") / "clip.tc"
    assert main(["encode", str(VAL_CLIP), "-o", str(out), "--max-seconds", "3"]) == 0
    return out


@needs_data
def test_info_breaks_down_the_bits(encoded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["info", str(encoded), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bytes"] == encoded.stat().st_size
    assert abs(info["duration_s"] - 3.0) < 0.05
    assert info["packets"]["lowres"] == 15 and info["packets"]["identity"] == 1
    assert info["packets"]["audio"] >= 49  # 60 ms Opus packets (default audio_frame_ms)
    parts = ["identity", "lowres", "motion", "audio", "overhead"]
    assert sum(info[p]["bits"] for p in parts) == info["total"]["bits"] == 8 * info["bytes"]
    assert info["lowres_with_headers"]["kbit_per_s"] <= 1.5
    assert 4.0 < info["audio"]["kbit_per_s"] < 12.0
    assert info["total"]["bits_per_pixel"] == pytest.approx(
        info["total"]["bits"] / (256 * 256 * 75))
    assert main(["info", str(encoded)]) == 0
    text = capsys.readouterr().out
    assert "identity frame" in text and "total without identity" in text


@needs_data
def test_decode_writes_synced_h264_with_audio(encoded: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    assert main(["decode", str(encoded), "-o", str(out), "--receiver", "bicubic"]) == 0
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        audio = c.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert (video.codec_context.width, video.codec_context.height) == (256, 256)
        assert video.average_rate == 25
        frames = sum(1 for _ in c.decode(video=0))
        assert frames == 75
        v_end = float(video.duration * video.time_base)
        a_end = float(audio.duration * audio.time_base)
        assert abs(v_end - a_end) < 0.1  # audio muxed over the same span


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "codec", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def assert_one_line_error(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("talkcodec: error:"), res.stderr
    assert needle in lines[0]
    assert "Traceback" not in res.stderr


@needs_data
def test_damaged_files_fail_with_one_line(encoded: Path, tmp_path: Path) -> None:
    data = encoded.read_bytes()
    cut = tmp_path / "cut.tc"
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("info", str(cut)), "ends")
    assert_one_line_error(run_cli("decode", str(cut), "-o", str(tmp_path / "x.mp4")), "ends")
    assert not (tmp_path / "x.mp4").exists()
    junk = tmp_path / "junk.tc"
    junk.write_bytes(b"TKCF\x01\x02{}" + bytes(range(1, 256)))
    assert_one_line_error(run_cli("info", str(junk)), "magic")


def test_bad_inputs_fail_with_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("info", str(tmp_path / "missing.tc")), "no such file")
    text = tmp_path / "notavideo.mp4"
    text.write_text("hello")
    assert_one_line_error(run_cli("encode", str(text), "-o", str(tmp_path / "o.tc")),
                          "notavideo.mp4")
    assert_one_line_error(run_cli("decode", str(text), "-o", str(tmp_path / "o.mp4")),
                          "not a talkcodec file")


def test_bad_settings_fail_with_one_line(tmp_path: Path) -> None:
    src = tmp_path / "any.mp4"
    src.write_bytes(b"")
    for args, needle in ((["--audio-bitrate", "100"], "audio-bitrate"),
                         (["--quant", "100"], "quantiser")):
        res = run_cli("encode", str(src), "-o", str(tmp_path / "o.tc"), *args)
        assert_one_line_error(res, needle)


def test_usage_errors() -> None:
    res = run_cli("encode")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert run_cli("--version").stdout.startswith("talkcodec ")


@needs_data
@pytest.mark.parametrize("seed", range(3))
def test_decode_survives_hostile_but_well_formed_packets(encoded: Path, tmp_path: Path,
                                                         seed: int) -> None:
    """Valid CRCs around random payloads, seqs, flags and wild timestamps: a video or a
    one-line error, never a crash."""
    import random

    from codec.bitstream.container import read_container, write_container
    from codec.bitstream.packet import Packet, PacketFlag, StreamKind

    meta, packets = read_container(encoded)
    rng = random.Random(seed)
    hostile = []
    for p in packets:
        r = rng.random()
        if r < 0.1 and p.kind is not StreamKind.IDENTITY:
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))
            p = Packet(p.kind, p.seq, p.timestamp_ms, p.flags, junk)
        elif r < 0.15:
            ts = rng.choice([0, p.timestamp_ms, 2**32 - 1, rng.randrange(2**32)])
            p = Packet(p.kind, rng.randrange(65536), ts, PacketFlag(rng.randrange(8)), p.payload)
        hostile.append(p)
    src, out = tmp_path / "hostile.tc", tmp_path / "hostile.mp4"
    write_container(src, hostile, meta)
    assert main(["decode", str(src), "-o", str(out), "--receiver", "bicubic"]) in (0, 1)
    if out.exists():
        with av.open(str(out)) as c:
            assert c.streams.video[0].frames > 0
            if c.streams.audio:
                audio = c.streams.audio[0]
                assert float(audio.duration * audio.time_base) < 70


def test_output_path_checked_before_the_work(tmp_path: Path) -> None:
    """-o naming a directory or a path in a missing directory fails at once, naming the
    path, and leaves no .part file (issue 16). The input is not even a video: the output
    is checked first."""
    src = tmp_path / "in.mp4"
    src.write_text("not read")
    adir = tmp_path / "adir"
    adir.mkdir()
    for cmd in ("encode", "decode"):
        res = run_cli(cmd, str(src), "-o", str(adir))
        assert_one_line_error(res, f"{adir}: is a directory")
        assert not Path(f"{adir}.part").exists()
        missing = tmp_path / "nonexistent" / "out.mp4"
        res = run_cli(cmd, str(src), "-o", str(missing))
        assert_one_line_error(res, f"{missing}: no such directory: {missing.parent}")
        assert "None" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "in.mp4"]


@needs_data
def test_decode_to_missing_directory_names_it(encoded: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "out.mp4"
    res = run_cli("decode", str(encoded), "-o", str(missing), "--receiver", "bicubic")
    assert_one_line_error(res, str(missing.parent))
    assert "None" not in res.stderr


def test_part_file_removed_on_every_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A job that fails after writing OUT.part (here: the final rename) leaves nothing."""
    import codec.file_codec as file_codec

    def failing_decode(src, dst, receiver, **kw):  # noqa: ANN001, ANN003, ANN202
        Path(f"{dst}.part").write_bytes(b"half a video")
        raise IsADirectoryError(21, "Is a directory", f"{dst}.part")

    monkeypatch.setattr(file_codec, "decode_file", failing_decode)
    out = tmp_path / "out.mp4"
    assert main(["decode", str(tmp_path / "in.tc"), "-o", str(out),
                 "--receiver", "bicubic"]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@needs_data
def test_part_file_removed_when_the_rename_fails(encoded: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import codec.file_codec as file_codec

    def no_rename(src, dst):  # noqa: ANN001, ANN202
        raise IsADirectoryError(21, "Is a directory", str(src))

    monkeypatch.setattr(file_codec.os, "replace", no_rename)
    out = tmp_path / "out.mp4"
    assert main(["decode", str(encoded), "-o", str(out), "--receiver", "bicubic"]) == 1
    assert list(tmp_path.iterdir()) == []
