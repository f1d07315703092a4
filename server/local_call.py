"""A whole call in one process on loopback: signalling app, receiver worker, sender agent.

``talkcodec demo``, the tests and ``benchmarks/bench_call.py`` start calls with this; in
production the same parts run as separate processes/containers (docker-compose.yml).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field

from codec.sender.sender import SenderConfig
from server.aiortc_patches import enable_loopback_candidates
from server.app import create_app, start_http
from server.link_audio import link_audio_frame_ms
from server.receiver_worker import ReceiverWorker, WorkerConfig
from server.sender_agent import SenderAgent
from server.signal_client import SignalClient
from server.signalling import MEDIA_ROLES, SignallingConfig, default_origins
from server.tokens import SCOPE_MEDIA, SCOPE_ROOM, make_room_token, new_secret
from server.transport import close_peer_connection


@dataclass
class LocalCall:
    host: str
    port: int
    room: str
    secret: bytes
    worker: ReceiverWorker
    agent: SenderAgent | None
    tasks: list[asyncio.Task] = field(default_factory=list)
    _server: object = None
    _server_task: asyncio.Task | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def token(self, scope: str = SCOPE_ROOM) -> str:
        """The room token (viewers, senders; the page URL), or with ``scope="media"`` the
        token of the roles that receive others' media (receiver worker, sender agent)."""
        return make_room_token(self.secret, self.room, scope=scope)

    def page_url(self, name: str = "") -> str:
        url = f"http://{self.host}:{self.port}/?room={self.room}&token={self.token()}"
        return url + (f"&name={name}" if name else "")

    def client(self, role: str, label: str = "", peer: str | None = None) -> SignalClient:
        peer = peer or f"{role}-{secrets.token_hex(3)}"
        token = self.token(SCOPE_MEDIA if role in MEDIA_ROLES else SCOPE_ROOM)
        return SignalClient(self.ws_url, self.room, token, peer, role, label)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for link in list(self.worker.links.values()):
            await link.close()
        await self.worker.router.close_all()
        await self.worker.client.close()
        if self.agent is not None:
            for agent_link in list(self.agent.links.values()):
                await close_peer_connection(agent_link.pc)
            await self.agent.router.close_all()
            await self.agent.client.close()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True  # type: ignore[attr-defined]
            await self._server_task


async def start_local_call(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    room: str = "demo",
    receiver: str = "",
    low_latency: bool = False,
    with_agent: bool = True,
    sender_config: SenderConfig | None = None,
    allowed_origins: frozenset[str] = frozenset(),
    audio_frame_ms: int | None = None,
) -> LocalCall:
    """``audio_frame_ms``: Opus packets of the agent's links (default: the link's 120 ms,
    or 60 ms in low-latency mode, where the speech and not the video is the later stream).
    Browsers may connect from the served origin (``default_origins``) and ``allowed_origins``."""
    enable_loopback_candidates()
    secret = new_secret()
    config = SignallingConfig(secret=secret, allowed_origins=frozenset(allowed_origins))
    app = create_app(config)
    server, server_task, bound = await start_http(app, host, port)
    config.allowed_origins = config.allowed_origins | default_origins(host, bound)
    call = LocalCall(host, bound, room, secret, worker=None, agent=None)  # type: ignore[arg-type]
    call._server, call._server_task = server, server_task
    call.worker = ReceiverWorker(call.client("receiver", "receiver worker", "receiver"),
                                 WorkerConfig(receiver=receiver, low_latency=low_latency))
    call.tasks.append(asyncio.ensure_future(call.worker.run()))
    if with_agent:
        call.agent = SenderAgent(call.client("agent", "sender agent", "agent"),
                                 config=sender_config,
                                 audio_frame_ms=audio_frame_ms or link_audio_frame_ms(low_latency))
        call.tasks.append(asyncio.ensure_future(call.agent.run()))
    for _ in range(100):
        if call.worker.client._ws is not None:
            break
        await asyncio.sleep(0.02)
    return call
