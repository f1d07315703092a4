"""``talkcodec send | serve | demo`` argument handling: bad input is a one-line error and a
non-zero status, never a traceback or a hang."""

from __future__ import annotations

import pytest

from codec.cli import main
from codec.errors import TalkcodecError
from server.cli import _ws_url


def test_server_urls() -> None:
    assert _ws_url("http://h:8000") == "ws://h:8000/ws"
    assert _ws_url("https://call.example/") == "wss://call.example/ws"
    assert _ws_url("ws://h:1/ws") == "ws://h:1/ws"
    with pytest.raises(TalkcodecError):
        _ws_url("ftp://h")


@pytest.mark.parametrize("argv", [
    ["send", "--url", "http://127.0.0.1:9", "--room", "r", "--token", "t", "/no/such.mp4"],
    ["send", "--url", "http://127.0.0.1:9", "--room", "r", "--token", "t", "--agent"],
    ["send", "--url", "gopher://x", "--room", "r", "--token", "t", "--agent"],
    ["send", "--url", "http://127.0.0.1:9", "--room", "r", "--token", "t"],
    ["demo", "--clip", "/no/such.mp4"],
])
def test_bad_input_is_one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("talkcodec: error:"), err
