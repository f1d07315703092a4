"""Signalling's shared state in Redis (redis-py asyncio), so that any number of signalling
processes given the same URL serve any room (issue 15).

``RedisStore``: the rooms API's store: the rooms that one signalling process makes are seen
by every other one.

A room is the key ``<prefix>room:<name>`` (a JSON record), made with ``SET NX`` and the
room's TTL as its expiry, so Redis forgets it when its tokens stop working. Any Redis
error is ``StoreUnavailable`` (the API answers 503 with it); redis-py connects again on
the next command, so the API recovers by itself when Redis is back.

``RedisRegistry``: room membership and the relay. Each signalling process is a *node*
(hostname-pid-random) that beats every second in ``<prefix>nodes`` (node -> unix time) and
subscribes to its own channel ``<prefix>node:<node>``. A member is a field of
``<prefix>members:<room>`` (peer -> role, label, node), added with ``HSETNX`` (one peer id
per room, across processes); a message to a peer whose socket is on another node is
published on that node's channel (one subscription per process, whatever the number of
rooms and peers, rather than one channel per peer). A node silent for ``NODE_TTL_S`` is
gone: a client rejoining elsewhere under the same peer id takes its entry over at once,
and ``REJOIN_GRACE_S`` later another node forgets the members nobody took over (their room
hears ``peer-left``). A member whose socket dropped (away, ``signalling.py``) is marked so
in its entry: its client may resume on its node, or rejoin on another, which takes the
entry over at once (the away one then ends without a ``peer-left``). While Redis is down
a join is refused (1013 "signalling store unavailable") within the client timeout; when it
comes back each node writes its own members again (Redis without persistence forgets them).

``RedisReceiverPool``: the receiver registry and the placements: ``<prefix>receivers``
(receiver id -> capacity, streams, render ms, draining, unix beat, node, registration
nonce), ``<prefix>placed:<room>`` (link -> receiver) and ``<prefix>rxlinks:<receiver>`` (its
links; its load is their count). A placement checks the receiver's capacity and writes in
one Lua script, so two processes placing at the same instant cannot put a link more than
its capacity on a receiver: the later one tries the next receiver with room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.placement import VIRTUAL_PEER, PoolReceiver, ReceiverPool
from server.room_store import RoomRecord, RoomStore, StoreUnavailable
from server.signalling import (
    CLOSE_TRY_LATER,
    Member,
    PolicyError,
    RoomRegistry,
    SignallingLimits,
)

log = logging.getLogger(__name__)

REDIS_URL_ENV = "TALKCODEC_REDIS_URL"
PREFIX = "talkcodec:"
NODE_TTL_S = 3.0  # a signalling process silent this long is gone
REJOIN_GRACE_S = 10.0  # then its members wait this long for their clients to rejoin elsewhere
BEAT_S = 1.0


@contextlib.contextmanager
def _store() -> Iterator[None]:
    """Any Redis error as ``StoreUnavailable``."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"redis: {exc}") from exc


def _client(url: str, timeout_s: float | None) -> Any:  # decoded str replies
    return aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=2.0,
                                   decode_responses=True)


class RedisStore(RoomStore):
    def __init__(self, url: str, prefix: str = PREFIX, timeout_s: float = 2.0) -> None:
        self.url, self.prefix = url, prefix
        self.redis = _client(url, timeout_s)

    def _key(self, name: str) -> str:
        return f"{self.prefix}room:{name}"

    async def create_room(self, record: RoomRecord) -> bool:
        ttl = max(1, int(record.expires_unix - time.time()))
        value = json.dumps({"name": record.name, "expires_unix": record.expires_unix,
                            "created_unix": record.created_unix})
        try:
            return bool(await self.redis.set(self._key(record.name), value, nx=True, ex=ttl))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def get_room(self, name: str) -> RoomRecord | None:
        try:
            raw = await self.redis.get(self._key(name))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        if raw is None:
            return None
        data = json.loads(raw)
        return RoomRecord(data["name"], int(data["expires_unix"]), int(data["created_unix"]))

    async def count_rooms(self) -> int:
        try:
            n = 0
            async for _ in self.redis.scan_iter(match=f"{self.prefix}room:*", count=500):
                n += 1
            return n
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def close(self) -> None:
        await self.redis.aclose()


def _described(raw: str) -> dict:
    info = json.loads(raw)
    return {"peer": info["peer"], "role": info["role"], "label": info["label"]}


async def _send_text(ws: Any, message: dict) -> None:
    try:
        await ws.send_text(json.dumps(message))
    except Exception:  # noqa: BLE001 - a peer that went away is handled by its own loop
        pass


class RedisRegistry(RoomRegistry):
    """Room membership in Redis and the relay between signalling processes (see above)."""

    def __init__(self, limits: SignallingLimits, url: str, prefix: str = PREFIX,
                 timeout_s: float = 2.0) -> None:
        self.url, self.prefix = url, prefix
        self.redis = _client(url, timeout_s)
        self.node = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self.timeout_s = timeout_s
        self._tasks: list[asyncio.Task] = []
        self._subscribed = asyncio.Event()
        self._beaten = False
        self._down_logged = False
        super().__init__(limits)

    def make_pool(self) -> ReceiverPool:
        return RedisReceiverPool(self)

    # ---- keys ---------------------------------------------------------------------------
    def _members(self, room: str) -> str:
        return f"{self.prefix}members:{room}"

    def _node_peers(self, node: str) -> str:
        return f"{self.prefix}nodepeers:{node}"

    def channel(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    @property
    def _nodes(self) -> str:
        return f"{self.prefix}nodes"

    @property
    def _rooms(self) -> str:
        return f"{self.prefix}rooms"

    def _entry(self, room: str, m: Member) -> str:
        return json.dumps({"peer": m.peer, "role": m.role, "label": m.label, "node": self.node,
                           "away": m.away})

    # ---- background: the node's beat and its channel -------------------------------------
    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._listen()),
                           asyncio.ensure_future(self._beat())]

    async def close(self) -> None:
        await super().close()
        for task in self._tasks:
            task.cancel()
        await self.redis.aclose()

    def _down(self, what: str, exc: Exception) -> None:
        if not self._down_logged:
            log.warning("signalling: Redis unavailable (%s): %s", what, exc)
        self._down_logged = True

    async def _listen(self) -> None:
        listener = _client(self.url, None)
        while True:
            pubsub = listener.pubsub()
            try:
                await pubsub.subscribe(self.channel(self.node))
                self._subscribed.set()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        await self._on_bus(json.loads(msg["data"]))
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                self._down("subscription", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _beat(self) -> None:
        while True:
            try:
                created = await self.redis.hset(self._nodes, self.node, str(time.time()))
                if created and self._beaten:
                    await self._resync()  # Redis forgot us (restarted, or we were silent)
                self._beaten = True
                if self._down_logged:
                    log.warning("signalling: Redis is back")
                self._down_logged = False
            except (RedisError, OSError) as exc:
                self._down("heartbeat", exc)
            await asyncio.sleep(BEAT_S)

    async def _resync(self) -> None:
        """Write this node's members again."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room, members in self.rooms.items():
                for m in members.values():
                    pipe.hsetnx(self._members(room), m.peer, self._entry(room, m))
                    pipe.sadd(self._node_peers(self.node), f"{room}/{m.peer}")
                pipe.sadd(self._rooms, room)
            await pipe.execute()
        log.warning("signalling: wrote %d rooms' members to Redis again", len(self.rooms))

    async def _on_bus(self, env: dict) -> None:
        msg = env.get("msg")
        if not isinstance(msg, dict):
            return
        if env.get("to") == "peers":
            room = env.get("room")
            for peer in env.get("peers") or ():
                member = self.get(str(room), str(peer))
                if member is not None:
                    await member.send(msg)
        elif env.get("to") == "rx":
            rx = self.pool.receivers.get(str(env.get("rid")))
            if rx is not None:
                await _send_text(rx.socket, msg)

    async def publish(self, node: str, env: dict) -> None:
        with _store():
            await self.redis.publish(self.channel(node), json.dumps(env))

    async def _ready(self) -> None:
        await self.start()
        try:
            await asyncio.wait_for(self._subscribed.wait(), self.timeout_s)
        except TimeoutError as exc:
            raise StoreUnavailable("redis: not subscribed (Redis unreachable)") from exc

    # ---- membership ---------------------------------------------------------------------
    async def _entries(self, room: str) -> dict[str, str]:
        with _store():
            return dict(await self.redis.hgetall(self._members(room)))

    async def node_alive(self, node: str) -> bool:
        with _store():
            beat = await self.redis.hget(self._nodes, node)
        return beat is not None and time.time() - float(beat) < NODE_TTL_S

    async def join(self, room: str, member: Member) -> list[dict]:
        await self._ready()
        key, entry = self._members(room), self._entry(room, member)
        with _store():
            if room not in self.rooms and not await self.redis.exists(key):
                if await self.redis.scard(self._rooms) >= self.limits.max_rooms:
                    raise PolicyError("too many rooms")
            if not await self.redis.hsetnx(key, member.peer, entry):
                old = json.loads(await self.redis.hget(key, member.peer) or "{}")
                node = old.get("node")
                if not node or node == self.node:
                    raise PolicyError("peer id already in room")
                if not old.get("away") and await self.node_alive(node):
                    # Maybe its client rejoining from a process that just died: try later.
                    raise PolicyError("peer id already in room on another signalling "
                                      "process; try again shortly", CLOSE_TRY_LATER)
                # Its signalling process is gone, or its socket there dropped (away): this
                # is its client rejoining here. The away one there ends silently: its
                # process finds the entry taken when the grace period is over.
                await self.redis.hset(key, member.peer, entry)
                await self.redis.srem(self._node_peers(node), f"{room}/{member.peer}")
                member.rejoined = True
        try:
            with _store():
                if await self.redis.hlen(key) > self.limits.max_peers_per_room:
                    await self.redis.hdel(key, member.peer)
                    raise PolicyError("room full")
                await self.redis.sadd(self._rooms, room)
                await self.redis.sadd(self._node_peers(self.node), f"{room}/{member.peer}")
                entries = await self._entries(room)
        except StoreUnavailable:
            # The entry is ours but the join failed (a Redis timeout under load): left
            # there, it would refuse this peer id's retries ("on another signalling
            # process") for as long as this process lives.
            with contextlib.suppress(RedisError, OSError):
                if await self.redis.hget(key, member.peer) == entry:
                    await self.redis.hdel(key, member.peer)
            raise
        self.rooms.setdefault(room, {})[member.peer] = member
        return [_described(v) for p, v in entries.items() if p != member.peer]

    async def away_changed(self, room: str, member: Member) -> None:
        """Write ``member``'s entry again (its away flag), if this process still holds it."""
        key = self._members(room)
        with _store():
            raw = await self.redis.hget(key, member.peer)
            if raw is not None and json.loads(raw).get("node") == self.node:
                await self.redis.hset(key, member.peer, self._entry(room, member))

    async def leave(self, room: str, member: Member) -> bool:
        local = self.rooms.get(room, {})
        if local.get(member.peer) is not member:
            return False
        del local[member.peer]
        if not local:
            self.rooms.pop(room, None)
        return await self._forget(room, member.peer, self.node)

    async def _forget(self, room: str, peer: str, node: str) -> bool:
        """Remove ``peer``'s entry if ``node`` holds it: compared and deleted in one step,
        so a join that takes the entry over meanwhile (another node) keeps its entry."""
        with _store():
            await self.redis.srem(self._node_peers(node), f"{room}/{peer}")
            return bool(await self.redis.eval(_FORGET_SCRIPT, 2, self._members(room),
                                              self._rooms, peer, node, room))

    async def _present(self, room: str, peer: str) -> bool:
        """``peer`` has an entry in ``room`` (it joined again since it was forgotten)."""
        with _store():
            return bool(await self.redis.hexists(self._members(room), peer))

    async def members(self, room: str) -> list[dict]:
        try:
            return [_described(v) for v in (await self._entries(room)).values()]
        except StoreUnavailable as exc:  # the peers here still reach each other
            self._down("members", exc)
            return await super().members(room)

    async def _send_many(self, room: str, peers: list[str], message: dict) -> None:
        try:
            entries = await self._entries(room)
        except StoreUnavailable as exc:
            self._down("relay", exc)
            entries = {}
        remote: dict[str, list[str]] = {}
        for peer in peers:
            local = self.get(room, peer)
            node = json.loads(entries[peer])["node"] if peer in entries else None
            if local is not None and (node in (None, self.node) or not local.away):
                await local.send(message)  # kept for it while away
            elif node is not None:
                remote.setdefault(node, []).append(peer)
        for node, names in remote.items():
            try:
                await self.publish(node, {"to": "peers", "room": room, "peers": names,
                                          "msg": message})
            except StoreUnavailable as exc:
                self._down("relay", exc)

    async def deliver(self, room: str, peer: str, message: dict) -> None:
        await self._send_many(room, [peer], message)

    async def broadcast(self, room: str, message: dict, exclude: str | None = None) -> None:
        try:
            peers = list(await self._entries(room))
        except StoreUnavailable:
            peers = list(self.rooms.get(room, {}))
        await self._send_many(room, [p for p in peers if p != exclude], message)

    async def sweep(self) -> None:
        """Forget the members of the nodes silent past ``NODE_TTL_S + REJOIN_GRACE_S``
        that nobody took over (one node claims each dead node with ``HDEL``)."""
        with _store():
            nodes = await self.redis.hgetall(self._nodes)
        now = time.time()
        for node, beat in nodes.items():
            if node == self.node or now - float(beat) < NODE_TTL_S + REJOIN_GRACE_S:
                continue
            with _store():
                if not await self.redis.hdel(self._nodes, node):
                    continue  # another node claimed it
                items = await self.redis.smembers(self._node_peers(node))
            log.warning("signalling: node %s gone (silent %.0f s); forgetting its %d members",
                        node, now - float(beat), len(items))
            for item in items:
                room, _, peer = item.partition("/")
                if await self._forget(room, peer, node) and not await self._present(room, peer):
                    await self.broadcast(room, {"type": "peer-left", "peer": peer})
                    await self.pool.room_event(room, {"type": "peer-left", "peer": peer})
            with _store():
                await self.redis.delete(self._node_peers(node))


# KEYS: members:<room>, rooms; ARGV: peer, node, room. -> 1: the entry was node's, deleted.
_FORGET_SCRIPT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local ok, entry = pcall(cjson.decode, raw)
if not ok or type(entry) ~= 'table' or entry['node'] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[3]) end
return 1
"""

# KEYS: rxlinks:<receiver>, placed:<room>; ARGV: "room|link", link, receiver, capacity.
# -> the receiver's links after placing, or -1 (full, and the link not on it already).
_PLACE_SCRIPT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0
   and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return -1
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return redis.call('SCARD', KEYS[1])
"""


class RedisReceiverPool(ReceiverPool):
    """The receiver registry and placements in Redis; ``receivers`` holds the receivers
    whose sockets are on this process."""

    def __init__(self, registry: RedisRegistry) -> None:
        super().__init__(registry.deliver)
        self.registry, self.redis, self.prefix = registry, registry.redis, registry.prefix
        self._figures = {"healthy": 0, "draining": 0, "placed": 0}

    @property
    def _receivers(self) -> str:
        return f"{self.prefix}receivers"

    def _placed(self, room: str) -> str:
        return f"{self.prefix}placed:{room}"

    def _rx_links(self, rid: str) -> str:
        return f"{self.prefix}rxlinks:{rid}"

    def _entry(self, rx: PoolReceiver) -> str:
        return json.dumps({"rid": rx.rid, "capacity": rx.capacity, "streams": rx.streams,
                           "render_ms": rx.render_ms, "draining": rx.draining,
                           "beat": time.time(), "node": self.registry.node, "conn": rx.conn})

    @staticmethod
    def _parse(raw: str) -> tuple[PoolReceiver, dict]:
        info = json.loads(raw)
        rx = PoolReceiver(info["rid"], None, int(info["capacity"]), int(info["streams"]),
                          float(info["render_ms"]), bool(info["draining"]),
                          time.monotonic() - (time.time() - float(info["beat"])),
                          info.get("conn", ""))
        return rx, info

    # ---- a receiver's socket here --------------------------------------------------------
    async def connect(self, rx: PoolReceiver) -> PoolReceiver | None:
        await self.registry._ready()
        rx.conn = secrets.token_hex(6)
        with _store():
            await self.redis.hset(self._receivers, rx.rid, self._entry(rx))
        old = self.receivers.get(rx.rid)
        self.register(rx)
        return old if old is not rx else None

    async def heartbeat(self, rid: str, msg: dict) -> None:
        self.on_load(rid, msg)
        rx = self.receivers.get(rid)
        if rx is None:
            return
        try:
            with _store():
                await self.redis.hset(self._receivers, rid, self._entry(rx))
        except StoreUnavailable as exc:
            self.registry._down("receiver heartbeat", exc)

    async def disconnect(self, rx: PoolReceiver) -> None:
        if self.receivers.get(rx.rid) is rx:
            del self.receivers[rx.rid]
        try:
            with _store():
                raw = await self.redis.hget(self._receivers, rx.rid)
            if raw is not None and json.loads(raw).get("conn") == rx.conn:
                await self.remove(rx.rid, "disconnected")
        except StoreUnavailable as exc:
            log.warning("pool: receiver %s left while Redis was down: %s", rx.rid, exc)

    async def remove(self, rid: str, why: str) -> None:
        with _store():
            claimed = await self.redis.hdel(self._receivers, rid)
            items = await self.redis.smembers(self._rx_links(rid))
            await self.redis.delete(self._rx_links(rid))
        moved = 0
        for item in items:
            room, _, link = item.partition("|")
            with _store():
                if await self.redis.hget(self._placed(room), link) != rid:
                    continue
                await self.redis.hdel(self._placed(room), link)
            moved += 1
            sender, _, session = link.partition("/")
            await self.deliver(room, sender, {"type": "signal", "from": VIRTUAL_PEER, "data": {
                "session": session, "kind": "bye", "reason": "receiver gone"}})
        if claimed or moved:
            log.warning("pool: receiver %s left placement (%s); %d links placed again",
                        rid, why, moved)

    async def sweep(self) -> None:
        with _store():
            entries = await self.redis.hgetall(self._receivers)
        now = time.time()
        healthy = draining = 0
        for rid, raw in entries.items():
            info = json.loads(raw)
            age = now - float(info["beat"])
            if age < self.ttl:
                healthy += not info["draining"]
                draining += bool(info["draining"])
                continue
            await self.remove(rid, f"no heartbeat for {age:.0f} s")
            local = self.receivers.pop(rid, None)
            if local is not None:
                with contextlib.suppress(Exception):
                    await local.socket.close(code=1011, reason="heartbeat lost")
        placed = 0
        if entries:
            with _store():
                async with self.redis.pipeline(transaction=False) as pipe:
                    for rid in entries:
                        pipe.scard(self._rx_links(rid))
                    placed = sum(await pipe.execute())
        self._figures = {"healthy": healthy, "draining": draining, "placed": placed}

    # ---- the state -----------------------------------------------------------------------
    async def get_receiver(self, rid: str) -> PoolReceiver | None:
        with _store():
            raw = await self.redis.hget(self._receivers, rid)
        return None if raw is None else self._parse(raw)[0]

    async def _free(self) -> list[tuple[float, float, str]]:
        """(load / capacity, render ms, id) of the healthy receivers with room."""
        with _store():
            entries = await self.redis.hgetall(self._receivers)
            async with self.redis.pipeline(transaction=False) as pipe:
                for rid in entries:
                    pipe.scard(self._rx_links(rid))
                loads = await pipe.execute()
        free = []
        for (rid, raw), load in zip(entries.items(), loads, strict=True):
            rx, _ = self._parse(raw)
            if self.healthy(rx) and load < rx.capacity:
                free.append((load / max(1, rx.capacity), rx.render_ms, rid))
        return free

    async def pick(self, exclude: frozenset[str] = frozenset()) -> PoolReceiver | None:
        free = [f for f in await self._free() if f[2] not in exclude]
        return await self.get_receiver(min(free)[2]) if free else None

    async def count_available(self) -> int:
        return len(await self._free())

    async def placement(self, room: str, link: str) -> str | None:
        with _store():
            rid = await self.redis.hget(self._placed(room), link)
        return rid if isinstance(rid, str) else None

    async def place(self, room: str, link: str, rid: str, capacity: int) -> int | None:
        # One Lua script, so Redis runs the capacity check and the two writes as one step:
        # two signalling processes placing at the same instant cannot both take a
        # receiver's last place (the loser gets None and tries the next receiver).
        with _store():
            load = await self.redis.eval(_PLACE_SCRIPT, 2, self._rx_links(rid),
                                         self._placed(room), f"{room}|{link}", link, rid,
                                         str(int(capacity)))
        return None if int(load) < 0 else int(load)

    async def unplace(self, room: str, link: str, rid: str | None = None) -> None:
        with _store():
            current = await self.redis.hget(self._placed(room), link)
            if current is None or (rid is not None and current != rid):
                return
            await self.redis.hdel(self._placed(room), link)
            await self.redis.srem(self._rx_links(current), f"{room}|{link}")

    async def serving(self, room: str) -> set[str]:
        with _store():
            return set(await self.redis.hvals(self._placed(room)))

    async def unplace_peer(self, room: str, peer: str) -> None:
        with _store():
            links = await self.redis.hgetall(self._placed(room))
        for link in links:
            if link.startswith(f"{peer}/"):
                await self.unplace(room, link)

    async def _to_receiver(self, rid: str, msg: dict) -> None:
        local = self.receivers.get(rid)
        if local is not None:
            await _send_text(local.socket, msg)
            return
        with _store():
            raw = await self.redis.hget(self._receivers, rid)
        if raw is not None:
            await self.registry.publish(json.loads(raw)["node"], {"to": "rx", "rid": rid,
                                                                   "msg": msg})

    def snapshot(self) -> dict[str, dict[tuple[str, ...], float]]:
        f = self._figures  # as of the last sweep (every second)
        return {
            "talkcodec_signalling_pool_receivers": {("healthy",): f["healthy"],
                                                    ("draining",): f["draining"]},
            "talkcodec_signalling_placed_links": {(): f["placed"]},
            "talkcodec_signalling_placement_failures": {(): self.failures},
        }
