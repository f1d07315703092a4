"""A receiver worker in the pool (issue 15): one socket to signalling, links of any room.

It registers (``server/placement.py``), sends its load every second, and keeps one
``ReceiverWorker`` per room it serves, each on a ``RoomChannel``: the look of a
``SignalClient`` joined to that room as ``receiver``, over the one socket, until the room
has had no link for ``ROOM_IDLE_S``. The receiver is
built and a test frame rendered once, at start, for all rooms. It reconnects (to the next
of its signalling URLs) when the socket drops, under the same id, so the links it runs keep
their placement.
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
from collections.abc import AsyncIterator
from typing import Any

import websockets

from server.ops import RECEIVER_METRICS
from server.placement import VIRTUAL_PEER
from server.receiver_worker import ReceiverWorker, WorkerConfig, self_test
from server.tokens import SCOPE_MEDIA, make_room_token

log = logging.getLogger(__name__)
LOAD_PERIOD_S = 1.0
# A room's worker that has had no link, no session and no message this long is let go (its
# router, relay and queue with it): a long-lived pooled worker serves many rooms in turn.
ROOM_IDLE_S = 30.0
DEFAULT_CAPACITY = int(os.environ.get("TALKCODEC_RECEIVER_CAPACITY", 0) or 8)


def pool_token(secret: bytes) -> str:
    from server.placement import POOL_ROOM

    return make_room_token(secret, POOL_ROOM, scope=SCOPE_MEDIA)


class RoomChannel:
    """One room as seen by a pooled worker: what ``ReceiverWorker`` needs of a client."""

    def __init__(self, pool: PooledReceiver, room: str) -> None:
        self.pool, self.room = pool, room
        self.peer, self.role, self.label = VIRTUAL_PEER, "receiver", "receiver pool"
        self.peers: dict[str, dict] = {}
        self.queue: asyncio.Queue[dict | None] = asyncio.Queue()
        self._ws: object = pool  # "connected" for those who look

    async def connect(self) -> list[dict]:
        return list(self.peers.values())

    async def signal(self, to: str, data: dict) -> None:
        await self.pool.send({"type": "signal", "room": self.room, "to": to, "data": data})

    async def messages(self) -> AsyncIterator[dict]:
        while True:
            msg = await self.queue.get()
            if msg is None:
                return
            if msg.get("type") == "peer-joined":
                self.peers[msg["peer"]] = msg
            elif msg.get("type") == "peer-left":
                self.peers.pop(msg.get("peer"), None)  # type: ignore[arg-type]
            yield msg

    async def close(self) -> None:
        self.queue.put_nowait(None)


class PooledReceiver:
    """Registers with signalling and serves every link placed on it."""

    def __init__(self, urls: list[str], secret: bytes, config: WorkerConfig | None = None,
                 receiver_id: str = "", capacity: int = DEFAULT_CAPACITY) -> None:
        self.urls, self.token = urls, pool_token(secret)
        self.config = config or WorkerConfig()
        self.rid = receiver_id or f"{socket.gethostname()[:40]}-{secrets.token_hex(3)}"
        self.capacity = capacity
        self.receiver_name = self.config.receiver or ""
        self.self_test_ms = self_test(self.receiver_name or _default_name(),
                                      self.config.low_latency)
        self.receiver_name = self.receiver_name or _default_name()
        self.rooms: dict[str, tuple[ReceiverWorker, asyncio.Task]] = {}
        self.room_seen: dict[str, float] = {}  # room -> monotonic time of its last message
        self.registered = False
        self.draining = False
        self._ws: Any = None

    # ---- what a worker looks like to the CLI and ops ----------------------------------
    @property
    def links(self) -> dict[str, Any]:
        return {f"{room}/{k}": link for room, (w, _) in self.rooms.items()
                for k, link in w.links.items()}

    def readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining"
        if not self.registered:
            return False, "not registered with signalling"
        return True, ""

    def snapshot(self) -> dict[str, dict[tuple[str, ...], float]]:
        snaps = [w.snapshot() for w, _ in self.rooms.values()]
        out: dict[str, dict[tuple[str, ...], float]] = {}
        for m in RECEIVER_METRICS:  # sums over the rooms' workers, label by label
            out[m.name] = {} if m.labels else {(): 0.0}
            for snap in snaps:
                for labels, value in snap[m.name].items():
                    out[m.name][labels] = out[m.name].get(labels, 0.0) + value
        out["talkcodec_receiver_render_ms"] = {(): self.render_ms()}
        out["talkcodec_receiver_draining"] = {(): float(self.draining)}
        return out

    def render_ms(self) -> float:
        ms = [link.render_ms for link in self.links.values() if link.frames_out]
        return sum(ms) / len(ms) if ms else 0.0

    async def drain(self, grace_s: float) -> None:
        self.draining = True
        for w, _ in self.rooms.values():
            w.draining = True
        await self._send_load()
        deadline = time.monotonic() + grace_s
        while self.links and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        for w, _ in list(self.rooms.values()):
            for link in list(w.links.values()):
                await w.drop_link(link)

    # ---- the socket ---------------------------------------------------------------------
    async def send(self, msg: dict) -> None:
        if self._ws is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._ws.send(json.dumps(msg))

    async def _send_load(self) -> None:
        await self.send({"type": "load", "streams": len(self.links),
                         "render_ms": self.render_ms(), "draining": self.draining})

    async def run(self) -> None:
        """Serve until cancelled, reconnecting through the URLs in turn."""
        attempt = 0
        while True:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            try:
                await self._serve(url)
                attempt -= 1  # it was up: try the same one first
            except (OSError, websockets.WebSocketException, ConnectionError) as exc:
                log.info("pool: signalling %s: %s", url, exc)
            self.registered = False
            await asyncio.sleep(0.5)

    async def _serve(self, url: str) -> None:
        async with websockets.connect(url, max_size=1 << 20) as ws:
            await ws.send(json.dumps({"type": "register", "receiver": self.rid,
                                      "token": self.token, "capacity": self.capacity}))
            reply = json.loads(await ws.recv())
            if reply.get("type") != "registered":
                raise ConnectionError(f"registration refused: {reply}")
            self._ws, self.registered = ws, True
            log.info("pool: receiver %s registered at %s", self.rid, url)
            beat = asyncio.ensure_future(self._beat())
            try:
                async for raw in ws:
                    self._dispatch(json.loads(raw))
            finally:
                beat.cancel()
                self._ws = None

    async def _beat(self) -> None:
        while True:
            await self._send_load()
            await self.forget_idle_rooms()
            await asyncio.sleep(LOAD_PERIOD_S)

    async def forget_idle_rooms(self, idle_s: float = ROOM_IDLE_S) -> list[str]:
        """Let go of the room workers that ended or sat idle ``idle_s``; their rooms."""
        now = time.monotonic()
        gone = []
        for room, (worker, task) in list(self.rooms.items()):
            idle = (not worker.links and not worker.router.pcs
                    and now - self.room_seen.get(room, now) > idle_s)
            if task.done() or idle:
                del self.rooms[room]
                await worker.client.close()  # its router's loop ends: the worker's task too
                self.room_seen.pop(room, None)
                gone.append(room)
        if gone:
            log.info("pool: %d idle rooms let go, %d served", len(gone), len(self.rooms))
        return gone

    def _dispatch(self, msg: dict) -> None:
        room = msg.pop("room", None)
        if not isinstance(room, str):
            return
        peers = msg.pop("peers", None)
        entry = self.rooms.get(room)
        if entry is None or entry[1].done():
            if msg.get("type") != "signal":
                return  # a room event of a room it no longer serves
            channel = RoomChannel(self, room)
            worker = ReceiverWorker(channel, self.config, self_test_ms=self.self_test_ms)  # type: ignore[arg-type]
            worker.draining = self.draining
            entry = self.rooms[room] = (worker, asyncio.ensure_future(worker.run()))
        self.room_seen[room] = time.monotonic()
        worker = entry[0]
        channel = worker.client  # type: ignore[assignment]
        if isinstance(peers, list):
            channel.peers = {p["peer"]: p for p in peers if isinstance(p, dict) and "peer" in p}
            worker.viewers = {p for p, info in channel.peers.items()
                              if info.get("role") == "viewer"}
        channel.queue.put_nowait(msg)


def _default_name() -> str:
    from codec.receiver.registry import default_receiver_name

    return default_receiver_name()
