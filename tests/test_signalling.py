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


# ---- a dropped socket: away, then resumed or gone --------------------------------------
async def _raw_join(url: str, peer: str, resume: str | None = None, role: str = "sender"):
    ws = await websockets.connect(url)
    msg = {"type": "join", "room": "r", "token": make_room_token(SECRET, "r"), "peer": peer,
           "role": role}
    if resume is not None:
        msg["resume"] = resume
    await ws.send(json.dumps(msg))
    return ws, json.loads(await ws.recv())


async def _drop(ws) -> None:
    """The socket dies without a close handshake (a network blip): the server sees 1006."""
    ws.transport.abort()
    await asyncio.sleep(0.3)


class _Inbox:
    """A client's messages, pumped into a queue (waiting on a queue with a timeout does not
    cancel the client's message generator)."""

    def __init__(self, client: SignalClient) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.ensure_future(self._pump(client))

    async def _pump(self, client: SignalClient) -> None:
        async for msg in client.messages():
            await self.queue.put(msg)

    async def __anext__(self) -> dict:
        return await self.queue.get()


async def _nothing_for(it: _Inbox, seconds: float) -> None:
    await asyncio.sleep(seconds)
    assert it.queue.empty(), f"unexpected message {it.queue.get_nowait()}"


async def _alice_and_bob(limits: SignallingLimits):
    """A server, alice (a SignalClient, her messages in an inbox) and bob (a raw socket)
    in room "r"; alice has heard bob join."""
    server, task, url = await _serve(limits)
    alice = SignalClient(url, "r", make_room_token(SECRET, "r"), "alice", "viewer")
    await alice.connect()
    it = _Inbox(alice)
    bob, joined = await _raw_join(url, "bob")
    assert (await asyncio.wait_for(it.__anext__(), 5))["type"] == "peer-joined"
    return server, task, url, alice, it, bob, joined


async def _end(server, task, alice: SignalClient, bob) -> None:
    await bob.close()
    await alice.close()
    await _stop(server, task)


def test_a_dropped_socket_resumes_its_place_and_gets_what_was_sent_meanwhile():
    async def scenario():
        server, task, url = await _serve(SignallingLimits(away_grace_s=10.0))
        alice = SignalClient(url, "r", make_room_token(SECRET, "r"), "alice", "viewer")
        await alice.connect()
        it = _Inbox(alice)
        bob, joined = await _raw_join(url, "bob")
        key = joined["resume"]
        assert (await asyncio.wait_for(it.__anext__(), 5))["type"] == "peer-joined"
        await _drop(bob)
        await alice.signal("bob", {"kind": "offer", "sdp": "v=0"})  # bob is away: kept
        await _nothing_for(it, 1.0)  # no peer-left
        bob, joined = await _raw_join(url, "bob", resume=key)
        assert joined["resumed"] is True and joined["resume"] == key
        assert joined["peers"] == [{"peer": "alice", "role": "viewer", "label": ""}]
        kept = json.loads(await asyncio.wait_for(bob.recv(), 5))
        assert kept == {"type": "signal", "from": "alice",
                        "data": {"kind": "offer", "sdp": "v=0"}}
        await _nothing_for(it, 0.5)  # no peer-joined either: nothing changed for alice
        await alice.signal("bob", {"kind": "candidate"})  # delivered at once again
        assert json.loads(await asyncio.wait_for(bob.recv(), 5))["data"] == {"kind": "candidate"}
        await bob.close()  # a close of its own: alice hears it at once
        assert await asyncio.wait_for(it.__anext__(), 5) == {"type": "peer-left", "peer": "bob"}
        await alice.close()
        await _stop(server, task)

    run(scenario())


def test_an_away_peer_leaves_once_the_grace_period_is_over():
    async def scenario():
        server, task, url, alice, it, bob, joined = await _alice_and_bob(
            SignallingLimits(away_grace_s=0.5))
        t0 = time.monotonic()
        await _drop(bob)
        assert await asyncio.wait_for(it.__anext__(), 5) == {"type": "peer-left", "peer": "bob"}
        assert time.monotonic() - t0 >= 0.5
        # Too late to resume: the key is refused, the join is a new one.
        bob, again = await _raw_join(url, "bob", resume=joined["resume"])
        assert again["type"] == "joined" and "resumed" not in again
        assert again["resume"] != joined["resume"]
        assert (await asyncio.wait_for(it.__anext__(), 5))["type"] == "peer-joined"
        await bob.close()
        await alice.close()
        await _stop(server, task)

    run(scenario())


def test_a_registry_closing_ends_the_away_members_grace_periods():
    """A signalling process shutting down leaves no grace-period task behind."""
    from server.signalling import Member, RoomRegistry

    async def scenario():
        registry = RoomRegistry(SignallingLimits())
        away = Member("bob", "viewer", "", None)  # type: ignore[arg-type]
        away.go_away()
        away.expiry = asyncio.ensure_future(asyncio.sleep(60))
        registry.rooms["r"] = {"bob": away}
        task = away.expiry
        await registry.close()
        await asyncio.sleep(0)
        assert task.cancelled() and away.expiry is None

    run(scenario())


@pytest.mark.parametrize("how", ["no key", "wrong key", "other role"])
def test_a_join_without_the_away_peer_s_key_ends_it_and_is_a_new_join(how):
    async def scenario():
        server, task, url, alice, it, bob, joined = await _alice_and_bob(
            SignallingLimits(away_grace_s=30.0))
        await _drop(bob)
        await alice.signal("bob", {"kind": "offer"})
        key = {"no key": None, "wrong key": "x" * 22, "other role": joined["resume"]}[how]
        role = "viewer" if how == "other role" else "sender"
        bob, again = await _raw_join(url, "bob", resume=key, role=role)
        assert again["type"] == "joined" and "resumed" not in again  # not refused either
        assert await asyncio.wait_for(it.__anext__(), 5) == {"type": "peer-left", "peer": "bob"}
        assert (await asyncio.wait_for(it.__anext__(), 5))["role"] == role
        with pytest.raises(TimeoutError):  # what was kept for the old one is not handed over
            await asyncio.wait_for(bob.recv(), 0.5)
        await bob.close()
        await alice.close()
        await _stop(server, task)

    run(scenario())


def test_an_away_peer_keeps_a_bounded_outbox_and_past_it_cannot_resume():
    from server.signalling import AWAY_OUTBOX

    async def scenario():
        limits = SignallingLimits(away_grace_s=30.0, messages_per_s=1e4, burst=10_000)
        server, task, url, alice, it, bob, joined = await _alice_and_bob(
            limits)
        await _drop(bob)
        for k in range(AWAY_OUTBOX + 50):
            await alice.signal("bob", {"kind": "candidate", "k": k})
        bob, again = await _raw_join(url, "bob", resume=joined["resume"])
        assert "resumed" not in again  # it missed messages: a new join, the others hear it
        assert await asyncio.wait_for(it.__anext__(), 5) == {"type": "peer-left", "peer": "bob"}
        await bob.close()
        await alice.close()
        await _stop(server, task)

    run(scenario())


def test_a_python_peer_resumes_after_its_socket_drops():
    async def scenario():
        server, task, url = await _serve(SignallingLimits(away_grace_s=10.0))
        tok = make_room_token(SECRET, "r")
        alice = SignalClient(url, "r", tok, "alice", "viewer")
        await alice.connect()
        it_a = _Inbox(alice)
        bob = SignalClient(url, "r", tok, "bob", "sender", reconnect_s=10.0)
        await bob.connect()
        assert (await asyncio.wait_for(it_a.__anext__(), 5))["type"] == "peer-joined"
        it_b = _Inbox(bob)
        bob._ws.transport.abort()  # noqa: SLF001 - the network drops the socket
        await asyncio.sleep(0.3)
        await alice.signal("bob", {"kind": "offer"})
        got = await asyncio.wait_for(it_b.__anext__(), 10)  # across the rejoin
        assert got == {"type": "signal", "from": "alice", "data": {"kind": "offer"}}
        assert bob.reconnects == 1 and bob.resumes == 1
        await _nothing_for(it_a, 0.5)
        await bob.close()
        assert await asyncio.wait_for(it_a.__anext__(), 5) == {"type": "peer-left", "peer": "bob"}
        await alice.close()
        await _stop(server, task)

    run(scenario())


def test_a_resume_takes_the_place_of_a_socket_the_server_still_holds():
    async def scenario():
        server, task, url, alice, it, old, joined = await _alice_and_bob(
            SignallingLimits(away_grace_s=10.0))
        # Its client saw the drop first (the old socket still looks open to the server).
        bob, again = await _raw_join(url, "bob", resume=joined["resume"])
        assert again["resumed"] is True
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(old.recv(), 5)
        assert old.close_code == 1008
        await alice.signal("bob", {"kind": "offer"})
        assert json.loads(await asyncio.wait_for(bob.recv(), 5))["data"] == {"kind": "offer"}
        await _nothing_for(it, 0.5)  # alice heard nothing of it
        # Without the key a peer id in use is still refused.
        with pytest.raises(websockets.ConnectionClosed) as refused:
            await _raw_join(url, "bob")
        assert refused.value.rcvd.code == 1008 and "already" in refused.value.rcvd.reason
        await bob.close()
        await alice.close()
        await _stop(server, task)

    run(scenario())


@pytest.mark.parametrize("reconnect_s", [0.0, 10.0])
def test_a_join_told_to_try_again_later_is_tried_again_with_reconnection(reconnect_s):
    """A signalling process that answers a join with 1013 (its store slow, the peer id still
    held elsewhere) is asked again by a client with reconnection, and only then; a final
    refusal (1008) is never retried."""
    from websockets.asyncio.server import serve

    async def scenario():
        tries: list[str] = []

        async def handler(ws):  # noqa: ANN001, ANN202
            join = json.loads(await ws.recv())
            tries.append(join["peer"])
            if join["peer"] == "final":
                await ws.close(1008, "bad token")
            elif len(tries) < 3:
                await ws.close(1013, "try again shortly")
            else:
                await ws.send(json.dumps({"type": "joined", "peer": join["peer"], "peers": []}))
                await ws.wait_closed()

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}"
            client = SignalClient(url, "r", "t", "bob", "viewer", reconnect_s=reconnect_s)
            if reconnect_s:
                assert await client.connect() == [] and len(tries) == 3
            else:
                with pytest.raises(ConnectionError, match="1013"):
                    await client.connect()
                assert len(tries) == 1
            await client.close()
            tries.clear()
            final = SignalClient(url, "r", "t", "final", "viewer", reconnect_s=reconnect_s)
            with pytest.raises(ConnectionError, match="1008"):
                await final.connect()
            assert tries == ["final"]

    run(scenario())


def test_a_joining_member_hears_nothing_before_its_joined_reply() -> None:
    """A broadcast that reaches a member between its entry and its ``joined`` reply waits
    for the reply (a loaded CI run: a rejoining sender got a ``peer-left`` first and failed
    its join with "unexpected signalling reply")."""
    from server.signalling import Member

    class Socket:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send_text(self, text: str) -> None:
            await asyncio.sleep(0)  # another task may send meanwhile
            self.sent.append(json.loads(text)["type"])

    async def main() -> list[str]:
        ws = Socket()
        me = Member("p", "viewer", "", ws, held=[])  # type: ignore[arg-type]
        await me.send({"type": "peer-left", "peer": "q"})
        sending = asyncio.ensure_future(me.send({"type": "peer-joined", "peer": "r"}))
        await me.open({"type": "joined", "peer": "p", "peers": []})
        await sending
        await me.send({"type": "signal"})
        return ws.sent

    assert asyncio.run(main()) == ["joined", "peer-left", "peer-joined", "signal"]
