"""The rooms API (issue 15): operator key, names, expiry, and the tokens it hands out
admit their room on signalling (and only theirs)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

from server.app import create_app, start_http
from server.room_store import MemoryStore, RoomRecord, StoreUnavailable
from server.signal_client import SignalClient
from server.signalling import SignallingConfig
from server.tokens import SCOPE_MEDIA, token_expiry, token_scope

SECRET = b"rooms-api-test-secret"
KEY = "operator-key-for-tests"


def _post(port: int, body: object | None = None, key: str | None = KEY) -> tuple[int, dict]:
    data = b"" if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/rooms", data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class DownStore(MemoryStore):
    async def create_room(self, record: RoomRecord) -> bool:
        raise StoreUnavailable("connection refused")


def _scenario(store: MemoryStore, key: str, check) -> None:
    async def main() -> None:
        app = create_app(SignallingConfig(secret=SECRET), store=store, operator_key=key)
        server, task, port = await start_http(app)
        loop = asyncio.get_running_loop()
        try:
            await check(port, lambda *a, **k: loop.run_in_executor(None, lambda: _post(*a, **k)))
        finally:
            server.should_exit = True
            await task

    asyncio.run(asyncio.wait_for(main(), timeout=30))


def test_rooms_api_key_names_and_tokens() -> None:
    store = MemoryStore()

    async def check(port: int, post) -> None:  # noqa: ANN001
        assert (await post(port, key=None))[0] == 401
        assert (await post(port, key="wrong"))[0] == 401
        status, room = await post(port, {"ttl_s": 600})
        assert status == 201, room
        name = room["room"]
        assert room["join_url"] == (f"http://127.0.0.1:{port}/?room={name}"
                                    f"&token={room['token']}")
        assert abs(room["expires_unix"] - (time.time() + 600)) < 5
        assert token_expiry(room["token"]) == room["expires_unix"]
        assert token_scope(SECRET, name, room["token"]) == "room"
        assert token_scope(SECRET, name, room["media_token"]) == SCOPE_MEDIA
        assert token_scope(SECRET, "another", room["token"]) is None
        # Tokens expire with the room.
        assert token_scope(SECRET, name, room["token"], now=room["expires_unix"] + 1) is None
        # Any number of rooms, each its own name; a name given twice is refused.
        names = {name}
        for _ in range(5):
            status, more = await post(port)
            assert status == 201
            names.add(more["room"])
        assert len(names) == 6 and await store.count_rooms() == 6
        assert (await post(port, {"name": "standup-1"}))[0] == 201
        assert (await post(port, {"name": "standup-1"}))[0] == 409
        for bad in ({"name": "a b"}, {"name": 5}, {"ttl_s": 10}, {"ttl_s": "60"},
                    {"ttl_s": True}, [1]):
            status, reply = await post(port, bad)
            assert status == 400 and reply["error"], bad
        # The room's token joins its room on signalling; a viewer's cannot be a receiver.
        url = f"ws://127.0.0.1:{port}/ws"
        async with SignalClient(url, name, room["token"], "alice", "viewer") as alice:
            assert alice.peers == {}
        async with SignalClient(url, name, room["media_token"], "agent", "agent"):
            pass
        try:
            await SignalClient(url, name, room["token"], "rx", "receiver").connect()
            raise AssertionError("a room token joined as receiver")
        except ConnectionError:
            pass

    _scenario(store, KEY, check)


def test_rooms_api_off_without_key_and_store_down_is_503() -> None:
    async def off(port: int, post) -> None:  # noqa: ANN001
        status, reply = await post(port)
        assert status == 404 and "TALKCODEC_OPERATOR_KEY" in reply["error"]

    _scenario(MemoryStore(), "", off)

    async def down(port: int, post) -> None:  # noqa: ANN001
        status, reply = await post(port)
        assert status == 503 and "room store unavailable" in reply["error"]

    _scenario(DownStore(), KEY, down)
