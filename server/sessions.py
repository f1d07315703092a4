"""Peer sessions over one signalling connection.

A Python peer (sender, agent, receiver worker) may hold several WebRTC peer connections at
once; each is a *session* named by the offerer (``"link:<sender>"``, ``"view:<link>"``,
``"camera:<viewer>"``). Signal data is ``{"session", "kind": "offer"|"answer"|"bye", "sdp"}``;
this router hands each message to the session's owner. An offer carries ``"offer": n``, a
number new for each offer of that router, and its answer echoes it: when a session is
offered again before the first answer came, the late first answer is not applied to the
second connection (answers without the number, from older pages, are taken as they come).
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
        self._pending: dict[tuple[str, str], tuple[int, asyncio.Future]] = {}
        self._offers = 0

    async def offer(self, to: str, session: str, pc: RTCPeerConnection) -> None:
        """Send our offer for ``session`` to ``to``; returns once the answer is applied."""
        key = (to, session)
        old = self.pcs.pop(key, None)
        if old is not None:
            await close_peer_connection(old)
        self.pcs[key] = pc
        self._offers += 1
        number = self._offers
        superseded = self._pending.pop(key, None)
        if superseded is not None and not superseded[1].done():
            # Its caller hears now, not after the answer's timeout, and its answer (if it
            # still comes) matches no offer.
            superseded[1].set_exception(ConnectionError("offered again"))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[key] = (number, fut)
        try:
            await self.client.signal(to, {"session": session, "offer": number,
                                          **await make_offer(pc)})
            answer = await asyncio.wait_for(fut, timeout=20)
        finally:
            if self._pending.get(key, (0, None))[1] is fut:
                self._pending.pop(key)
        await accept_answer(pc, answer)

    async def close_session(self, peer: str, session: str, notify: bool = True,
                            only: RTCPeerConnection | None = None) -> None:
        """Close ``session`` with ``peer`` (and say ``bye``); given ``only``, just while that
        is still its connection: a newer offer of the same session is left alone."""
        if only is not None and self.pcs.get((peer, session)) is not only:
            return
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
            pending = self._pending.get(key)
            if pending is None or data.get("offer", pending[0]) != pending[0]:
                return  # the answer to an offer that was superseded (or never made)
            self._pending.pop(key)
            if not pending[1].done():
                pending[1].set_result(data)
        elif kind == "offer" and isinstance(data.get("sdp"), str) and self.on_offer is not None:
            old = self.pcs.pop(key, None)
            if old is not None:
                await close_peer_connection(old)
            pc = await self.on_offer(peer, session, data)
            if pc is None:
                return
            self.pcs[key] = pc
            echo = {"offer": data["offer"]} if isinstance(data.get("offer"), int) else {}
            await self.client.signal(peer, {"session": session, **echo,
                                            **await make_answer(pc, data)})
        elif kind == "bye":
            pending = self._pending.pop(key, None)
            fut = pending[1] if pending is not None else None
            if fut is not None and not fut.done():
                # Our offer was refused (e.g. "no receiver available"): fail it now, not
                # after the answer's timeout.
                fut.set_exception(ConnectionError(str(data.get("reason") or "refused")))
            await self.close_session(peer, session, notify=False)
