"""The sender end of the talkcodec link: one peer connection to the room's receiver worker.

Channels: 8x8 frame packets on an unreliable, unordered data channel; CONFIG and IDENTITY
packets (and JSON control: the capture epoch, intra requests) on a reliable one; speech on
an Opus track at the codec's low bitrate. Only this stream leaves the sender.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable

from aiortc import RTCDataChannel
from aiortc.mediastreams import MediaStreamTrack

from codec.bitstream.packet import Packet, StreamKind, decode_datagram, encode_packet
from server.sessions import SessionRouter
from server.transport import (
    DEFAULT_AUDIO_BITRATE,
    DEFAULT_AUDIO_FRAME_MS,
    LOWRES_CHANNEL,
    RELIABLE_CHANNEL,
    LinkEmulator,
    LinkShape,
    WireMeter,
    close_peer_connection,
    lean_link_audio,
    lean_link_transport,
    link_stats,
    new_peer_connection,
    use_low_bitrate_opus,
    wait_connected,
)


def as_datagram(packet: Packet | bytes) -> tuple[StreamKind, bytes]:
    if isinstance(packet, Packet):
        return packet.kind, encode_packet(packet)
    data = bytes(packet)
    return decode_datagram(data).kind, data


class SenderLink:
    """Opens the link (``open``), then ``send`` packets; counts what it sent per kind."""

    def __init__(
        self,
        router: SessionRouter,
        receiver_peer: str,
        session: str,
        *,
        audio_track: MediaStreamTrack | None = None,
        audio_bitrate: int = DEFAULT_AUDIO_BITRATE,
        audio_frame_ms: int = DEFAULT_AUDIO_FRAME_MS,
        link_shape: LinkShape | None = None,
        ice_servers: list | None = None,
    ) -> None:
        self.router, self.receiver_peer, self.session = router, receiver_peer, session
        self.pc = new_peer_connection(ice_servers)
        self.lowres: RTCDataChannel = self.pc.createDataChannel(
            LOWRES_CHANNEL, ordered=False, maxRetransmits=0
        )
        self.reliable: RTCDataChannel = self.pc.createDataChannel(RELIABLE_CHANNEL)
        self.audio_sender = None
        if audio_track is not None:
            self.audio_sender = self.pc.addTrack(audio_track)
            use_low_bitrate_opus(self.audio_sender, audio_bitrate, audio_frame_ms)
        lean_link_transport(self.pc)
        self.emulator = LinkEmulator(link_shape) if link_shape is not None else None
        self.meter = WireMeter()
        self.epoch_unix_ms: float | None = None
        self.sent_bytes: dict[str, int] = {k.name: 0 for k in StreamKind}
        self.on_intra_request: Callable[[], None] | None = None
        self.reliable.on("message", self._on_control)

    async def open(self, timeout_s: float = 20.0) -> None:
        await self.router.offer(self.receiver_peer, self.session, self.pc)
        if self.audio_sender is not None:
            lean_link_audio(self.pc, self.audio_sender)
        if self.emulator is not None:
            self.emulator.attach(self.pc)
        self.meter.attach(self.pc)
        await wait_connected(self.pc, timeout_s)
        deadline = time.monotonic() + timeout_s
        while self.lowres.readyState != "open" or self.reliable.readyState != "open":
            if time.monotonic() > deadline:
                raise ConnectionError("talkcodec data channels did not open")
            await asyncio.sleep(0.02)
        self.meter.attach(self.pc, lowres_channels=[self.lowres])  # stream id, ICE sockets

    def set_epoch(self, epoch_unix_ms: float) -> None:
        """Timestamp 0 of the stream is this wall-clock time (for latency measurement)."""
        self.epoch_unix_ms = epoch_unix_ms
        self.reliable.send(json.dumps({"type": "epoch", "epoch_unix_ms": epoch_unix_ms}))

    def send(self, packets: Iterable[Packet | bytes]) -> None:
        if self.pc.connectionState != "connected":
            return
        for packet in packets:
            kind, data = as_datagram(packet)
            if kind == StreamKind.AUDIO:
                continue  # speech goes on the Opus track
            channel = self.lowres if kind == StreamKind.LOWRES else self.reliable
            if channel.readyState == "open":
                channel.send(data)
                self.sent_bytes[kind.name] += len(data)

    def _on_control(self, message: bytes | str) -> None:
        if not isinstance(message, str) or len(message) > 4096:
            return
        try:
            msg = json.loads(message)
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("type") == "intra-request" and self.on_intra_request:
            self.on_intra_request()

    async def stats(self) -> dict[str, int]:
        out = await link_stats(self.pc)
        out.update(self.meter.snapshot())
        out.update({f"sent_{k.lower()}": v for k, v in self.sent_bytes.items()})
        return out

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"

    async def close(self) -> None:
        await self.router.close_session(self.receiver_peer, self.session)
        await close_peer_connection(self.pc)
