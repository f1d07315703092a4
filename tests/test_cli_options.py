"""The CLI's common options: a help text for every option, --log-level / --log-format (JSON
lines) / --device, progress callbacks for long work, and the one loud warning when the
neural receiver is missing."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codec.cli import DEVICES, build_parser, main
from codec.data import data_dir
from codec.log import configure_logging
from codec.receiver import registry

REPO = Path(__file__).resolve().parents[1]
VAL_CLIP = data_dir() / "clips" / "rizkiarm__LipNet__evaluation__samples__GRID__bbaf2n.mpg"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_has_a_help_text() -> None:
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}"
               for name, command in _commands().items() for a in command._actions
               if not (a.help or "").strip()]
    assert missing == []


def test_runtime_options_where_they_apply() -> None:
    for name, command in _commands().items():
        options = {o for a in command._actions for o in a.option_strings}
        assert "--log-level" in options, name
        assert ("--log-format" in options) == (name in ("serve", "demo", "send")), name
        assert ("--device" in options) == (name in ("decode", "serve", "demo")), name


def test_devices_agree_with_the_receiver() -> None:
    from codec.receiver.neural.weights import DEVICES as WEIGHTS_DEVICES

    assert DEVICES == WEIGHTS_DEVICES


def test_json_log_lines(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = logging.getLogger("talkcodec.test")
    log.debug("hidden")
    log.info("worker %s up", "w1")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert [(e["level"], e["message"]) for e in lines] == [("info", "worker w1 up"),
                                                          ("error", "failed")]
    assert lines[0]["logger"] == "talkcodec.test" and lines[0]["time"].endswith("+00:00")
    assert "ValueError: boom" in lines[1]["exc"]
    configure_logging("warning", "text", stream=out)  # replaces its handler, never adds one
    assert sum(type(h).__name__ == "_Handler" for h in logging.getLogger().handlers) == 1


def test_main_sets_log_level_and_device(restore_logging: None, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKCODEC_DEVICE", "auto")
    missing = str(tmp_path / "missing.tc")
    assert main(["decode", missing, "-o", str(tmp_path / "o.mp4"), "--receiver", "bicubic",
                 "--log-level", "debug", "--device", "cpu"]) == 1
    assert logging.getLogger().level == logging.DEBUG
    assert os.environ["TALKCODEC_DEVICE"] == "cpu"
    monkeypatch.setenv("TALKCODEC_LOG_LEVEL", "error")
    assert main(["info", missing]) == 1
    assert logging.getLogger().level == logging.ERROR
    monkeypatch.setenv("TALKCODEC_LOG_LEVEL", "loud")
    assert main(["info", missing]) == 1  # a bad setting is a one-line error too


def test_missing_neural_receiver_warns_once(monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(registry, "_fallback_reported", False)
    monkeypatch.setenv("TALKCODEC_MODELS", "/nonexistent/models")
    with caplog.at_level(logging.WARNING, logger="codec.receiver.registry"):
        assert registry.default_receiver_name() == "align"
        assert registry.default_receiver_name() == "align"
    warnings = [r for r in caplog.records if r.name == "codec.receiver.registry"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "NEURAL RECEIVER UNAVAILABLE" in warnings[0].getMessage()
    assert "/nonexistent/models" in warnings[0].getMessage()


def test_cli_says_the_neural_receiver_is_missing(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tc"
    junk.write_bytes(b"not a talkcodec file")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TALKCODEC_MODELS": str(tmp_path)}
    env.pop("TALKCODEC_LOG_LEVEL", None)
    res = subprocess.run([sys.executable, "-m", "codec", "decode", str(junk), "-o",
                          str(tmp_path / "o.mp4")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 1
    assert res.stderr.count("NEURAL RECEIVER UNAVAILABLE") == 1, res.stderr
    assert "talkcodec: error:" in res.stderr.splitlines()[-1]


@pytest.mark.skipif(not VAL_CLIP.exists(), reason="shared data not present")
def test_progress_callbacks_count_frames(tmp_path: Path) -> None:
    from codec.file_codec import decode_file, encode_file
    from codec.receiver.registry import get_receiver

    ticks = {"encode": 0, "decode": 0}

    def tick(kind: str) -> object:
        ticks[kind] += 1
        return None

    out = tmp_path / "clip.tc"
    summary = encode_file(VAL_CLIP, out, max_seconds=1.0, progress=lambda: tick("encode"))
    assert ticks["encode"] == summary["frames"] > 0
    decoded = decode_file(out, tmp_path / "clip.mp4", get_receiver("bicubic"),
                          progress=lambda: tick("decode"))
    assert ticks["decode"] == decoded["frames"] > 0
