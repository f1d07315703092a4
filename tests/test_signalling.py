"""Signalling rooms over a real uvicorn server on loopback: tokens, relay, limits, Origin."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from server.app import create_app, start_http
from server.signal_client import SignalClient
from server.signalling import SignallingConfig, SignallingLimits
from server.tokens import make_room_token, verify_room_token

SECRET = b"test-secret-not-used-anywhere-else"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


async def _serve(limits: SignallingLimits | None = None, origins=frozenset()):
    config = SignallingConfig(secret=SECRET, allowed_origins=frozenset(origins),
                              limits=limits or SignallingLimits())
    server, task, port = await start_http(create_app(config))
    return server, task, f"ws://127.0.0.1:{port}/ws"


async def _stop(server, task) -> None:
    server.should_exit = True
    await task


def test_token_roundtrip_and_tamper():
    tok = make_room_token(SECRET, "room1")
    assert verify_room_token(SECRET, "room1", tok)
    assert not verify_room_token(SECRET, "room2", tok)
    assert not verify_room_token(b"other", "room1", tok)
    expiry, mac = tok.split(".")
    assert not verify_room_token(SECRET, "room1", f"{int(expiry) + 1}.{mac}")
    assert not verify_room_token(SECRET, "room1", make_room_token(SECRET, "room1", ttl_s=-5))
    for junk in ("", ".", "x" * 500, "12.", "abc.def", None, 5):
        assert not verify_room_token(SECRET, "room1", junk)  # type: ignore[arg-type]
    assert verify_room_token(SECRET, "room1", tok, now=time.time() + 60)


def test_join_relay_and_leave():
    async def scenario():
        server, task, url = await _serve()
        tok = make_room_token(SECRET, "r")
        a = SignalClient(url, "r", tok, "alice", "viewer", "Alice")
        b = SignalClient(url, "r", tok, "bob", "sender")
        assert await a.connect() == []
        peers = await b.connect()
        assert peers == [{"peer": "alice", "role": "viewer", "label": "Alice"}]
        it_a = a.messages().__aiter__()
        joined = await it_a.__anext__()
        assert joined["type"] == "peer-joined" and joined["peer"] == "bob"
        await b.signal("alice", {"kind": "offer", "sdp": "v=0"})
        got = await it_a.__anext__()
        assert got == {"type": "signal", "from": "bob", "data": {"kind": "offer", "sdp": "v=0"}}
        await b.close()
        left = await it_a.__anext__()
        assert left == {"type": "peer-left", "peer": "bob"}
        await a.close()
        await _stop(server, task)

    run(scenario())


def test_rooms_are_isolated_and_tokens_required():
    async def scenario():
        server, task, url = await _serve()
        # A token for room "a" does not open room "b".
        with pytest.raises(ConnectionError):
            await SignalClient(url, "b", make_room_token(SECRET, "a"), "eve", "viewer").connect()
        with pytest.raises(ConnectionError):
            await SignalClient(url, "b", "1.forged", "eve", "viewer").connect()
        a = SignalClient(url, "a", make_room_token(SECRET, "a"), "alice", "viewer")
        await a.connect()
        b = SignalClient(url, "b", make_room_token(SECRET, "b"), "bob", "viewer")
        assert await b.connect() == []  # does not see alice
        await b.signal("alice", {"kind": "offer"})  # cannot reach another room's peer
        it_b = b.messages().__aiter__()
        err = await it_b.__anext__()
        assert err["type"] == "error"
        await a.close()
        await b.close()
        await _stop(server, task)

    run(scenario())


def test_bad_messages_close_the_socket():
    async def scenario():
        limits = SignallingLimits(max_message_bytes=1000, messages_per_s=5, burst=5)
        server, task, url = await _serve(limits)
        tok = make_room_token(SECRET, "r")
        join = {"type": "join", "room": "r", "token": tok, "peer": "p", "role": "viewer"}
        cases = [
            ("x" * 5000, 1009),  # too large
            ("not json", 1008),
            (json.dumps({"type": "signal", "to": "p"}), 1008),  # must join first
            (json.dumps({**join, "role": "admin"}), 1008),
            (json.dumps({**join, "peer": "../../etc"}), 1008),
        ]
        for payload, code in cases:
            async with websockets.connect(url) as ws:
                await ws.send(payload)
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.rcvd.code == code
        # Rate limit: a flood after joining closes the socket.
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps(join))
            assert json.loads(await ws.recv())["type"] == "joined"
            with pytest.raises(websockets.ConnectionClosed) as info:
                for _ in range(50):
                    await ws.send(json.dumps({"type": "ping"}))
                for _ in range(50):
                    await ws.recv()
            assert info.value.rcvd.code == 1008
        await _stop(server, task)

    run(scenario())


def test_origin_checked_and_room_limit():
    async def scenario():
        server, task, url = await _serve(SignallingLimits(max_peers_per_room=2),
                                         origins={"https://call.example"})
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url, origin="https://evil.example"):
                pass
        tok = make_room_token(SECRET, "r")
        async with websockets.connect(url, origin="https://call.example") as ws:
            await ws.send(json.dumps({"type": "join", "room": "r", "token": tok, "peer": "a",
                                      "role": "viewer"}))
            assert json.loads(await ws.recv())["type"] == "joined"
            b = SignalClient(url, "r", tok, "b", "viewer")
            await b.connect()
            with pytest.raises(ConnectionError):  # room full
                await SignalClient(url, "r", tok, "c", "viewer").connect()
            with pytest.raises(ConnectionError):  # duplicate id
                await SignalClient(url, "r", tok, "b", "viewer").connect()
            await b.close()
        await _stop(server, task)

    run(scenario())
