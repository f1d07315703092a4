"""A per-address cap on open signalling sockets (issue 15): past it a new socket from that
address is closed at once with 1013 and a reason, the others (and other addresses' peers)
keep working, and closing sockets frees the address's places."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from server.app import create_app, start_http
from server.signal_client import SignalClient
from server.signalling import AddressCounter, SignallingConfig, SignallingLimits
from server.tokens import make_room_token

SECRET = b"cap-test-secret"


def test_address_counter() -> None:
    c = AddressCounter(2)
    assert c.acquire("a") and c.acquire("a") and not c.acquire("a") and c.acquire("b")
    c.release("a")
    assert c.acquire("a") and c.refused == 1
    for _ in range(3):
        c.release("a")
    assert "a" not in c.open
    assert all(AddressCounter(0).acquire("a") for _ in range(1000))  # 0: no cap


def test_idle_sockets_from_one_address_are_capped() -> None:
    async def scenario() -> dict:
        config = SignallingConfig(secret=SECRET, limits=SignallingLimits(max_sockets_per_ip=5))
        app = create_app(config)
        server, task, port = await start_http(app)
        url = f"ws://127.0.0.1:{port}/ws"
        idle = [await websockets.connect(url) for _ in range(5)]  # never join: idle sockets
        refused = await websockets.connect(url)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(refused.recv(), 5)
        # A joining peer is refused too while the address is full, with the reason.
        alice = SignalClient(url, "r", make_room_token(SECRET, "r"), "alice", "viewer")
        with pytest.raises(ConnectionError) as join_refused:
            await alice.connect()
        open_now = sum(app.state.rooms.addresses.open.values())
        for ws in idle:
            await ws.close()
        for _ in range(100):
            if not app.state.rooms.addresses.open:
                break
            await asyncio.sleep(0.02)
        await alice.connect()  # places freed
        joined = list(app.state.rooms.rooms.get("r", {}))
        await alice.close()
        server.should_exit = True
        await task
        return {"code": info.value.rcvd.code, "reason": info.value.rcvd.reason,
                "join_refused": str(join_refused.value), "open": open_now, "joined": joined,
                "refused": app.state.rooms.addresses.refused}

    out = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert out["code"] == 1013 and out["reason"] == "too many connections from this address"
    assert "1013" in out["join_refused"] or "too many" in out["join_refused"]
    assert out["open"] == 5  # the refused ones hold no place
    assert out["joined"] == ["alice"] and out["refused"] == 2
