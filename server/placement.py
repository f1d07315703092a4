"""The receiver pool and link placement on signalling (issue 15).

Receiver workers no longer need to join a room: a pooled worker (``server/pool_worker.py``)
opens one socket, registers (``{"type": "register", "receiver", "token", "capacity"}``,
the token a media token for ``POOL_ROOM``, made from the shared secret) and sends its load
every second (``{"type": "load", "streams", "render_ms", "draining"}``). In a room with no
receiver of its own, signalling shows one virtual peer ``receiver``; a sender's offer of
``link:<name>`` to it is *placed*: on the receiver already serving that link if it is
healthy, else on the least-loaded one with room (links placed here / capacity, then the
reported render ms). Everything else addressed to ``receiver`` in that room (answers,
byes, the viewers' answers for ``view:<link>``) goes to the receiver of that link; what the
receiver sends comes to the room ``from: receiver``. The receivers that serve a room get
its ``peer-joined`` / ``peer-left`` (with ``room``).

No receiver with room: the sender gets ``bye`` with ``reason: "no receiver available"``
and the room's viewers a ``notice`` saying so (the page shows it), never a hang. A receiver
that goes (socket closed) or stops beating for ``heartbeat_ttl_s`` leaves placement: each
of its links' senders gets a ``bye`` (``reason: "receiver gone"``) and offers again, with a
new CONFIG and identity frame (``server/sender_agent.py``), to be placed elsewhere.
The pool lives in this process's memory, or in Redis when signalling is given a Redis URL
(``RedisReceiverPool`` in ``server/redis_store.py``): then any signalling process places
links on the receivers registered with any other.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

POOL_ROOM = "@receivers"  # outside the room-name rule: no room token can be a pool token
VIRTUAL_PEER = "receiver"
NO_RECEIVER = "no receiver available"
HEARTBEAT_TTL_S = 5.0

Deliver = Callable[[str, str, dict], Awaitable[None]]  # (room, peer, message)


@dataclass
class PoolReceiver:
    rid: str
    socket: Any  # a WebSocket
    capacity: int
    streams: int = 0
    render_ms: float = 0.0
    draining: bool = False
    beat: float = field(default_factory=time.monotonic)
    conn: str = ""  # this registration's nonce (Redis: a newer one of the id wins)


def link_of(session: str) -> str | None:
    """The link a session belongs to: ``link:X`` -> ``link:X``, ``view:P/link:X`` -> P's."""
    if session.startswith("view:"):
        return session[len("view:"):]
    return None


class ReceiverPool:
    """The registered receivers and where each link (``room``, ``peer/session``) runs."""

    def __init__(self, deliver: Deliver, heartbeat_ttl_s: float = HEARTBEAT_TTL_S) -> None:
        self.deliver = deliver
        self.ttl = heartbeat_ttl_s
        self.receivers: dict[str, PoolReceiver] = {}
        self.placements: dict[tuple[str, str], str] = {}  # (room, link key) -> receiver id
        self.failures = 0  # placements refused: no receiver with room

    # ---- the registry ------------------------------------------------------------------
    def healthy(self, rx: PoolReceiver) -> bool:
        return not rx.draining and time.monotonic() - rx.beat < self.ttl

    def load(self, rid: str) -> int:
        return sum(1 for r in self.placements.values() if r == rid)

    def choose(self, exclude: frozenset[str] = frozenset()) -> PoolReceiver | None:
        """The least-loaded healthy receiver with room (not in ``exclude``), or None."""
        free = [(self.load(rx.rid) / max(1, rx.capacity), rx.render_ms, rx.rid)
                for rx in self.receivers.values()
                if rx.rid not in exclude and self.healthy(rx)
                and self.load(rx.rid) < rx.capacity]
        return self.receivers[min(free)[2]] if free else None

    def available(self) -> int:
        return sum(1 for rx in self.receivers.values()
                   if self.healthy(rx) and self.load(rx.rid) < rx.capacity)

    def register(self, rx: PoolReceiver) -> None:
        self.receivers[rx.rid] = rx
        log.info("pool: receiver %s registered (capacity %d)", rx.rid, rx.capacity)

    def on_load(self, rid: str, msg: dict) -> None:
        rx = self.receivers.get(rid)
        if rx is None:
            return
        rx.beat = time.monotonic()
        for name in ("streams", "render_ms"):
            value = msg.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                setattr(rx, name, type(getattr(rx, name))(value))
        if isinstance(msg.get("draining"), bool):
            rx.draining = msg["draining"]

    async def remove(self, rid: str, why: str) -> None:
        """``rid`` leaves placement: its links' senders are told to offer again."""
        rx = self.receivers.pop(rid, None)
        moved = [key for key, r in self.placements.items() if r == rid]
        for room, link in moved:
            del self.placements[(room, link)]
            sender, _, session = link.partition("/")
            await self.deliver(room, sender, {"type": "signal", "from": VIRTUAL_PEER, "data": {
                "session": session, "kind": "bye", "reason": "receiver gone"}})
        if rx is not None or moved:
            log.warning("pool: receiver %s left placement (%s); %d links placed again",
                        rid, why, len(moved))

    async def sweep(self) -> None:
        """Take out the receivers that stopped beating (closing their sockets)."""
        now = time.monotonic()
        for rx in [r for r in self.receivers.values() if now - r.beat >= self.ttl]:
            await self.remove(rx.rid, f"no heartbeat for {now - rx.beat:.0f} s")
            try:
                await rx.socket.close(code=1011, reason="heartbeat lost")
            except Exception:  # noqa: BLE001 - already gone
                pass

    # ---- what a receiver's socket does (signalling's ``serve_receiver``) ---------------
    async def connect(self, rx: PoolReceiver) -> PoolReceiver | None:
        """Register ``rx``; returns the registration of that id it replaces here, if any."""
        old = self.receivers.get(rx.rid)
        self.register(rx)
        return old if old is not rx else None

    async def heartbeat(self, rid: str, msg: dict) -> None:
        self.on_load(rid, msg)

    async def disconnect(self, rx: PoolReceiver) -> None:
        """``rx``'s socket closed: it leaves placement unless a newer registration holds
        its id."""
        if self.receivers.get(rx.rid) is rx:
            await self.remove(rx.rid, "disconnected")

    # ---- the state, behind awaitables: this process's dicts here; Redis in
    # ``server/redis_store.py`` (``RedisReceiverPool``) for several signalling processes.
    async def get_receiver(self, rid: str) -> PoolReceiver | None:
        return self.receivers.get(rid)

    async def pick(self, exclude: frozenset[str] = frozenset()) -> PoolReceiver | None:
        return self.choose(exclude)

    async def count_available(self) -> int:
        return self.available()

    async def placement(self, room: str, link: str) -> str | None:
        return self.placements.get((room, link))

    async def place(self, room: str, link: str, rid: str, capacity: int) -> int | None:
        """Put ``link`` on ``rid`` if it is there already or ``rid`` has fewer than
        ``capacity`` links, in one step; returns that receiver's links now, or None (full:
        another placement took its last place since it was picked)."""
        if self.placements.get((room, link)) != rid and self.load(rid) >= capacity:
            return None
        self.placements[(room, link)] = rid
        return self.load(rid)

    async def unplace(self, room: str, link: str, rid: str | None = None) -> None:
        """Forget ``link``'s placement (only if it is on ``rid``, when given)."""
        if rid is None or self.placements.get((room, link)) == rid:
            self.placements.pop((room, link), None)

    async def serving(self, room: str) -> set[str]:
        return {r for (rm, _), r in self.placements.items() if rm == room}

    async def unplace_peer(self, room: str, peer: str) -> None:
        prefix = f"{peer}/"
        for key in [k for k in self.placements if k[0] == room and k[1].startswith(prefix)]:
            del self.placements[key]

    # ---- the rooms' traffic ------------------------------------------------------------
    async def _to_receiver(self, rid: str, msg: dict) -> None:
        rx = self.receivers.get(rid)
        if rx is not None:
            try:
                await rx.socket.send_text(json.dumps(msg))
            except Exception:  # noqa: BLE001 - its own loop removes it
                pass

    async def route(self, room: str, sender: str, data: dict, members: list[dict]) -> None:
        """A room member's signal to the virtual receiver."""
        session = data.get("session")
        if not isinstance(session, str):
            return
        view_of = link_of(session)
        link = view_of if view_of is not None else f"{sender}/{session}"
        rid = await self.placement(room, link)
        if data.get("kind") == "offer" and view_of is None:
            rx = await self.get_receiver(rid) if rid is not None else None
            if rx is None or not self.healthy(rx):
                rx = await self.pick()
            load = None
            tried: set[str] = set()
            while rx is not None:
                if rid is not None and rid != rx.rid:  # moving: off the old receiver
                    await self.unplace(room, link)
                    rid = None
                load = await self.place(room, link, rx.rid, rx.capacity)
                if load is not None:
                    break
                # Full: another signalling process placed onto its last place between the
                # pick and now (issue 15). The next receiver with room, if any.
                tried.add(rx.rid)
                rx = await self.pick(frozenset(tried))
            if rx is None or load is None:
                self.failures += 1
                await self.unplace(room, link)
                log.warning("pool: %s for %s in room %s", NO_RECEIVER, link, room)
                await self.deliver(room, sender, {"type": "signal", "from": VIRTUAL_PEER,
                                                  "data": {"session": session, "kind": "bye",
                                                           "reason": NO_RECEIVER}})
                for m in members:
                    if m["role"] == "viewer":
                        await self.deliver(room, m["peer"], {"type": "notice",
                                                             "error": NO_RECEIVER})
                return
            rid = rx.rid
            log.info("pool: link %s of room %s on receiver %s (%d/%d)", link, room, rid,
                     load, rx.capacity)
        if rid is None:
            return
        if data.get("kind") == "bye" and view_of is None:
            await self.unplace(room, link)
        await self._to_receiver(rid, {"type": "signal", "room": room, "from": sender,
                                      "data": data, "peers": members})

    async def from_receiver(self, rid: str, msg: dict) -> None:
        """A receiver's signal to a peer of a room it serves."""
        room, to, data = msg.get("room"), msg.get("to"), msg.get("data")
        if not (isinstance(room, str) and isinstance(to, str) and isinstance(data, dict)):
            return
        if rid not in await self.serving(room):
            return  # only the rooms it serves
        session = data.get("session")
        if data.get("kind") == "bye" and isinstance(session, str) and link_of(session) is None:
            await self.unplace(room, f"{to}/{session}", rid)
        await self.deliver(room, to, {"type": "signal", "from": VIRTUAL_PEER, "data": data})

    async def room_event(self, room: str, msg: dict) -> None:
        """peer-joined / peer-left of ``room`` to the receivers serving it; a peer that left
        takes its links' placements with it."""
        serving = await self.serving(room)
        if msg.get("type") == "peer-left":
            await self.unplace_peer(room, str(msg.get("peer")))
        for rid in serving:
            await self._to_receiver(rid, {**msg, "room": room})

    def snapshot(self) -> dict[str, dict[tuple[str, ...], float]]:
        return {
            "talkcodec_signalling_pool_receivers": {
                ("healthy",): sum(self.healthy(rx) for rx in self.receivers.values()),
                ("draining",): sum(rx.draining for rx in self.receivers.values())},
            "talkcodec_signalling_placed_links": {(): len(self.placements)},
            "talkcodec_signalling_placement_failures": {(): self.failures},
        }
