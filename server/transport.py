"""The talkcodec link's and the viewer stream's peer connections on aiortc: the channel
names, ``new_peer_connection`` (one bundled transport, so the link's rate is one number;
optional STUN/TURN servers), offer/answer without trickle, ``wait_connected``,
``close_peer_connection`` (``pc.close()`` that a cancelled caller cannot break) and the
connection's DTLS and ICE transports.

The rest, one concern a module: ``aiortc_patches`` (process-wide fixes, applied on import
of this module; the list of aiortc's private parts the server touches), ``link_tuning``
(the link sender's Opus, SRTP/DTLS/SCTP settings), ``audio_tracks`` (paced tracks, the
receiving side's Opus clock), ``link_emulator`` (a constrained link) and ``wire_meter``
(bytes on the wire by stream).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

import server.aiortc_patches  # noqa: F401 - the process-wide fixes, applied on import

LOWRES_CHANNEL = "talkcodec-lowres"  # unreliable, unordered: 8x8 frame packets
RELIABLE_CHANNEL = "talkcodec-reliable"  # reliable, ordered: CONFIG + IDENTITY, sync


def new_peer_connection(ice_servers: list[dict] | None = None) -> RTCPeerConnection:
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in (ice_servers or [])
    ]
    # aiortc's max-bundle mode fails to connect audio + data; its default (balanced) offers
    # a BUNDLE group that aiortc and browsers accept, so everything shares one transport.
    return RTCPeerConnection(RTCConfiguration(iceServers=servers or None))


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """``pc.close()`` that a cancelled caller cannot break.

    When the remote end closes, aiortc starts its own ``close()`` task; a second caller
    awaits that task's "closed" future. If that caller is cancelled (a call shutting down)
    the future is cancelled with it, and aiortc's task then fails on ``set_result``:
    "Task exception was never retrieved ... InvalidStateError". Shielded, the caller's
    cancellation leaves the close running."""
    await asyncio.shield(pc.close())


def dtls_transports(pc: RTCPeerConnection) -> list:
    found = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        found.append(pc.sctp.transport)
    unique: list[Any] = []
    for t in found:
        if all(t is not u for u in unique):
            unique.append(t)
    return unique


def ice_transports(pc: RTCPeerConnection) -> list:
    found = []
    for t in pc.getTransceivers():
        found.append(t.sender.transport.transport)
    if pc.sctp is not None:
        found.append(pc.sctp.transport.transport)
    unique: list[Any] = []
    for t in found:  # type: ignore[assignment]
        if all(t is not u for u in unique):
            unique.append(t)
    return unique


async def make_offer(pc: RTCPeerConnection) -> dict:
    """Create and set the local offer; aiortc gathers all candidates, so no trickle."""
    await pc.setLocalDescription(await pc.createOffer())
    return {"kind": "offer", "sdp": pc.localDescription.sdp}


async def make_answer(pc: RTCPeerConnection, offer: dict) -> dict:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return {"kind": "answer", "sdp": pc.localDescription.sdp}


async def accept_answer(pc: RTCPeerConnection, answer: dict) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))


async def wait_connected(pc: RTCPeerConnection, timeout_s: float = 20.0) -> None:
    """Wait for ``connectionState == "connected"``; ConnectionError when it fails."""
    deadline = time.monotonic() + timeout_s
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise ConnectionError(f"peer connection {pc.connectionState}")
        await asyncio.sleep(0.05)
