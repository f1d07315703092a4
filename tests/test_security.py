"""The call server against a room-token holder and a stranger (issue 16): media roles need
a media token, malformed input before authentication closes with 1008 and no traceback,
the Origin is checked against the configured origins and never the request's Host, the
page and API carry security headers, /healthz says nothing about the rooms."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import urllib.request
from pathlib import Path

import pytest
import websockets

from server.app import SECURITY_HEADERS, create_app, start_http
from server.signal_client import SignalClient
from server.signalling import SignallingConfig, default_origins, origin_allowed
from server.tokens import (
    SCOPE_MEDIA,
    make_room_token,
    token_scope,
    verify_room_token,
)

SECRET = b"security-test-secret"
CLIENT_DIR = Path(__file__).resolve().parents[1] / "client"


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


async def _serve(origins: frozenset[str] = frozenset()):  # noqa: ANN202
    config = SignallingConfig(secret=SECRET, allowed_origins=frozenset(origins))
    server, task, port = await start_http(create_app(config))
    return server, task, port, config


async def _stop(server, task) -> None:  # noqa: ANN001
    server.should_exit = True
    await task


async def _close_code(url: str, payload: str) -> int:
    async with websockets.connect(url) as ws:
        await ws.send(payload)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None, "closed without a close frame"
        return info.value.rcvd.code


# ---- roles that receive media -----------------------------------------------------------
def test_media_tokens_are_scoped() -> None:
    room_tok = make_room_token(SECRET, "r")
    media_tok = make_room_token(SECRET, "r", scope=SCOPE_MEDIA)
    assert token_scope(SECRET, "r", room_tok) == "room"
    assert token_scope(SECRET, "r", media_tok) == "media"
    assert verify_room_token(SECRET, "r", media_tok)  # a media token is a room token too
    assert not verify_room_token(SECRET, "r", room_tok, scope=SCOPE_MEDIA)
    assert token_scope(SECRET, "other", media_tok) is None
    expiry, _, mac = media_tok.split(".")
    assert token_scope(SECRET, "r", f"{expiry}.media.{room_tok.split('.')[1]}") is None
    assert token_scope(SECRET, "r", f"{expiry}.{mac}") is None  # scope cannot be dropped
    assert token_scope(SECRET, "r", f"{expiry}.admin.{mac}") is None
    with pytest.raises(ValueError):
        make_room_token(SECRET, "r", scope="admin")


def test_room_token_cannot_join_as_receiver_or_agent() -> None:
    """A viewer's token (the one in the page URL) must not let its holder take the
    receiver's place (the senders' links) or the agent's (the browsers' cameras)."""
    async def scenario() -> None:
        server, task, port, _ = await _serve()
        url = f"ws://127.0.0.1:{port}/ws"
        room_tok = make_room_token(SECRET, "r")
        media_tok = make_room_token(SECRET, "r", scope=SCOPE_MEDIA)
        for role in ("receiver", "agent"):
            with pytest.raises(ConnectionError, match="media token"):
                await SignalClient(url, "r", room_tok, f"eve-{role}", role).connect()
        worker = SignalClient(url, "r", media_tok, "receiver", "receiver")
        agent = SignalClient(url, "r", media_tok, "agent", "agent")
        viewer = SignalClient(url, "r", room_tok, "alice", "viewer")
        sender = SignalClient(url, "r", room_tok, "bob", "sender")
        for client in (worker, agent, viewer, sender):
            await client.connect()
        carol = SignalClient(url, "r", room_tok, "carol", "viewer")
        assert {p["peer"]: p["role"] for p in await carol.connect()} == {
            "receiver": "receiver", "agent": "agent", "alice": "viewer", "bob": "sender"}
        for client in (worker, agent, viewer, sender, carol):
            await client.close()
        await _stop(server, task)

    run(scenario())


def test_local_call_gives_media_roles_the_media_token() -> None:
    from server.local_call import LocalCall

    call = LocalCall("127.0.0.1", 1, "r", SECRET, worker=None, agent=None)  # type: ignore[arg-type]
    assert token_scope(SECRET, "r", call.client("receiver").token) == "media"
    assert token_scope(SECRET, "r", call.client("agent").token) == "media"
    assert token_scope(SECRET, "r", call.client("viewer").token) == "room"
    assert token_scope(SECRET, "r", call.client("sender").token) == "room"
    assert "media" not in call.page_url("alice")


# ---- malformed input before authentication ------------------------------------------------
def test_bad_tokens_never_raise() -> None:
    for junk in ("².x", "١٢٣.x", "12.é", "12.media.é", "1.2.3", "0" * 13 + ".x",
                 "\x00.\x00", "99999999999.media.", b"12.x", ["12.x"], None, 12):
        assert token_scope(SECRET, "r", junk) is None, junk
        assert not verify_room_token(SECRET, "r", junk), junk  # type: ignore[arg-type]


def test_malformed_input_before_join_closes_1008_without_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        server, task, port, _ = await _serve()
        url = f"ws://127.0.0.1:{port}/ws"
        join = {"type": "join", "room": "r", "peer": "p", "role": "viewer"}
        cases = [
            json.dumps({**join, "token": "².x"}),  # str.isdigit() accepts "²", int() does not
            json.dumps({**join, "token": "12.é"}),  # non-ASCII MAC
            "[" * 1000 + "]" * 1000,  # json.loads: RecursionError
            '{"type": "join", "x": ' + "[" * 5000 + "]" * 5000 + "}",
        ]
        for payload in cases:
            assert await _close_code(url, payload) == 1008, payload[:40]
        await _stop(server, task)

    with caplog.at_level(logging.INFO):
        run(scenario())
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def test_unexpected_error_is_one_log_line_and_a_clean_close(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import server.signalling as signalling

    def broken(*args: object, **kw: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(signalling, "token_scope", broken)

    async def scenario() -> None:
        server, task, port, _ = await _serve()
        url = f"ws://127.0.0.1:{port}/ws"
        tok = make_room_token(SECRET, "r")
        payload = json.dumps({"type": "join", "room": "r", "peer": "p", "role": "viewer",
                              "token": tok})
        assert await _close_code(url, payload) == 1011
        await _stop(server, task)

    with caplog.at_level(logging.INFO):
        run(scenario())
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1, caplog.text
    assert "KeyError" in records[0].getMessage() and records[0].exc_info is None
    assert "Traceback" not in caplog.text


# ---- Origin ---------------------------------------------------------------------------
async def _handshake(port: int, host: str, origin: str | None) -> int:
    """The HTTP status of a WebSocket upgrade with the given Host and Origin headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = ["GET /ws HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


def test_origin_is_not_trusted_from_the_host_header() -> None:
    """DNS rebinding: a page on evil.example (resolving to this server) sends Host and
    Origin both evil.example. Only the configured origins may connect."""
    async def scenario() -> None:
        server, task, port, config = await _serve()
        config.allowed_origins = default_origins("127.0.0.1", port)
        evil = f"evil.example:{port}"
        assert await _handshake(port, evil, f"http://{evil}") == 403
        assert await _handshake(port, f"127.0.0.1:{port}", f"http://{evil}") == 403
        for name in ("127.0.0.1", "localhost"):
            assert await _handshake(port, evil, f"http://{name}:{port}") == 101
        assert await _handshake(port, evil, None) == 101  # Python peers send no Origin
        await _stop(server, task)

    run(scenario())


def test_default_and_configured_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    local = default_origins("127.0.0.1", 8000)
    assert {"http://127.0.0.1:8000", "http://localhost:8000"} <= local
    assert default_origins("0.0.0.0", 8000) == local
    assert default_origins("call.example", 80) == {"http://call.example:80",
                                                   "http://call.example"}
    assert not origin_allowed("http://evil.example:8000", local)
    assert origin_allowed("http://localhost:8000", local)
    assert origin_allowed(None, local)
    assert origin_allowed("https://x", frozenset({"*"}))

    from server.cli import _origins

    monkeypatch.setenv("TALKCODEC_ORIGINS", "https://a.example, https://b.example/")
    args = argparse.Namespace(host="0.0.0.0", origin=["https://call.example"])
    got = _origins(args, 8000)
    assert {"https://call.example", "https://a.example", "https://b.example",
            "http://localhost:8000"} <= got
    assert "http://evil.example:8000" not in got


# ---- HTTP: headers, health ----------------------------------------------------------------
def _get(url: str) -> tuple[int, dict, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def _open(request: urllib.request.Request) -> tuple[int, dict, bytes]:
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def test_security_headers_and_health() -> None:
    async def scenario() -> list:
        server, task, port, _ = await _serve()
        base = f"http://127.0.0.1:{port}"
        # A room exists: /healthz must not say so.
        client = SignalClient(f"ws://127.0.0.1:{port}/ws", "r", make_room_token(SECRET, "r"),
                              "alice", "viewer")
        await client.connect()
        got = [await asyncio.to_thread(_get, base + path)
               for path in ("/", "/healthz", "/static/call.js")]
        # /api/ice answers room-token holders only (POST; tests/test_turn.py), with headers.
        body = json.dumps({"room": "r", "token": make_room_token(SECRET, "r")}).encode()
        request = urllib.request.Request(base + "/api/ice", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        got.append(await asyncio.to_thread(_open, request))
        await client.close()
        await _stop(server, task)
        return got

    responses = run(scenario())
    for status, headers, _ in responses:
        assert status == 200
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name.lower()) == value, (name, headers)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "camera=(self)" in SECURITY_HEADERS["Permissions-Policy"]
    assert "microphone=(self)" in SECURITY_HEADERS["Permissions-Policy"]
    assert responses[1][2] == b"ok"


def test_client_has_no_inline_script_or_style() -> None:
    """What the CSP forbids: inline <script>, on*= handlers, style= attributes, eval."""
    import re

    html = (CLIENT_DIR / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S):
        assert tag.strip() == "", "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert not re.search(r"\sstyle\s*=", html) and "<style" not in html
    for js in CLIENT_DIR.glob("*.js"):
        text = js.read_text()
        assert "eval(" not in text and "new Function" not in text, js.name


# ---- the page in a browser under its CSP ------------------------------------------------
@pytest.mark.e2e
def test_page_joins_under_csp_and_drops_token_from_url() -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian chromium not installed (scripts/install_browser.sh)")
    pw_api = pytest.importorskip("playwright.sync_api")
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(coro):  # noqa: ANN001, ANN202
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    server, task, port, config = on_loop(_serve())
    config.allowed_origins = default_origins("127.0.0.1", port)
    token = make_room_token(SECRET, "r")
    # Functions, not string expressions: the CSP forbids the page evaluating strings.
    joined = "() => window.talkcodec && window.talkcodec.signalling === 'joined'"
    try:
        with pw_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text)
                    if "Content Security Policy" in m.text or "Refused" in m.text else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/?room=r&token={token}&name=alice&camera=0")
            page.wait_for_function(joined, timeout=20000, polling=200)
            assert "token" not in page.url and "name=alice" in page.url, page.url
            page.reload()  # the tab keeps the token for a reload
            page.wait_for_function(joined, timeout=20000, polling=200)
            assert not problems, problems
            # The same page from an origin the server was not configured with is refused
            # (here: "localhost" is not in the configured set).
            config.allowed_origins = frozenset({f"http://127.0.0.1:{port}"})
            other = browser.new_page()
            other.goto(f"http://localhost:{port}/?room=r&token={token}&camera=0")
            other.wait_for_function(joined.replace("joined", "closed"), timeout=20000,
                                    polling=200)
            browser.close()
    finally:
        on_loop(_stop(server, task))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
