"""The receiver pool on signalling (issue 15): links placed by load, "no receiver
available" instead of a hang, a silent receiver out of placement, links moved when a
receiver goes. Receivers here are bare sockets speaking the pool protocol."""

from __future__ import annotations

import asyncio
import json

import websockets

from server.app import create_app, start_http
from server.placement import NO_RECEIVER, POOL_ROOM
from server.signal_client import SignalClient
from server.signalling import SignallingConfig
from server.tokens import SCOPE_MEDIA, make_room_token

SECRET = b"placement-test-secret"


async def _serve(ttl_s: float = 5.0):  # noqa: ANN202
    app = create_app(SignallingConfig(secret=SECRET, receiver_pool=True))
    app.state.rooms.pool.ttl = ttl_s
    server, task, port = await start_http(app)
    return app, server, task, f"ws://127.0.0.1:{port}/ws"


async def _receiver(url: str, rid: str, capacity: int = 2, token: str | None = None):  # noqa: ANN202
    ws = await websockets.connect(url)
    await ws.send(json.dumps({"type": "register", "receiver": rid, "capacity": capacity,
                              "token": token or make_room_token(SECRET, POOL_ROOM,
                                                                scope=SCOPE_MEDIA)}))
    assert json.loads(await ws.recv())["type"] == "registered"
    await ws.send(json.dumps({"type": "load", "streams": 0, "render_ms": 1.0}))
    return ws


async def _next(ws, kind: str = "signal") -> dict:  # noqa: ANN001
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if msg["type"] == kind:
            return msg


async def _offer(sender: SignalClient, session: str) -> None:
    await sender.signal("receiver", {"session": session, "kind": "offer", "sdp": "v=0"})


def test_links_spread_by_load_and_refused_without_capacity() -> None:
    async def main() -> None:
        app, server, task, url = await _serve()
        pool = app.state.rooms.pool
        try:
            room_token = make_room_token(SECRET, "r1")
            viewer = SignalClient(url, "r1", room_token, "v1", "viewer")
            peers = await viewer.connect()
            assert {"peer": "receiver", "role": "receiver", "label": "receiver pool"} in peers
            a, b = await _receiver(url, "rx-a"), await _receiver(url, "rx-b")
            senders = [SignalClient(url, "r1", room_token, f"s{i}", "sender") for i in range(4)]
            for s in senders:
                await s.connect()
            got: dict[str, list[str]] = {"rx-a": [], "rx-b": []}
            for s in senders:
                await _offer(s, f"link:{s.peer}")
                await asyncio.sleep(0.05)
            for name, ws in (("rx-a", a), ("rx-b", b)):
                for _ in range(2):
                    msg = await _next(ws)
                    assert msg["room"] == "r1" and msg["data"]["kind"] == "offer"
                    assert {p["peer"] for p in msg["peers"]} >= {"v1", msg["from"]}
                    got[name].append(msg["from"])
            assert sorted(got["rx-a"] + got["rx-b"]) == ["s0", "s1", "s2", "s3"]
            # The receiver's answer reaches the sender from the virtual peer.
            await a.send(json.dumps({"type": "signal", "room": "r1", "to": got["rx-a"][0],
                                     "data": {"session": f"link:{got['rx-a'][0]}",
                                              "kind": "answer", "sdp": "v=0"}}))
            sender0 = next(s for s in senders if s.peer == got["rx-a"][0])
            it = sender0.messages().__aiter__()
            msg = await asyncio.wait_for(it.__anext__(), 5)
            while msg["type"] != "signal":
                msg = await asyncio.wait_for(it.__anext__(), 5)
            assert msg["from"] == "receiver" and msg["data"]["kind"] == "answer"
            # Both full (capacity 2 each): the fifth is refused at once, the viewer told.
            extra = SignalClient(url, "r1", room_token, "s9", "sender")
            await extra.connect()
            await _offer(extra, "link:s9")
            it9 = extra.messages().__aiter__()
            msg = await asyncio.wait_for(it9.__anext__(), 5)
            assert msg["data"] == {"session": "link:s9", "kind": "bye", "reason": NO_RECEIVER}
            itv = viewer.messages().__aiter__()
            while msg.get("type") != "notice":
                msg = await asyncio.wait_for(itv.__anext__(), 5)
            assert msg["error"] == NO_RECEIVER
            assert pool.snapshot()["talkcodec_signalling_placement_failures"] == {(): 1}
            # A receiver that goes: its senders are told to offer again.
            await b.close()
            for s in senders:
                if s.peer in got["rx-b"]:
                    itb = s.messages().__aiter__()
                    msg = await asyncio.wait_for(itb.__anext__(), 5)
                    while msg["type"] != "signal":
                        msg = await asyncio.wait_for(itb.__anext__(), 5)
                    assert msg["data"]["kind"] == "bye"
                    assert msg["data"]["reason"] == "receiver gone"
            # A forged registration is refused.
            ws = await websockets.connect(url)
            await ws.send(json.dumps({"type": "register", "receiver": "evil", "capacity": 2,
                                      "token": make_room_token(SECRET, "r1", scope=SCOPE_MEDIA)}))
            try:
                await asyncio.wait_for(ws.recv(), 5)
                raise AssertionError("forged receiver registered")
            except websockets.ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code == 1008
        finally:
            server.should_exit = True
            await task

    asyncio.run(asyncio.wait_for(main(), 60))


def test_receiver_that_stops_beating_leaves_placement() -> None:
    async def main() -> None:
        app, server, task, url = await _serve(ttl_s=1.0)
        pool = app.state.rooms.pool
        try:
            silent = await _receiver(url, "rx-silent")
            assert pool.available() == 1
            await asyncio.sleep(2.5)  # no load messages: past the TTL, swept
            assert pool.available() == 0 and "rx-silent" not in pool.receivers
            with_beat = await _receiver(url, "rx-live")
            sender = SignalClient(url, "r2", make_room_token(SECRET, "r2"), "s", "sender")
            await sender.connect()
            await _offer(sender, "link:s")
            assert (await _next(with_beat))["from"] == "s"
            await silent.close()
        finally:
            server.should_exit = True
            await task

    asyncio.run(asyncio.wait_for(main(), 60))
