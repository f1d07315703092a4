"""What the link puts on the wire: ``WireMeter`` counts every datagram one peer connection
sends, by the stream it carries; ``link_stats`` reads the transport's own counters (RTP
payload, SCTP/DTLS/SRTP total)."""

from __future__ import annotations

import contextvars
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtcsctptransport import (
    DataChunk,
    ForwardTsnChunk,
    HeartbeatAckChunk,
    HeartbeatChunk,
    SackChunk,
    parse_packet,
)
from aiortc.rtp import is_rtcp

from server.transport import dtls_transports, ice_transports

_wire_label: contextvars.ContextVar[str] = contextvars.ContextVar("talkcodec_wire_label",
                                                                  default="dtls_other")


def _sctp_label(packet: bytes, lowres_streams: set[int]) -> str:
    try:
        chunks = parse_packet(packet)[3]
    except ValueError:
        return "sctp_other"
    if not chunks:
        return "sctp_other"
    chunk = chunks[0]
    if isinstance(chunk, DataChunk):
        return "sctp_data_lowres" if chunk.stream_id in lowres_streams else "sctp_data_reliable"
    if isinstance(chunk, SackChunk):
        return "sctp_sack"
    if isinstance(chunk, (HeartbeatChunk, HeartbeatAckChunk)):
        return "sctp_heartbeat"
    if isinstance(chunk, ForwardTsnChunk):
        return "sctp_forward_tsn"
    return "sctp_other"


class WireMeter:
    """Counts every datagram one peer connection sends, by what it carries.

    Labels (bytes and packets each): ``rtp_audio`` (SRTP: RTP header + extensions + Opus +
    auth tag), ``rtcp`` (SRTCP), ``sctp_data_lowres`` / ``sctp_data_reliable`` (DTLS records
    carrying one SCTP DATA chunk of that channel), ``sctp_sack``, ``sctp_heartbeat``,
    ``sctp_forward_tsn``, ``sctp_other``, ``dtls_other`` (handshake, alerts): together the
    DTLS transport's ``bytesSent``. ``stun`` (ICE consent checks and responses, sent by
    aioice outside DTLS) is counted too but is not part of that total. No UDP/IP headers.
    """

    DTLS_LABELS = ("rtp_audio", "rtcp", "sctp_data_lowres", "sctp_data_reliable", "sctp_sack",
                   "sctp_heartbeat", "sctp_forward_tsn", "sctp_other", "dtls_other")

    def __init__(self) -> None:
        self.bytes: dict[str, int] = defaultdict(int)
        self.packets: dict[str, int] = defaultdict(int)
        self.lowres_streams: set[int] = set()

    def _count(self, label: str, n: int) -> None:
        self.bytes[label] += n
        self.packets[label] += 1

    def attach(self, pc: RTCPeerConnection, lowres_channels: list | tuple = ()) -> None:
        """Meter ``pc`` (call once its transports exist, after the local description is
        set; again after connecting to pick up ICE's sockets)."""
        for channel in lowres_channels:
            if channel.id is not None:
                self.lowres_streams.add(channel.id)
        for dtls in dtls_transports(pc):
            if getattr(dtls, "_talkcodec_metered", False):
                continue
            dtls._talkcodec_metered = True
            send_data = dtls._send_data

            async def labelled_send_data(data: bytes, _send: Any = send_data) -> None:
                token = _wire_label.set(_sctp_label(data, self.lowres_streams))
                try:
                    await _send(data)
                finally:
                    _wire_label.reset(token)

            dtls._send_data = labelled_send_data
        for ice in ice_transports(pc):
            if not getattr(ice, "_talkcodec_metered", False):
                ice._talkcodec_metered = True
                ice._send = self._wrap_ice_send(ice._send)
            for protocol in getattr(ice._connection, "_protocols", []):
                if not getattr(protocol, "_talkcodec_metered", False):
                    protocol._talkcodec_metered = True
                    send_stun = protocol.send_stun

                    def counted_stun(message: Any, addr: Any, _send: Any = send_stun) -> None:
                        data = bytes(message)
                        self._count("stun", len(data))
                        _send(message, addr)

                    protocol.send_stun = counted_stun

    def _wrap_ice_send(self, send: Callable[[bytes], Awaitable[None]]) -> Callable[[bytes], Awaitable[None]]:
        async def metered_send(data: bytes) -> None:
            first = data[0] if data else 0
            if 127 < first < 192:
                label = "rtcp" if is_rtcp(data) else "rtp_audio"
            else:
                label = _wire_label.get()
            self._count(label, len(data))
            await send(data)

        return metered_send

    def snapshot(self) -> dict[str, int]:
        out = {f"wire_{k}": v for k, v in self.bytes.items()}
        out.update({f"wire_pkts_{k}": v for k, v in self.packets.items()})
        return out


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
