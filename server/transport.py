"""aiortc plumbing for the talkcodec link and the viewer stream.

- ``new_peer_connection``: one bundled transport (BUNDLE group) (so the link's rate is one number), optional
  STUN/TURN servers, loopback host candidates when asked (aioice leaves 127.0.0.1 out).
- ``LowBitrateOpusEncoder`` / ``use_low_bitrate_opus``: aiortc fixes Opus at 96 kbit/s and
  20 ms frames; the talkcodec link sends speech at 8 kbit/s in 60 ms frames instead, set on
  that one RTP sender only.
- ``LinkEmulator``: a constrained link (rate, delay, loss) injected under DTLS/SRTP, where the
  ICE transport sends its datagrams.
- ``link_stats``: bytes counted by the transport itself (RTP payload, SCTP/DTLS/SRTP total).
"""

from __future__ import annotations

import asyncio
import fractions
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aioice.ice
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler

LOWRES_CHANNEL = "talkcodec-lowres"  # unreliable, unordered: 8x8 frame packets
RELIABLE_CHANNEL = "talkcodec-reliable"  # reliable, ordered: CONFIG + IDENTITY, sync
DEFAULT_AUDIO_BITRATE = 8000
DEFAULT_AUDIO_FRAME_MS = 60

_original_host_addresses = aioice.ice.get_host_addresses


def enable_loopback_candidates(only_loopback: bool = False) -> None:
    """Make aioice offer a 127.0.0.1 host candidate (all peers on one machine).

    ``only_loopback`` keeps every other address out (tests that must not touch other
    interfaces). Applies to the whole process; call again to change.
    """

    def addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found = [] if only_loopback else _original_host_addresses(use_ipv4, use_ipv6)
        return ["127.0.0.1", *found] if use_ipv4 else found

    aioice.ice.get_host_addresses = addresses


def new_peer_connection(ice_servers: list[dict] | None = None) -> RTCPeerConnection:
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in (ice_servers or [])
    ]
    # aiortc's max-bundle mode fails to connect audio + data; its default (balanced) offers
    # a BUNDLE group that aiortc and browsers accept, so everything shares one transport.
    return RTCPeerConnection(RTCConfiguration(iceServers=servers or None))


class LowBitrateOpusEncoder(OpusEncoder):
    """aiortc's Opus encoder with the talkcodec speech settings: mono, voip, ``bitrate``,
    ``frame_ms`` per packet (fewer packets = less RTP/SRTP overhead per second)."""

    def __init__(self, bitrate: int = DEFAULT_AUDIO_BITRATE,
                 frame_ms: int = DEFAULT_AUDIO_FRAME_MS) -> None:
        super().__init__()
        if frame_ms not in (20, 40, 60):
            raise ValueError("Opus frame must be 20, 40 or 60 ms")
        self.codec.bit_rate = int(bitrate)
        self.codec.layout = "mono"
        self.codec.options = {"application": "voip", "vbr": "constrained",
                              "frame_duration": str(frame_ms)}
        self.resampler = AudioResampler(format="s16", layout="mono", rate=48000,
                                        frame_size=48 * frame_ms)


def use_low_bitrate_opus(sender: RTCRtpSender, bitrate: int = DEFAULT_AUDIO_BITRATE,
                         frame_ms: int = DEFAULT_AUDIO_FRAME_MS) -> None:
    """Give this RTP sender the low-bitrate encoder (before it sends its first frame)."""
    # aiortc creates the encoder lazily when ``__encoder`` is None; setting it first is the
    # only per-sender hook it offers.
    sender._RTCRtpSender__encoder = LowBitrateOpusEncoder(bitrate, frame_ms)  # type: ignore[attr-defined]


class PcmAudioTrack(MediaStreamTrack):
    """An audio track fed with 16 kHz mono float32 PCM (``feed``), paced in real time;
    silence where nothing was fed in time."""

    kind = "audio"
    RATE = 16000
    PTIME_S = 0.02

    def __init__(self, max_buffer_s: float = 2.0) -> None:
        super().__init__()
        self._buffer = np.zeros(0, np.float32)
        self._max = int(max_buffer_s * self.RATE)
        self._start: float | None = None
        self._sent = 0

    def feed(self, pcm: np.ndarray) -> None:
        pcm = np.clip(np.asarray(pcm, np.float32).reshape(-1), -1.0, 1.0)
        self._buffer = np.concatenate([self._buffer, pcm])[-self._max:]

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = int(self.PTIME_S * self.RATE)
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(max(0.0, self._start + (self._sent + n) / self.RATE - time.time()))
        chunk = self._buffer[:n]
        self._buffer = self._buffer[n:]
        if len(chunk) < n:
            chunk = np.concatenate([chunk, np.zeros(n - len(chunk), np.float32)])
        frame = AudioFrame.from_ndarray((chunk * 32767).astype(np.int16)[None, :], format="s16",
                                        layout="mono")
        frame.sample_rate = self.RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, self.RATE)
        self._sent += n
        return frame


@dataclass
class LinkShape:
    """An emulated link: bottleneck rate, one-way delay, random loss, drop-tail queue."""

    rate_bps: float = 16000.0
    delay_ms: float = 100.0
    loss: float = 0.05
    max_queue_ms: float = 400.0
    seed: int = 0


class LinkEmulator:
    """Shapes what one peer connection sends: every datagram the ICE transport would send
    is dropped (``loss``, or queue full), or delivered after queueing at ``rate_bps`` plus
    ``delay_ms``. Counts what it let through."""

    def __init__(self, shape: LinkShape) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)
        self.busy_until = 0.0
        self.sent_bytes = self.dropped = self.delivered = 0

    def wrap(self, send: Callable[[bytes], Awaitable[None]]) -> Callable[[bytes], Awaitable[None]]:
        loop = asyncio.get_running_loop()

        async def shaped_send(data: bytes) -> None:
            now = loop.time()
            if self.rng.random() < self.shape.loss:
                self.dropped += 1
                return
            start = max(now, self.busy_until)
            if (start - now) * 1000.0 > self.shape.max_queue_ms:
                self.dropped += 1
                return
            # Wire size: payload + UDP/IPv4 headers.
            self.busy_until = start + (len(data) + 28) * 8.0 / self.shape.rate_bps
            self.sent_bytes += len(data)
            deliver_at = self.busy_until + self.shape.delay_ms / 1000.0

            def deliver() -> None:
                self.delivered += 1
                asyncio.ensure_future(_quiet(send(data)))

            loop.call_at(deliver_at, deliver)

        return shaped_send

    def attach(self, pc: RTCPeerConnection) -> None:
        """Shape every ICE transport of ``pc`` (call after the descriptions are set)."""
        for transport in _ice_transports(pc):
            if not getattr(transport, "_talkcodec_shaped", False):
                transport._send = self.wrap(transport._send)
                transport._talkcodec_shaped = True


async def _quiet(coro: Awaitable[None]) -> None:
    try:
        await coro
    except Exception:  # noqa: BLE001 - a datagram to a closed transport is simply lost
        pass


def _ice_transports(pc: RTCPeerConnection) -> list:
    found = []
    for t in pc.getTransceivers():
        found.append(t.sender.transport.transport)
    if pc.sctp is not None:
        found.append(pc.sctp.transport.transport)
    unique = []
    for t in found:
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


async def link_stats(pc: RTCPeerConnection) -> dict[str, int]:
    """Bytes sent so far: ``audio_rtp_payload`` (Opus payload octets), ``transport_total``
    (every SRTP/DTLS datagram handed to ICE: RTP+RTCP+SCTP with their headers)."""
    out = {"audio_rtp_payload": 0, "audio_packets": 0, "transport_total": 0}
    seen_transports = set()
    for sender in pc.getSenders():
        if sender.track is None:
            continue
        report = await sender.getStats()
        for stat in report.values():
            if stat.type == "outbound-rtp" and stat.kind == "audio":
                out["audio_rtp_payload"] += stat.bytesSent
                out["audio_packets"] += stat.packetsSent
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        if id(dtls) in seen_transports:
            continue
        seen_transports.add(id(dtls))
        for stat in dtls._get_stats().values():
            if stat.type == "transport":
                out["transport_total"] += stat.bytesSent
    return out
