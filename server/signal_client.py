"""A Python peer's side of the signalling protocol (see ``signalling.py``).

Reconnection (issue 15): given ``reconnect_s > 0``, a client whose socket drops (its
signalling process died or restarted; not a refusal of its join, 1008/1009) joins the room
again under the same peer id, through its next URL (a list of signalling URLs, or one
Service URL tried again), for up to ``reconnect_s``. ``messages()`` goes on across the gap:
it yields a ``peer-left`` for each peer gone meanwhile and a ``peer-joined`` for each new
one, and ``signal()`` waits for the new socket. The peer connections of its sessions are
not touched: the media flows peer to peer, and the room lives in Redis. A rejoin to the
same signalling process within its grace period resumes (the join carries the ``resume``
key of the last ``joined``): the others hear nothing, and the messages for this peer sent
meanwhile arrive after the new ``joined``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import websockets

log = logging.getLogger(__name__)
FINAL_CLOSE_CODES = frozenset({1000, 1008, 1009})  # normal, policy, too big: no retry
TRY_LATER = 1013  # the server's "try again later" (busy, its store away, a peer id moving)
RETRY_PAUSE_S = 0.3


class JoinRefused(ConnectionError):
    """The server closed the socket instead of ``joined``; ``code`` is its close code."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


class SignalClient:
    """Joins one room and exchanges JSON messages; ``async with`` closes it."""

    def __init__(self, url: str | Sequence[str], room: str, token: str, peer: str, role: str,
                 label: str = "", reconnect_s: float = 0.0) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        self.url, self.room, self.token = self.urls[0], room, token
        self.peer, self.role, self.label = peer, role, label
        self.reconnect_s = reconnect_s
        self.peers: dict[str, dict] = {}
        self.reconnects = 0  # successful rejoins after a drop
        self.resumes = 0  # of those, the ones that resumed the peer's place
        self._resume: str | None = None  # the last ``joined``'s resume key
        self._ws: Any = None
        self._generation = 0  # counts the joins; signal() waits for the next one
        self._closed = False

    async def _join(self, url: str) -> list[dict]:
        ws = await websockets.connect(url, max_size=1 << 20)
        try:
            # The server may refuse before the join is sent (too many sockets from here).
            join = {"type": "join", "room": self.room, "token": self.token, "peer": self.peer,
                    "role": self.role, "label": self.label}
            if self._resume:
                join["resume"] = self._resume
            await ws.send(json.dumps(join))
            reply = json.loads(await ws.recv())
        except websockets.ConnectionClosed as exc:
            await ws.close()
            raise JoinRefused(f"signalling refused the join: {exc.rcvd}",
                              exc.rcvd.code if exc.rcvd is not None else None) from exc
        if reply.get("type") != "joined":
            await ws.close()
            raise ConnectionError(f"unexpected signalling reply: {reply}")
        self._ws, self.url = ws, url
        self._generation += 1
        resume = reply.get("resume")
        self._resume = resume if isinstance(resume, str) else None
        self.resumes += bool(reply.get("resumed"))
        return list(reply["peers"])

    async def connect(self) -> list[dict]:
        """Join the room (through the first URL that takes it); returns the peers already
        there. Raises ConnectionError on refusal. With ``reconnect_s``, a round of URLs that
        all said "try again later" (1013: e.g. this peer id still held by a signalling process
        that a join of ours reached but whose reply we lost) is tried again, for up to
        ``reconnect_s``; an unreachable server or a final refusal fails at once."""
        error: Exception = ConnectionError("no signalling URL")
        deadline = time.monotonic() + self.reconnect_s
        attempt = 0
        while True:
            busy = False  # some URL said "try again later"
            for url in self.urls:
                try:
                    peers = await self._join(url)
                except (OSError, websockets.WebSocketException, ConnectionError) as exc:
                    log.debug("signalling: join of %s through %s: %s", self.peer, url, exc)
                    error = exc
                    busy |= isinstance(exc, JoinRefused) and exc.code == TRY_LATER
                    continue
                for p in peers:
                    self.peers[p["peer"]] = p
                return peers
            attempt += 1
            if not busy or self._closed or time.monotonic() + RETRY_PAUSE_S >= deadline:
                break
            await asyncio.sleep(RETRY_PAUSE_S * min(attempt, 5))
        if isinstance(error, ConnectionError):
            raise error
        raise ConnectionError(f"signalling unreachable: {error}") from error

    async def _rejoin(self) -> list[dict] | None:
        """Join again after a drop; the peer changes meanwhile as messages, or None when it
        gave up."""
        deadline = time.monotonic() + self.reconnect_s
        start = self.urls.index(self.url) + 1 if self.url in self.urls else 0
        attempt = 0
        while not self._closed and time.monotonic() < deadline:
            url = self.urls[(start + attempt) % len(self.urls)]
            attempt += 1
            try:
                peers = await self._join(url)
            except (OSError, websockets.WebSocketException, ConnectionError) as exc:
                log.info("signalling: rejoin of %s through %s: %s", self.peer, url, exc)
                await asyncio.sleep(RETRY_PAUSE_S * min(attempt, 5))
                continue
            self.reconnects += 1
            log.warning("signalling: %s rejoined room %s through %s", self.peer, self.room, url)
            now = {p["peer"]: p for p in peers}
            events = [{"type": "peer-left", "peer": p} for p in self.peers if p not in now]
            events += [{"type": "peer-joined", **info} for p, info in now.items()
                       if p not in self.peers]
            return events
        return None

    async def signal(self, to: str, data: dict) -> None:
        payload = json.dumps({"type": "signal", "to": to, "data": data})
        while True:
            generation = self._generation
            try:
                await self._ws.send(payload)
                return
            except websockets.ConnectionClosed:
                if self._closed or self.reconnect_s <= 0:
                    raise
            # Wait for messages() to join again (it is the one that reconnects).
            deadline = time.monotonic() + self.reconnect_s
            while self._generation == generation and not self._closed:
                if time.monotonic() > deadline:
                    raise ConnectionError("signalling lost and not rejoined")
                await asyncio.sleep(0.05)

    async def messages(self) -> AsyncIterator[dict]:
        """Incoming messages until the socket closes (keeps ``peers`` up to date); with
        ``reconnect_s``, across rejoins."""
        while True:
            ws = self._ws
            try:
                async for raw in ws:
                    msg = json.loads(raw)
                    self._track(msg)
                    yield msg
            except websockets.ConnectionClosed:
                pass
            code = ws.close_code
            if self._closed or self.reconnect_s <= 0 or code in FINAL_CLOSE_CODES:
                return
            log.warning("signalling: %s lost %s (code %s); rejoining", self.peer, self.url, code)
            events = await self._rejoin()
            if events is None:
                return
            for msg in events:
                self._track(msg)
                yield msg

    def _track(self, msg: dict) -> None:
        if msg.get("type") == "peer-joined":
            self.peers[msg["peer"]] = msg
        elif msg.get("type") == "peer-left":
            self.peers.pop(msg.get("peer"), None)  # type: ignore[arg-type]

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()

    async def __aenter__(self) -> SignalClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
