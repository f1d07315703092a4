"""The rooms API on a real Redis (Debian's redis-server on a free port, in a temporary
folder; installed by scripts/install_redis.sh from `make test`): two apps share the rooms;
Redis down -> 503 with a clear reason; Redis back -> rooms again (issue 15)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from server.room_store import RoomRecord, StoreUnavailable
from tests._redis import REDIS, start_redis
from tests._redis import free_port as _free_port

pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server not installed (scripts/install_redis.sh needs root "
                          "and apt-get)")


@pytest.fixture
def redis_url(tmp_path: Path):  # noqa: ANN201
    """A real Redis for the test, killed after it."""
    port = _free_port()
    proc = start_redis(tmp_path, port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()


def test_rooms_shared_through_redis_refused_while_down_and_back(tmp_path: Path) -> None:
    from server.redis_store import RedisStore

    port = _free_port()
    proc = start_redis(tmp_path, port)

    async def main() -> None:
        a = RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
        b = RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
        now = int(time.time())
        try:
            assert await a.create_room(RoomRecord("r1", now + 60, now))
            assert not await b.create_room(RoomRecord("r1", now + 60, now))  # seen by b
            got = await b.get_room("r1")
            assert got is not None and got.expires_unix == now + 60
            assert await b.count_rooms() == 1
            assert await a.create_room(RoomRecord("short", now + 1, now))
            await asyncio.sleep(2.2)
            assert await b.get_room("short") is None  # expired with its tokens
            proc.terminate()
            proc.wait(10)
            with pytest.raises(StoreUnavailable, match="redis"):
                await a.create_room(RoomRecord("r2", now + 60, now))
            restarted = start_redis(tmp_path, port)
            try:
                assert await a.create_room(RoomRecord("r2", now + 60, now))  # recovered
            finally:
                restarted.terminate()
                restarted.wait(10)
        finally:
            await a.close()
            await b.close()

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        if proc.poll() is None:
            proc.kill()


def test_rooms_api_on_redis_down_is_503() -> None:
    """The app's answer when its Redis does not answer (nothing on that port)."""
    import json
    import urllib.error
    import urllib.request

    from server.app import create_app, start_http
    from server.redis_store import RedisStore
    from server.signalling import SignallingConfig

    async def main() -> tuple[int, dict]:
        store = RedisStore(f"redis://127.0.0.1:{_free_port()}/0", timeout_s=0.5)
        app = create_app(SignallingConfig(secret=b"s"), store=store, operator_key="k")
        server, task, http_port = await start_http(app)

        def post() -> tuple[int, dict]:
            req = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/rooms", data=b"",
                                         method="POST", headers={"Authorization": "Bearer k"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        try:
            return await asyncio.get_running_loop().run_in_executor(None, post)
        finally:
            server.should_exit = True
            await task
            await store.close()

    status, reply = asyncio.run(asyncio.wait_for(main(), 30))
    assert status == 503 and reply["error"].startswith("room store unavailable: redis"), reply


def test_a_peer_away_on_one_signalling_process_rejoins_through_another(redis_url: str) -> None:
    """Two signalling apps on one Redis: bob's socket to A drops (away there); bob joins
    through B and takes his entry over at once (no refusal, no peer-left); a message from
    alice on A reaches him on B, and A's grace period ends without a peer-left."""
    import json

    import websockets

    from server.app import create_app, start_http
    from server.signal_client import SignalClient
    from server.signalling import SignallingConfig, SignallingLimits
    from server.tokens import make_room_token

    secret = b"redis-away-test"

    async def main() -> None:
        def config() -> SignallingConfig:
            return SignallingConfig(secret=secret, redis_url=redis_url,
                                    limits=SignallingLimits(away_grace_s=1.5))

        a, a_task, a_port = await start_http(create_app(config()))
        b, b_task, b_port = await start_http(create_app(config()))
        url_a, url_b = f"ws://127.0.0.1:{a_port}/ws", f"ws://127.0.0.1:{b_port}/ws"
        token = make_room_token(secret, "r")
        join = {"type": "join", "room": "r", "token": token, "peer": "bob", "role": "sender"}
        heard: list[dict] = []
        alice = SignalClient(url_a, "r", token, "alice", "viewer")
        try:
            await alice.connect()

            async def listen() -> None:
                async for msg in alice.messages():
                    heard.append(msg)

            listener = asyncio.ensure_future(listen())
            bob = await websockets.connect(url_a)
            await bob.send(json.dumps(join))
            assert json.loads(await bob.recv())["type"] == "joined"
            await asyncio.sleep(0.5)
            bob.transport.abort()  # away on A
            await asyncio.sleep(0.5)
            bob = await websockets.connect(url_b)
            await bob.send(json.dumps(join))
            assert json.loads(await asyncio.wait_for(bob.recv(), 5))["type"] == "joined"
            await alice.signal("bob", {"kind": "offer"})  # alice on A, bob now on B
            got = json.loads(await asyncio.wait_for(bob.recv(), 5))
            assert got == {"type": "signal", "from": "alice", "data": {"kind": "offer"}}
            await asyncio.sleep(2.5)  # past A's grace period
            assert [m["type"] for m in heard] == ["peer-joined", "peer-joined"], heard
            await bob.close()
            listener.cancel()
        finally:
            await alice.close()
            for server, task in ((a, a_task), (b, b_task)):
                server.should_exit = True
                await task

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_join_that_fails_half_way_leaves_no_entry_behind(redis_url: str) -> None:
    """A Redis error after the member's entry was written (a timeout under load) refuses the
    join, and takes the entry back: the peer id's retry through another signalling process
    is not refused as "already in room on another signalling process"."""
    from redis.exceptions import TimeoutError as RedisTimeout

    from server.redis_store import RedisRegistry
    from server.signalling import Member, SignallingLimits

    async def main() -> None:
        a = RedisRegistry(SignallingLimits(), redis_url)
        b = RedisRegistry(SignallingLimits(), redis_url)
        try:
            real_sadd, failed = a.redis.sadd, []

            async def sadd_times_out(*args):  # noqa: ANN002, ANN202
                if not failed:
                    failed.append(args)
                    raise RedisTimeout("Timeout reading from socket")
                return await real_sadd(*args)

            a.redis.sadd = sadd_times_out
            with pytest.raises(StoreUnavailable):
                await a.join("r", Member("bob", "viewer", "", None))  # type: ignore[arg-type]
            assert failed and "bob" not in a.rooms.get("r", {})
            assert await a.redis.hget(a._members("r"), "bob") is None
            # Its client tries the other process at once: a join like any other.
            assert await b.join("r", Member("bob", "viewer", "", None)) == []  # type: ignore[arg-type]
        finally:
            await a.close()
            await b.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_two_processes_placing_at_once_never_exceed_a_receivers_capacity(redis_url: str) -> None:
    """Two signalling processes route offers at the same instant. Each one's pick sees the
    same free places, but a placement checks the capacity and writes in one step in Redis:
    each receiver gets at most its capacity, the later offer goes to the next receiver with
    room, and when none has room its sender hears "no receiver available" (issue 15)."""
    from server.placement import NO_RECEIVER, PoolReceiver
    from server.redis_store import RedisRegistry
    from server.signalling import SignallingLimits

    class Socket:
        def __init__(self) -> None:
            self.sent: list[dict] = []

        async def send_text(self, text: str) -> None:
            import json

            self.sent.append(json.loads(text))

    async def main() -> None:
        a = RedisRegistry(SignallingLimits(), redis_url)
        b = RedisRegistry(SignallingLimits(), redis_url)
        pa, pb = a.make_pool(), b.make_pool()
        byes: list[tuple[str, dict]] = []

        async def record(room: str, peer: str, message: dict) -> None:
            byes.append((peer, message))

        pa.deliver = pb.deliver = record  # type: ignore[method-assign]
        try:
            sockets = {rid: Socket() for rid in ("rx-1", "rx-2")}
            for rid, ws in sockets.items():
                await pa.connect(PoolReceiver(rid, ws, capacity=1))

            def offer(i: int) -> dict:
                return {"session": f"link:{i}", "kind": "offer", "sdp": "v=0"}

            # The race made certain: each process's first pick waits until both have
            # picked, so both see the same least-loaded receiver and place onto it.
            picked: list[str] = []
            both = asyncio.Event()
            for pool in (pa, pb):
                def gated(pool=pool, real=pool.pick):  # noqa: ANN001, ANN202
                    async def pick(exclude: frozenset[str] = frozenset()):  # noqa: ANN202
                        rx = await real(exclude)
                        if not exclude:
                            picked.append(rx.rid if rx else "")
                            if len(picked) % 2 == 0:
                                both.set()
                            await both.wait()
                        return rx
                    return pick
                pool.pick = gated()  # type: ignore[method-assign]

            # Two at once onto two receivers of one place each: one link each.
            await asyncio.gather(pa.route("r", "s0", offer(0), []),
                                 pb.route("r", "s1", offer(1), []))
            placed = await pa.redis.hgetall(pa._placed("r"))
            assert picked[0] == picked[1], picked  # both picked the same one ...
            assert sorted(placed.values()) == ["rx-1", "rx-2"], placed  # ... one moved on
            both.clear()
            for rid in sockets:
                assert await pa.redis.scard(pa._rx_links(rid)) == 1
            # Two more at once: no room left for either.
            await asyncio.gather(pa.route("r", "s2", offer(2), []),
                                 pb.route("r", "s3", offer(3), []))
            assert len(await pa.redis.hgetall(pa._placed("r"))) == 2
            refused = sorted(p for p, m in byes if m.get("data", {}).get("reason") == NO_RECEIVER)
            assert refused == ["s2", "s3"], byes
            # A link already on a full receiver may offer again (an ICE restart).
            rid = placed["s0/link:0"]
            assert await pb.place("r", "s0/link:0", rid, 1) == 1
            assert await pb.place("r", "s9/link:9", rid, 1) is None
        finally:
            await a.close()
            await b.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_forgetting_a_dead_nodes_member_leaves_a_taken_over_entry_alone(redis_url: str) -> None:
    """The sweep forgets a dead node's member only while the entry is still that node's:
    compared and deleted in one step, so a rejoin through another node meanwhile keeps its
    entry (and its room hears no ``peer-left`` for it)."""
    import json

    from server.redis_store import RedisRegistry
    from server.signalling import SignallingLimits

    async def main() -> None:
        a = RedisRegistry(SignallingLimits(), redis_url)
        try:
            key = a._members("r")
            await a.redis.hset(key, "bob", json.dumps({"node": "dead", "role": "viewer"}))
            await a.redis.hset(key, "ann", json.dumps({"node": "alive", "role": "viewer"}))
            await a.redis.hset(key, "odd", "not json")
            assert await a._forget("r", "bob", "dead")
            assert not await a._forget("r", "ann", "dead")  # taken over: kept
            assert not await a._forget("r", "odd", "dead")
            assert not await a._forget("r", "nobody", "dead")
            assert sorted(await a.redis.hkeys(key)) == ["ann", "odd"]
            assert await a._present("r", "ann") and not await a._present("r", "bob")
        finally:
            await a.close()

    asyncio.run(asyncio.wait_for(main(), 60))
