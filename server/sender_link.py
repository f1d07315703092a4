"""The sender end of the talkcodec link: one peer connection to the room's receiver worker.

Channels: 8x8 frame packets on an unreliable, unordered data channel; CONFIG and IDENTITY
packets (and JSON control: the capture epoch, intra requests, the identity's
acknowledgement) on a reliable one; speech on an Opus track at the codec's low bitrate.
Only this stream leaves the sender.

Call setup (issue 14): the 8x8 stream flows from the first frame, so the receiver shows a
face at once (the ``neural`` receiver's voice face, until the identity frame is in); the
~4-5 kB identity frame goes on the reliable channel cut into ~1 kB pieces
(``server/link_pieces.py``), the next one sent only when the one before it is acknowledged,
so each 8x8 message waits behind at most one piece instead of the whole frame (aiortc has
one send queue for every channel). The speech is held until the worker acknowledges the
identity frame (``identity-ack``): on a 16 kbit/s link speech (~11 kbit/s with its headers)
beside the identity filled the bottleneck queue, the identity's SCTP packets and their
retransmissions were dropped, and the first face came ~10 s after connecting
(docs/CALL.md, Constrained link). Speech captured before the acknowledgement is not sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from aiortc import RTCDataChannel
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

from codec.bitstream.packet import Packet, StreamKind, decode_datagram, encode_packet
from server.link_audio import DEFAULT_AUDIO_FRAME_MS
from server.link_emulator import LinkEmulator, LinkShape
from server.link_pieces import split_message
from server.link_tuning import (
    DEFAULT_AUDIO_BITRATE,
    channel_outstanding,
    lean_link_audio,
    lean_link_transport,
    use_low_bitrate_opus,
)
from server.sessions import SessionRouter
from server.transport import (
    LOWRES_CHANNEL,
    RELIABLE_CHANNEL,
    close_peer_connection,
    new_peer_connection,
    wait_connected,
)
from server.wire_meter import WireMeter, link_stats

# The identity's acknowledgement normally comes within a round trip plus the identity's
# transfer (~3-6 s at 16 kbit/s); after this the link sends everything anyway.
IDENTITY_ACK_TIMEOUT_S = 20.0
# HeldAudioTrack: speech later than this is dropped, not sent. The worker plays speech out
# at the video's delay (0.3-1.3 s on a loaded box), so up to ~1 s late is still heard; a
# backlog of 1 s sent at once adds at most 2 kbit/s to a 4 s rate window (7.3 -> 9.1).
# (300 ms dropped 17-26 % of the speech frames in the loaded demo.)
MAX_LATE_AUDIO_S = 1.0
RESYNC_LATE_S = 10.0  # HeldAudioTrack: later than this is a jump of the source's clock
DRIFT_RESYNC_S = 3.0  # HeldAudioTrack: late this long without a break is the clock's drift
# A reliable-channel piece not acknowledged after this is given up on waiting for (the
# next is sent anyway: SCTP still delivers them in order).
PIECE_ACK_TIMEOUT_S = 10.0


class HeldAudioTrack(MediaStreamTrack):
    """``track`` as it is, except that its frames are discarded (in real time, so nothing
    queues up) until ``release``, and afterwards those that come too late.

    Live speech: a frame that reaches the link more than ``max_late_s`` after its media time
    (on the track's own clock, anchored at the earliest frame seen) is dropped, not sent.
    When this process's event loop falls behind (a loaded CPU), the frames queue up in the
    source (aiortc's remote track, a relay, a paced track catching up); sent late they
    made the link's audio rate fall far below 8 kbit/s under load and burst to 10-19
    kbit/s when the load went, over the link's 16 kbit/s budget (docs/CALL.md). Dropped,
    the speech has a gap, the rate never exceeds what real time allows, and the encoder
    (which follows the frames' pts, gap included) keeps the timestamps true."""

    kind = "audio"

    def __init__(self, track: MediaStreamTrack, max_late_s: float = MAX_LATE_AUDIO_S,
                 frame_s: float = 0.0) -> None:
        super().__init__()
        self.track = track
        self.released = False
        self.discarded = 0
        self.max_late_s = max_late_s
        self.frame_s = frame_s
        self.late = 0  # frames dropped for lateness
        self._anchor: float | None = None  # wall time (monotonic) of media time 0
        self._late_since: float | None = None  # start of the current run of late frames
        self._next = None  # a frame that did not join the last chunk (after a gap)

    def _too_late(self, frame: Any) -> bool:  # frame: an av.AudioFrame
        if frame.pts is None or frame.time_base is None:
            return False
        end = float((frame.pts + frame.samples) * frame.time_base)
        now = time.monotonic()
        if (self._anchor is None or now - end < self._anchor
                or now - end - self._anchor > RESYNC_LATE_S):
            # The earliest a frame has come is on time; far later than any queue can hold
            # is a jump of the track's clock (a restarted source), not lateness.
            self._anchor = now - end
        late = now - end - self._anchor > self.max_late_s
        if not late:
            self._late_since = None
        elif self._late_since is None:
            self._late_since = now
        elif now - self._late_since > DRIFT_RESYNC_S:
            # Late without a break for this long: the source's clock runs slow against
            # this one (a browser's audio clock drifted ~1 s in 35 minutes of the soak and
            # every frame after was dropped), not a queue. Its lateness is the new on time.
            self._anchor, self._late_since = now - end, None
            return False
        return late

    async def _next_frame(self) -> Any:  # an av.AudioFrame, released and on time
        if self._next is not None:
            frame, self._next = self._next, None
            return frame
        while True:
            frame = await self.track.recv()
            late = self._too_late(frame)
            if not self.released:
                self.discarded += 1
            elif late:
                self.late += 1
            else:
                return frame

    async def recv(self) -> Any:  # an av.AudioFrame
        """The next ``frame_s`` of speech as one frame (contiguous source frames joined):
        one trip through the event loop and the encoder's thread per Opus packet instead
        of one per 20 ms frame (a browser's audio): on a busy loop those trips were too
        slow for real time, and the camera link's speech fell to 1-2 kbit/s."""
        frames = [await self._next_frame()]
        first = frames[0]
        total = first.samples
        while total < self.frame_s * first.sample_rate:
            frame = await self._next_frame()
            last = frames[-1]
            if (frame.pts is None or last.pts is None or frame.pts != last.pts + last.samples
                    or frame.sample_rate != first.sample_rate
                    or frame.format.name != first.format.name
                    or frame.layout.name != first.layout.name):
                self._next = frame  # a gap or a change: it starts the next chunk
                break
            frames.append(frame)
            total += frame.samples
        if len(frames) == 1:
            return first
        joined = AudioFrame.from_ndarray(
            np.concatenate([f.to_ndarray() for f in frames], axis=1),
            format=first.format.name, layout=first.layout.name)
        joined.sample_rate = first.sample_rate
        joined.pts = first.pts
        joined.time_base = first.time_base
        return joined


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
        self.held_audio = (HeldAudioTrack(audio_track, frame_s=audio_frame_ms / 1000)
                           if audio_track is not None else None)
        if self.held_audio is not None:
            self.audio_sender = self.pc.addTrack(self.held_audio)
            use_low_bitrate_opus(self.audio_sender, audio_bitrate, audio_frame_ms)
        lean_link_transport(self.pc)
        self.emulator = LinkEmulator(link_shape) if link_shape is not None else None
        self.meter = WireMeter()
        self.epoch_unix_ms: float | None = None
        self.sent_bytes: dict[str, int] = {k.name: 0 for k in StreamKind}
        self.on_intra_request: Callable[[], None] | None = None
        # Speech waits for the worker's acknowledgement of the identity frame.
        self.media_held = True
        # Reliable-channel pieces not yet handed to the channel, sent one acknowledged
        # piece at a time by ``_pace_reliable``.
        self._reliable_pieces: list[bytes] = []
        self._pacer: asyncio.Task | None = None
        self.identity_acked_s: float | None = None  # after open() connected
        self._opened_at: float | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
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
        self._opened_at = time.monotonic()
        if self.media_held:
            self._hold_timer = asyncio.get_running_loop().call_later(
                IDENTITY_ACK_TIMEOUT_S, self.release_media)

    def release_media(self) -> None:
        """Stop holding the speech (the identity was acknowledged)."""
        if not self.media_held:
            return
        self.media_held = False
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        if self._opened_at is not None:
            self.identity_acked_s = time.monotonic() - self._opened_at
        if self.held_audio is not None:
            self.held_audio.released = True

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
            if kind != StreamKind.LOWRES:
                self._send_reliable(kind, data)
            elif self.lowres.readyState == "open":
                self.lowres.send(data)
                self.sent_bytes[kind.name] += len(data)

    def _send_reliable(self, kind: StreamKind, data: bytes) -> None:
        """In order, after what is still being paced: a small packet as it is, a large
        one (the identity frame) in acknowledged pieces."""
        if self.reliable.readyState != "open":
            return
        self.sent_bytes[kind.name] += len(data)
        self._reliable_pieces.extend(split_message(data))
        if self._pacer is None or self._pacer.done():
            self._pacer = asyncio.ensure_future(self._pace_reliable())

    async def _pace_reliable(self) -> None:
        while self._reliable_pieces and self.reliable.readyState == "open":
            self.reliable.send(self._reliable_pieces.pop(0))
            if not self._reliable_pieces:
                break
            deadline = time.monotonic() + PIECE_ACK_TIMEOUT_S
            while channel_outstanding(self.pc, self.reliable) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)

    def _on_control(self, message: bytes | str) -> None:
        if not isinstance(message, str) or len(message) > 4096:
            return
        try:
            msg = json.loads(message)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("type") == "identity-ack":
            self.release_media()
        elif msg.get("type") == "intra-request" and self.on_intra_request:
            self.on_intra_request()

    async def stats(self) -> dict[str, int]:
        out = await link_stats(self.pc)
        out.update(self.meter.snapshot())
        out.update({f"sent_{k.lower()}": v for k, v in self.sent_bytes.items()})
        out["held_audio_frames"] = self.held_audio.discarded if self.held_audio else 0
        out["late_audio_frames"] = self.held_audio.late if self.held_audio else 0
        if self.identity_acked_s is not None:
            out["identity_acked_ms"] = int(self.identity_acked_s * 1000)
        return out

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"

    async def close(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        if self._pacer is not None:
            self._pacer.cancel()
        await self.router.close_session(self.receiver_peer, self.session)
        await close_peer_connection(self.pc)
