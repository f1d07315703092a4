"""Signalling rooms over WebSocket: join, leave, and relay of SDP offers/answers and ICE.

Protocol (JSON text messages on ``/ws``):

- client -> server ``{"type": "join", "room", "token", "peer", "role", "label"?}`` first;
  server -> client ``{"type": "joined", "peer", "peers": [{"peer", "role", "label"}]}``,
  others get ``{"type": "peer-joined", ...}``; on disconnect/``{"type": "leave"}`` they get
  ``{"type": "peer-left", "peer"}``.
- client -> server ``{"type": "signal", "to": peer, "data": {...}}``; the server relays
  ``{"type": "signal", "from": peer, "data": {...}}`` to that peer of the same room only.
- Resuming: ``joined`` carries ``"resume": key``. A socket that drops without a close of its
  own (no ``leave``, not code 1000/1001: a network blip, a laptop waking up) leaves its peer
  *away* for ``away_grace_s``: the others hear nothing, and the messages for it are kept
  (at most ``AWAY_OUTBOX`` of them). A join of the same peer with ``"resume": key`` in that
  time takes the place back: ``joined`` says ``"resumed": true`` and the kept messages
  follow; nobody hears ``peer-left`` or ``peer-joined``. Once the grace is over, or when
  the same peer joins without the key, the others hear ``peer-left`` as before.

Security: the room token is checked (HMAC, see ``tokens.py``) before anything of the room
is revealed; the roles that receive other people's media (``MEDIA_ROLES``) need a media
token, which the page's URL never carries; a browser's Origin must be one of the configured
public origins (never compared with the request's own Host, which a DNS-rebinding page
controls); messages are bounded in size, nesting and rate, rooms in size and number.
Violations close the socket with code 1008/1009; any other error closes it with 1011 and
one log line. One client address may hold ``max_sockets_per_ip`` open sockets; past that a
new one is closed at once with 1013 ("too many connections from this address").
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from server.placement import POOL_ROOM, VIRTUAL_PEER, PoolReceiver, ReceiverPool
from server.room_store import StoreUnavailable
from server.tokens import SCOPE_MEDIA, token_scope

log = logging.getLogger(__name__)

ROLES = ("sender", "receiver", "viewer", "agent")
# Roles that receive other people's media: the receiver worker (the senders' links) and a
# sender agent (the browsers' cameras). They need a media token, not the page's room token.
MEDIA_ROLES = frozenset({"receiver", "agent"})
NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013
# Closes a client makes on purpose (normal, going away: a tab closed): no grace period.
CLIENT_CLOSES = frozenset({1000, 1001})
AWAY_OUTBOX = 256  # messages kept for an away peer; past that it can no longer resume


@dataclass
class SignallingLimits:
    max_message_bytes: int = 64 * 1024
    messages_per_s: float = 40.0
    burst: int = 80
    max_peers_per_room: int = 16
    max_rooms: int = 256
    join_timeout_s: float = 10.0
    # Open sockets from one client address (joined or not); 0 = no cap. Behind a reverse
    # proxy the address is the proxy's unless it sends X-Forwarded-For from an address
    # uvicorn trusts (its forwarded_allow_ips, env FORWARDED_ALLOW_IPS; loopback by default).
    max_sockets_per_ip: int = 32
    # How long a peer whose socket dropped stays in its room, away, for its client to
    # resume (0: it leaves at once).
    away_grace_s: float = 15.0


@dataclass
class SignallingConfig:
    secret: bytes
    # Origins a browser may connect from (the server's public origins, see
    # ``default_origins``); "*" allows any. Clients without an Origin header (Python peers)
    # are allowed: Origin protects browsers against cross-site use.
    allowed_origins: frozenset[str] = frozenset()
    limits: SignallingLimits = field(default_factory=SignallingLimits)
    # Receiver workers register in a pool and serve links of any room (server/placement.py);
    # off: only a receiver that joins the room itself (the one-room demo, local_call).
    receiver_pool: bool = False
    # Redis (``redis://host:6379/0``): membership, the receiver pool and the relay between
    # signalling processes live there, so any number of them serve any room; "" = memory.
    redis_url: str = ""


@dataclass
class Member:
    peer: str
    role: str
    label: str
    socket: WebSocket
    rejoined: bool = False  # took over its entry from a signalling process that died
    resume_key: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    # While away (its socket dropped, within the grace period): the messages for it.
    outbox: list[dict] | None = None
    overflowed: bool = False  # more than AWAY_OUTBOX were kept: it cannot resume
    expiry: asyncio.Task | None = None
    # Until its ``joined`` reply is sent (``open``): the messages for it, sent after. A
    # broadcast between its entry and that reply reached the client first, which then
    # failed its join ("unexpected signalling reply", seen in a loaded CI run).
    held: list[dict] | None = None

    @property
    def away(self) -> bool:
        return self.outbox is not None

    async def send(self, message: dict) -> None:
        if self.held is not None:
            if len(self.held) < AWAY_OUTBOX:
                self.held.append(message)
            return
        if self.outbox is not None:
            if len(self.outbox) < AWAY_OUTBOX:
                self.outbox.append(message)
            else:
                self.overflowed = True
            return
        await self._write(message)

    async def open(self, joined: dict) -> None:
        """Send the ``joined`` reply, then what came for it meanwhile, in order."""
        await self._write(joined)
        while self.held:
            await self._write(self.held.pop(0))
        self.held = None

    async def _write(self, message: dict) -> None:
        try:
            await self.socket.send_text(json.dumps(message))
        except Exception:  # noqa: BLE001 - a peer that went away is handled by its own loop
            pass

    def go_away(self) -> None:
        self.outbox = []

    async def come_back(self, socket: WebSocket) -> list[dict]:
        """Its client is back on ``socket``: the kept messages, to send after ``joined``."""
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        kept, self.outbox, self.socket = self.outbox or [], None, socket
        return kept


class RateLimiter:
    """Token bucket: ``allow()`` is False once the peer sends faster than the rate."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class PolicyError(Exception):
    """A client broke the protocol or a limit; the socket is closed with ``code``."""

    def __init__(self, reason: str, code: int = CLOSE_POLICY) -> None:
        super().__init__(reason)
        self.code = code


class RoomRegistry:
    """The rooms and their members, in this process's memory (one signalling process).

    ``rooms`` holds the members whose sockets are on this process. ``RedisRegistry``
    (``server/redis_store.py``) keeps the membership and the receiver pool in Redis and
    relays messages to peers on other signalling processes; the socket handler uses only
    the awaitable methods below, so both serve it the same way.
    """

    def __init__(self, limits: SignallingLimits) -> None:
        self.limits = limits
        self.rooms: dict[str, dict[str, Member]] = {}
        self.lock = asyncio.Lock()
        self.addresses = AddressCounter(limits.max_sockets_per_ip)
        self.pool = self.make_pool()
        self.background: list[asyncio.Task] = []  # the sweep, started with the first socket

    def make_pool(self) -> ReceiverPool:
        return ReceiverPool(self.deliver)

    async def start(self) -> None:
        """Background work a shared registry needs (nothing here)."""

    async def close(self) -> None:
        """Stop the background tasks (the sweep; a shared registry's own, the away members'
        grace periods: a process shutting down ends them with its sockets)."""
        for task in self.background:
            task.cancel()
        self.background.clear()
        for members in self.rooms.values():
            for member in members.values():
                if member.expiry is not None:
                    member.expiry.cancel()
                    member.expiry = None

    async def sweep(self) -> None:
        """Called every second: a shared registry forgets dead processes' members."""

    async def deliver(self, room: str, peer: str, message: dict) -> None:
        """Send ``message`` to ``peer`` of ``room``, wherever its socket is."""
        member = self.get(room, peer)
        if member is not None:
            await member.send(message)

    async def broadcast(self, room: str, message: dict, exclude: str | None = None) -> None:
        for m in list(self.rooms.get(room, {}).values()):
            if m.peer != exclude:
                await m.send(message)

    async def members(self, room: str) -> list[dict]:
        return [_describe(m) for m in self.rooms.get(room, {}).values()]

    async def join(self, room: str, member: Member) -> list[dict]:
        """Add ``member``; returns the others, described. PolicyError when refused."""
        async with self.lock:
            members = self.rooms.get(room)
            if members is None:
                if len(self.rooms) >= self.limits.max_rooms:
                    raise PolicyError("too many rooms")
                members = self.rooms[room] = {}
            if member.peer in members:
                raise PolicyError("peer id already in room")
            if len(members) >= self.limits.max_peers_per_room:
                raise PolicyError("room full")
            others = [_describe(m) for m in members.values()]
            members[member.peer] = member
            return others

    async def leave(self, room: str, member: Member) -> bool:
        """Remove ``member`` (if it is still the one of its id); True when it was."""
        async with self.lock:
            members = self.rooms.get(room, {})
            if members.get(member.peer) is not member:
                return False
            del members[member.peer]
            if not members:
                self.rooms.pop(room, None)
            return True

    async def away_changed(self, room: str, member: Member) -> None:
        """``member``'s socket dropped (it stays, away, for the grace period), or it resumed
        on a new socket of this process (a shared registry records it)."""

    def get(self, room: str, peer: str) -> Member | None:
        """A member whose socket is on this process."""
        return self.rooms.get(room, {}).get(peer)

    def snapshot(self) -> dict[str, dict[tuple[str, ...], float]]:
        """The figures ``server.ops.SIGNALLING_METRICS`` exports (taken on the event loop):
        the rooms and peers whose sockets are on this process."""
        peers = dict.fromkeys(ROLES, 0.0)
        for members in self.rooms.values():
            for m in members.values():
                peers[m.role] += 1
        return {
            "talkcodec_signalling_rooms": {(): len(self.rooms)},
            "talkcodec_signalling_peers": {(role,): n for role, n in peers.items()},
            "talkcodec_signalling_sockets": {(): sum(self.addresses.open.values())},
            "talkcodec_signalling_refused_sockets": {(): self.addresses.refused},
            **self.pool.snapshot(),
        }


def pooled(members: list[dict]) -> bool:
    """The room is served by the pool: it has no receiver of its own."""
    return not any(m["role"] == "receiver" for m in members)


class AddressCounter:
    """Open sockets per client address, for ``max_sockets_per_ip``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[str, int] = {}
        self.refused = 0

    def acquire(self, address: str) -> bool:
        if self.cap and self.open.get(address, 0) >= self.cap:
            self.refused += 1
            return False
        self.open[address] = self.open.get(address, 0) + 1
        return True

    def release(self, address: str) -> None:
        left = self.open.get(address, 0) - 1
        if left > 0:
            self.open[address] = left
        else:
            self.open.pop(address, None)


def _describe(m: Member) -> dict:
    return {"peer": m.peer, "role": m.role, "label": m.label}


class Closed(Exception):
    """The client's socket closed (``code``: its close code, 1006 for a dropped one)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"socket closed ({code})")
        self.code = code


async def _receive(ws: WebSocket, limits: SignallingLimits, bucket: RateLimiter) -> dict:
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise Closed(int(message.get("code") or 1006))
    text = message.get("text")
    if text is None:
        data = message.get("bytes") or b""
        if len(data) > limits.max_message_bytes:
            raise PolicyError("message too large", CLOSE_TOO_BIG)
        text = data.decode("utf-8", errors="replace")
    if len(text) > limits.max_message_bytes:
        raise PolicyError("message too large", CLOSE_TOO_BIG)
    if not bucket.allow():
        raise PolicyError("too many messages")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise PolicyError("not JSON") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
        raise PolicyError("message must be an object with a type")
    return parsed


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code=code, reason=reason)
    except Exception:  # noqa: BLE001 - already closed
        pass


def _check_join(msg: dict, secret: bytes) -> tuple[str, str, str, str]:
    if msg.get("type") != "join":
        raise PolicyError("first message must be join")
    room, token, peer = msg.get("room"), msg.get("token"), msg.get("peer")
    role, label = msg.get("role"), msg.get("label", "")
    for value in (room, peer):
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise PolicyError("bad room or peer name")
    if role not in ROLES:
        raise PolicyError("bad role")
    if not isinstance(label, str) or len(label) > 64:
        raise PolicyError("bad label")
    scope = token_scope(secret, room, token)  # type: ignore[arg-type]
    if scope is None:
        raise PolicyError("bad or expired room token")
    if role in MEDIA_ROLES and scope != SCOPE_MEDIA:
        raise PolicyError(f"role {role} needs a media token")
    return room, peer, role, label  # type: ignore[return-value]


def default_origins(host: str, port: int) -> frozenset[str]:
    """The origins of the page this server serves on ``host:port``: that host, and for a
    loopback or wildcard bind the loopback names (``localhost``, ``127.0.0.1``, ``[::1]``).
    Any other public name (a reverse proxy, a LAN address) is configured explicitly."""
    names = {host if ":" not in host or host.startswith("[") else f"[{host}]"}
    if host in ("127.0.0.1", "localhost", "0.0.0.0", "::", "::1", "[::1]", ""):
        names = {"127.0.0.1", "localhost", "[::1]"}
    origins = set()
    for name in names:
        origins.add(f"http://{name}:{port}")
        if port == 80:
            origins.add(f"http://{name}")
    return frozenset(origins)


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """A browser's Origin against the configured origins only: the request's own Host
    header proves nothing (under DNS rebinding the attacker's name points at this server)."""
    if origin is None:
        return True
    return "*" in allowed or origin.rstrip("/") in allowed


def add_signalling_routes(app: FastAPI, config: SignallingConfig) -> RoomRegistry:
    """Mount ``/ws`` on ``app``; returns the room registry (for tests and health): in
    Redis when ``config.redis_url`` is set, else in this process's memory."""
    registry: RoomRegistry
    if config.redis_url:
        from server.redis_store import RedisRegistry

        registry = RedisRegistry(config.limits, config.redis_url)
    else:
        registry = RoomRegistry(config.limits)
    limits = config.limits
    addresses = registry.addresses
    pool = registry.pool
    sweeper = registry.background

    async def sweep() -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await pool.sweep()
                await registry.sweep()
            except StoreUnavailable as exc:
                log.warning("signalling: sweep skipped: %s", exc)

    async def started() -> None:
        if not sweeper:
            sweeper.append(asyncio.ensure_future(sweep()))
            await registry.start()

    async def serve_receiver(ws: WebSocket, first: dict, bucket: RateLimiter) -> None:
        rid, capacity = first.get("receiver"), first.get("capacity", 4)
        if not isinstance(rid, str) or not NAME_RE.match(rid):
            raise PolicyError("bad receiver id")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 0 < capacity <= 1024:
            raise PolicyError("bad capacity")
        if token_scope(config.secret, POOL_ROOM, first.get("token")) != SCOPE_MEDIA:
            raise PolicyError("a receiver needs the pool's media token")
        rx = PoolReceiver(rid, ws, capacity)
        old = await pool.connect(rx)  # StoreUnavailable: refused (Redis down)
        if old is not None:
            await _close(old.socket, CLOSE_POLICY, "replaced by a new registration")
        await ws.send_text(json.dumps({"type": "registered", "receiver": rid}))
        try:
            while True:
                # A receiver sends a signal per viewer per link: a higher rate than a peer.
                try:
                    msg = await _receive(ws, limits, bucket)
                except Closed:
                    break
                if msg["type"] == "load":
                    await pool.heartbeat(rid, msg)
                elif msg["type"] == "signal":
                    await pool.from_receiver(rid, msg)
        finally:
            await pool.disconnect(rx)

    @app.websocket("/ws")
    async def signalling_socket(ws: WebSocket) -> None:
        if not origin_allowed(ws.headers.get("origin"), config.allowed_origins):
            await ws.close(code=CLOSE_POLICY, reason="origin not allowed")
            return
        address = ws.client.host if ws.client is not None else ""
        if not addresses.acquire(address):
            # Accepted, then closed at once with the reason: a refusal before the handshake
            # reaches a browser as a bare failure. The socket costs nothing past this.
            if addresses.refused % 100 == 1:
                log.warning("signalling: refused sockets from %s (over %d open; %d refused "
                            "in all)", address, limits.max_sockets_per_ip, addresses.refused)
            await ws.accept()
            await _close(ws, CLOSE_TRY_LATER, "too many connections from this address")
            return
        try:
            await _serve_socket(ws)
        finally:
            addresses.release(address)

    async def depart(room: str, me: Member) -> None:
        """``me`` leaves ``room``: the others (and the pool's receivers) hear it."""
        try:
            if await registry.leave(room, me):
                await registry.broadcast(room, {"type": "peer-left", "peer": me.peer})
                if config.receiver_pool:
                    await pool.room_event(room, {"type": "peer-left", "peer": me.peer})
        except StoreUnavailable as exc:
            log.warning("signalling: %s left room %s unseen: %s", me.peer, room, exc)

    async def expire(room: str, me: Member) -> None:
        await asyncio.sleep(limits.away_grace_s)
        me.expiry = None
        if me.away:
            await depart(room, me)

    async def rejoin_of_away(room: str, first: dict, ws: WebSocket) -> Member | None:
        """A join of a peer this process holds: with its resume key (same role) its member,
        to go on on ``ws``; without, None once an away one left (the others hear it). A
        socket whose peer resumes elsewhere is dead to its client: it is closed."""
        old = registry.get(room, first["peer"])
        if old is None:
            return None
        if old.role == first["role"] and not old.overflowed and isinstance(
                first.get("resume"), str) and hmac.compare_digest(first["resume"],
                                                                   old.resume_key):
            if not old.away:  # its client saw the drop before this process did
                stale = old.socket
                old.go_away()
                await _close(stale, CLOSE_POLICY, "resumed on another socket")
            return old
        if not old.away:
            return None  # a peer id in use: the join is refused
        if old.expiry is not None:
            old.expiry.cancel()
            old.expiry = None
        await depart(room, old)
        return None

    def with_pool(described: list[dict], role: str) -> bool:
        """A room the pool serves shows its receivers as one virtual peer (added to
        ``described``, the others a joining peer is told of); True when it was added."""
        if config.receiver_pool and pooled(described) and role != "receiver":
            described.append({"peer": VIRTUAL_PEER, "role": "receiver",
                              "label": "receiver pool"})
            return True
        return False

    async def _serve_socket(ws: WebSocket) -> None:
        await ws.accept()
        await started()
        bucket = RateLimiter(limits.messages_per_s, limits.burst)
        room = me = None
        dropped = False  # the socket closed without the client closing it: grace period
        try:
            try:
                first = await asyncio.wait_for(
                    _receive(ws, limits, bucket), timeout=limits.join_timeout_s
                )
            except TimeoutError as exc:
                raise PolicyError("join timeout") from exc
            if config.receiver_pool and first.get("type") == "register":
                await serve_receiver(ws, first, RateLimiter(limits.messages_per_s * 10,
                                                            limits.burst * 10))
                return
            room_name, peer_name, role, label = _check_join(first, config.secret)
            resumed = await rejoin_of_away(room_name, first, ws)
            if resumed is not None:
                room, me = room_name, resumed
                kept = await me.come_back(ws)
                await registry.away_changed(room, me)
                members = await registry.members(room)
                described = [m for m in members if m["peer"] != me.peer]
                with_pool(described, role)
                await me.send({"type": "joined", "peer": me.peer, "peers": described,
                                 "resume": me.resume_key, "resumed": True})
                for message in kept:
                    await me.send(message)
                log.info("signalling: %s resumed in room %s (%d kept messages)", me.peer,
                         room, len(kept))
            else:
                member = Member(peer_name, role, label, ws, held=[])
                described = await registry.join(room_name, member)
                room, me = room_name, member
                joined: dict = {"type": "joined", "peer": me.peer, "peers": described,
                                "resume": me.resume_key}
                if with_pool(described, role):
                    joined["receivers"] = await pool.count_available()
                await me.open(joined)
                # Also after a rejoin (``me.rejoined``): the receivers offer a rejoining
                # viewer its views again (a page drops them with its socket).
                await registry.broadcast(room, {"type": "peer-joined", **_describe(me)},
                                         me.peer)
                if config.receiver_pool:
                    await pool.room_event(room, {"type": "peer-joined", **_describe(me)})
            peer = me.peer
            while True:
                try:
                    msg = await _receive(ws, limits, bucket)
                except Closed as closed:
                    dropped = closed.code not in CLIENT_CLOSES
                    break
                if msg["type"] == "leave":
                    break
                if msg["type"] == "signal":
                    to, data = msg.get("to"), msg.get("data")
                    members = await registry.members(room)
                    names = {m["peer"] for m in members}
                    if (config.receiver_pool and to == VIRTUAL_PEER and to not in names
                            and isinstance(data, dict) and pooled(members)):
                        await pool.route(room, peer, data, members)
                        continue
                    if not isinstance(to, str) or to not in names:
                        await me.send({"type": "error", "error": "no such peer"})
                        continue
                    if not isinstance(data, dict):
                        raise PolicyError("signal data must be an object")
                    await registry.deliver(room, to, {"type": "signal", "from": peer,
                                                      "data": data})
                elif msg["type"] == "ping":
                    await me.send({"type": "pong"})
                else:
                    raise PolicyError("unknown message type")
        except Closed:
            pass
        except PolicyError as exc:
            await _close(ws, exc.code, str(exc))
        except StoreUnavailable as exc:
            # Redis down: a clear refusal, never a hang (the client tries again later).
            log.warning("signalling: %s", exc)
            await _close(ws, CLOSE_TRY_LATER, f"signalling store unavailable: {exc}"[:120])
        except WebSocketDisconnect:
            pass
        except Exception as exc:  # noqa: BLE001 - any bug: one line and a clean close
            log.warning("signalling: closed a socket (peer %s) after %s: %.200s",
                        me.peer if me else "not joined", type(exc).__name__, exc)
            await _close(ws, CLOSE_INTERNAL, "internal error")
        finally:
            # (Not when another socket took its place: ``rejoin_of_away``.)
            if room is not None and me is not None and me.socket is ws and not me.away:
                if dropped and limits.away_grace_s > 0:
                    me.go_away()
                    me.expiry = asyncio.ensure_future(expire(room, me))
                    try:
                        await registry.away_changed(room, me)
                    except StoreUnavailable as exc:
                        log.warning("signalling: %s away in room %s unseen: %s", me.peer,
                                    room, exc)
                else:
                    await depart(room, me)

    return registry
