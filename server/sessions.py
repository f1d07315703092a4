"""Peer sessions over one signalling connection.

A Python peer (sender, agent, receiver worker) may hold several WebRTC peer connections at
once; each is a *session* named by the offerer (``"link:<sender>"``, ``"view:<link>"``,
``"camera:<viewer>"``). Signal data is ``{"session", "kind": "offer"|"answer"|"bye", "sdp"}``;
this router hands each message to the session's owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection

from server.signal_client import SignalClient
from server.transport import accept_answer, close_peer_connection, make_answer, make_offer

log = logging.getLogger(__name__)

OfferHandler = Callable[[str, str, dict], Awaitable[RTCPeerConnection | None]]
PeerHandler = Callable[[dict], Awaitable[None]]


class SessionRouter:
    """Routes offers/answers/byes of one ``SignalClient`` to peer connections."""

    def __init__(self, client: SignalClient) -> None:
        self.client = client
        self.pcs: dict[tuple[str, str], RTCPeerConnection] = {}
        self.on_offer: OfferHandler | None = None  # (from_peer, session, data) -> pc to answer
        self.on_peer_joined: PeerHandler | None = None
        self.on_peer_left: PeerHandler | None = None
        self._pending: dict[tuple[str, str], asyncio.Future] = {}

    async def offer(self, to: str, session: str, pc: RTCPeerConnection) -> None:
        """Send our offer for ``session`` to ``to``; returns once the answer is applied."""
        key = (to, session)
        old = self.pcs.pop(key, None)
        if old is not None:
            await close_peer_connection(old)
        self.pcs[key] = pc
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        await self.client.signal(to, {"session": session, **await make_offer(pc)})
        answer = await asyncio.wait_for(fut, timeout=20)
        await accept_answer(pc, answer)

    async def close_session(self, peer: str, session: str, notify: bool = True) -> None:
        pc = self.pcs.pop((peer, session), None)
        if pc is not None:
            await close_peer_connection(pc)
            if notify:
                try:
                    await self.client.signal(peer, {"session": session, "kind": "bye"})
                except Exception:  # noqa: BLE001 - signalling already gone
                    pass

    async def close_all(self) -> None:
        """Close every session's peer connection (their media threads end with them)."""
        for key in list(self.pcs):
            await self.close_session(*key, notify=False)

    async def close_peer(self, peer: str) -> None:
        for key in [k for k in self.pcs if k[0] == peer]:
            await self.close_session(*key, notify=False)

    async def run(self) -> None:
        """Process signalling messages until the connection closes."""
        async for msg in self.client.messages():
            kind = msg.get("type")
            try:
                if kind == "signal":
                    await self._on_signal(msg["from"], msg.get("data") or {})
                elif kind == "peer-joined" and self.on_peer_joined is not None:
                    await self.on_peer_joined(msg)
                elif kind == "peer-left":
                    await self.close_peer(msg["peer"])
                    if self.on_peer_left is not None:
                        await self.on_peer_left(msg)
            except Exception:  # noqa: BLE001 - one bad session must not end the others
                log.exception("signalling message %s failed", kind)
        for key in list(self.pcs):
            await self.close_session(*key, notify=False)

    async def _on_signal(self, peer: str, data: dict) -> None:
        session, kind = data.get("session"), data.get("kind")
        if not isinstance(session, str) or len(session) > 200:
            return
        key = (peer, session)
        if kind == "answer" and isinstance(data.get("sdp"), str):
            fut = self._pending.pop(key, None)
            if fut is not None and not fut.done():
                fut.set_result(data)
        elif kind == "offer" and isinstance(data.get("sdp"), str) and self.on_offer is not None:
            old = self.pcs.pop(key, None)
            if old is not None:
                await close_peer_connection(old)
            pc = await self.on_offer(peer, session, data)
            if pc is None:
                return
            self.pcs[key] = pc
            await self.client.signal(peer, {"session": session, **await make_answer(pc, data)})
        elif kind == "bye":
            fut = self._pending.pop(key, None)
            if fut is not None and not fut.done():
                # Our offer was refused (e.g. "no receiver available"): fail it now, not
                # after the answer's timeout.
                fut.set_exception(ConnectionError(str(data.get("reason") or "refused")))
            await self.close_session(peer, session, notify=False)
