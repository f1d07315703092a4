"""aiortc plumbing for the talkcodec link and the viewer stream.

- ``new_peer_connection``: one bundled transport (BUNDLE group) (so the link's rate is one number), optional
  STUN/TURN servers, loopback host candidates when asked (aioice leaves 127.0.0.1 out).
- ``LowBitrateOpusEncoder`` / ``use_low_bitrate_opus``: aiortc fixes Opus at 96 kbit/s and
  20 ms frames; the talkcodec link sends speech at 8 kbit/s in 120 ms packets instead (60 ms
  to a low-latency receiver), set on that one RTP sender only; it also keeps the sampling
  clock of each packet.
- ``lean_link_transport`` / ``lean_link_audio``: fewer bytes per datagram on the link (SRTP
  profile, DTLS cipher, no RTP header extensions, sender reports every 5 s carrying the
  sampling time).
- ``PromptAudioJitterBuffer`` / ``SenderAudioClock``: the receiving side decodes each Opus
  packet on arrival and knows when it was captured (lip sync, ``view_tracks``).
- ``WireMeter``: every datagram the link sends, by stream; ``link_stats``: bytes counted by
  the transport itself (RTP payload, SCTP/DTLS/SRTP total).
- ``LinkEmulator``: a constrained link (rate, delay, loss) injected under DTLS/SRTP, where the
  ICE transport sends its datagrams.
- ``close_peer_connection``: ``pc.close()`` that a cancelled caller cannot break.
- ``patient_ice_consent`` (applied on import): ICE consent freshness as RFC 7675 has it, not
  aioice's six 500 ms misses in a row, which ended healthy connections on a busy machine.
- ``fast_audio_level`` (applied on import): aiortc's per-frame audio level in numpy instead
  of a Python loop over every sample, on the event loop.
- ``draining_udp_reads`` (applied on import): a UDP socket is read until empty each time the
  event loop finds it readable, not one datagram per loop iteration.
- ``responsive_event_loop`` (applied on import): the GIL's switch interval 5 -> 1 ms.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import contextvars
import fractions
import logging
import math
import random
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aiortc.rtp
import numpy as np
from aioice import stun
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs.opus import OpusEncoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80
from aiortc.rtcsctptransport import (
    USERDATA_MAX_LENGTH,
    DataChunk,
    ForwardTsnChunk,
    HeartbeatAckChunk,
    HeartbeatChunk,
    RTCSctpTransport,
    SackChunk,
    parse_packet,
)
from aiortc.rtp import HeaderExtensionsMap, RtcpByePacket, RtcpSrPacket, is_rtcp
from aiortc.utils import uint16_add
from av import AudioFrame, AudioResampler
from OpenSSL import SSL

from server.link_audio import (  # noqa: F401 - re-exported: the link's packet lengths
    DEFAULT_AUDIO_FRAME_MS,
    LOW_LATENCY_AUDIO_FRAME_MS,
    OPUS_FRAME_MS,
    link_audio_frame_ms,
)

LOWRES_CHANNEL = "talkcodec-lowres"  # unreliable, unordered: 8x8 frame packets
RELIABLE_CHANNEL = "talkcodec-reliable"  # reliable, ordered: CONFIG + IDENTITY, sync
DEFAULT_AUDIO_BITRATE = 8000
OPUS_CLOCK = 48000  # RTP clock of Opus
LINK_RTCP_INTERVAL_S = 5.0  # RFC 3550's nominal minimum; aiortc reports every 0.5-1.5 s
# SCTP congestion window of the link, at most: two full DATA chunks in flight. aiortc starts
# at three and bursts up to four (~5 kB): on a 16 kbit/s link that is 2.5 s of queue, so a
# bottleneck's queue dropped the identity frame's later chunks and their retransmissions
# waited for SCTP's timer (RTO 1-3 s). Two in flight keep the identity ack-clocked under
# the link's rate; the link's other SCTP traffic (8x8 messages, ~100 B) never needs more.
LINK_SCTP_MAX_CWND = 2 * USERDATA_MAX_LENGTH
# DTLS 1.2 record overhead: AES-GCM 13 + 8 (explicit nonce) + 16 (tag) = 37 B, ChaCha20-
# Poly1305 13 + 16 = 29 B, on every data-channel message.
LINK_DTLS_CIPHERS = (b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:"
                     b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")

log = logging.getLogger(__name__)

# ICE consent freshness (RFC 7675): a consent request every 4-6 s, each retransmitted (RTO
# 0.5 s, doubling: tries at 0, 0.5, 1.5, 3.5 s, given up at 7.5 s), several in flight at
# once; consent expires 30 s after the last authenticated answer.
CONSENT_INTERVAL_S = 5.0
CONSENT_RETRANSMISSIONS = 3
CONSENT_TIMEOUT_S = 30.0

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


async def _patient_query_consent(self: aioice.ice.Connection) -> None:
    """``aioice.ice.Connection.query_consent`` as RFC 7675 (section 5.1) has it.

    aioice sends one consent request every ~5 s with no retransmission and a 500 ms
    timeout, waits for it before the next, and closes the connection after six misses in
    a row. A busy event loop (the demo's one process runs signalling, the receiver worker,
    the sender agent and their media on one loop, on 2 shared cores) or a busy browser
    answers later than 500 ms for half a minute at a time: the browser camera's link ended
    after 25-55 s with "Consent to send expired" although both ends were alive and media
    flowed (docs/CALL.md, Long calls). Here each request is retransmitted and runs on its
    own, and only 30 s without any authenticated answer end the connection.
    """
    assert self.remote_password is not None
    key = self.remote_password.encode("utf8")
    last_answer = time.monotonic()
    checks: set[asyncio.Task] = set()

    async def check(pair: aioice.ice.CandidatePair) -> None:
        nonlocal last_answer
        request = self.build_request(pair, nominate=False)
        try:
            await pair.protocol.request(request, pair.remote_addr, integrity_key=key,
                                        retransmissions=CONSENT_RETRANSMISSIONS)
            last_answer = time.monotonic()
        except stun.TransactionError:
            pass
        except (OSError, asyncio.InvalidStateError):  # the socket is closing
            pass

    try:
        while True:
            await asyncio.sleep(CONSENT_INTERVAL_S * (0.8 + 0.4 * random.random()))
            silent = time.monotonic() - last_answer
            if silent > CONSENT_TIMEOUT_S:
                log.warning("ICE consent expired: no answer to consent checks for %.0f s", silent)
                self._query_consent_task = None
                await self.close()
                return
            for pair in list(self._nominated.values()):
                task = asyncio.ensure_future(check(pair))
                checks.add(task)
                task.add_done_callback(checks.discard)
    finally:
        for task in list(checks):
            task.cancel()


def patient_ice_consent() -> None:
    """Use ``_patient_query_consent`` for every ICE connection of this process."""
    aioice.ice.Connection.query_consent = _patient_query_consent  # type: ignore[method-assign]


AUDIO_LEVEL_SAMPLES = 480  # at most this many samples (evenly spread) per level


def _audio_level_dbov(frame: AudioFrame) -> int:
    """``aiortc.rtp.compute_audio_level_dbov`` (RFC 6465, Appendix A) in numpy, over at most
    ``AUDIO_LEVEL_SAMPLES`` evenly spread samples of the frame (the same value within a
    dB on speech). Integer numpy on a few hundred values keeps the GIL: a float dot
    product or a long ufunc releases it, and on a busy process getting it back cost the
    event loop up to a switch interval per audio frame."""
    samples = np.frombuffer(bytes(frame.planes[0]), np.int16)
    step = max(1, -(-len(samples) // AUDIO_LEVEL_SAMPLES))
    picked = samples[::step].astype(np.int64)
    energy = int((picked * picked).sum()) * step
    rms = math.sqrt(energy / (frame.samples * 32767.0 * 32767.0))
    if rms <= 0:
        return -127
    return round(min(0.0, max(-127.0, 20 * math.log10(rms))))


def fast_audio_level() -> None:
    """aiortc computes the audio level of every frame an audio RTP sender encodes, even when
    no extension carries it: 48,000-96,000 Python iterations a second per audio track,
    on the event loop (profiled: 18 % of a loaded call's loop time)."""
    aiortc.rtp.compute_audio_level_dbov = _audio_level_dbov


MAX_DATAGRAMS_PER_READ = 256


def _draining_read_ready(self: Any) -> None:  # self: a _SelectorDatagramTransport
    """asyncio's ``_SelectorDatagramTransport._read_ready``, reading until the socket is
    empty (at most ``MAX_DATAGRAMS_PER_READ``) instead of one datagram."""
    for _ in range(MAX_DATAGRAMS_PER_READ):
        if self._conn_lost:
            return
        try:
            data, addr = self._sock.recvfrom(self.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._protocol.error_received(exc)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - as asyncio does
            self._fatal_error(exc, "Fatal read error on datagram transport")
            return
        self._protocol.datagram_received(data, addr)


def draining_udp_reads() -> None:
    """asyncio reads one datagram per socket per event-loop iteration. On a busy loop (an
    iteration of 50-100 ms: the demo's one process, 2 shared cores) that is 10-20 datagrams
    a second, while a browser camera sends ~100: the kernel's receive queue (~200 kB)
    filled, every datagram on that socket waited ~20 s in it or was dropped (the browser
    measured a 20 s round trip), and the ICE consent answers never came back in time.
    Applies to the datagram transports created after the call (all of aioice's)."""
    asyncio.selector_events._SelectorDatagramTransport._read_ready = _draining_read_ready  # type: ignore[attr-defined]


CALL_SWITCH_INTERVAL_S = 0.001


def responsive_event_loop() -> None:
    """Python hands the GIL between threads every 5 ms. The call's event loop gives it up
    at every socket call and SRTP operation (hundreds a second) and then waits for a
    worker thread (receiver, encoder, face tracker) to hand it back: up to 5 ms each
    time, the loop's main cost on a loaded box. 1 ms bounds that wait."""
    import sys

    if sys.getswitchinterval() > CALL_SWITCH_INTERVAL_S:
        sys.setswitchinterval(CALL_SWITCH_INTERVAL_S)


patient_ice_consent()
fast_audio_level()
draining_udp_reads()
responsive_event_loop()


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
        if frame_ms not in OPUS_FRAME_MS:
            raise ValueError(f"Opus frame must be one of {OPUS_FRAME_MS} ms")
        self.codec.bit_rate = int(bitrate)
        self.codec.layout = "mono"
        self.codec.options = {"application": "voip", "vbr": "constrained",
                              "frame_duration": str(frame_ms)}
        self.resampler = AudioResampler(format="s16", layout="mono", rate=48000,
                                        frame_size=48 * frame_ms)
        # Sampling clock: (input start in 1/48000 s, wall-clock ms of its first sample) per
        # recent input frame, and the capture time of each packet made, oldest first.
        self._inputs: deque[tuple[float, float]] = deque(maxlen=64)
        self.captured_ms: deque[float] = deque(maxlen=64)

    def encode(self, frame: Any, force_keyframe: bool = False) -> Any:
        # The track hands a frame over once its last sample is captured.
        now_ms = time.time() * 1000
        if frame.pts is not None and frame.time_base is not None:
            self._inputs.append((float(frame.pts * frame.time_base * OPUS_CLOCK),
                                 now_ms - 1000.0 * frame.samples / frame.sample_rate))
        payloads, timestamp = super().encode(frame, force_keyframe)
        if payloads and self._inputs and self.first_packet_pts is not None:
            # The packet's pts is the input time of its first decoded sample (libopus's
            # 312-sample delay included): find the input frame it falls in.
            pts = timestamp + self.first_packet_pts
            start, at_ms = self._inputs[0]
            for s_, a_ in self._inputs:
                if s_ <= pts:
                    start, at_ms = s_, a_
            for i in range(len(payloads)):
                self.captured_ms.append(at_ms + (pts - start) * 1000.0 / OPUS_CLOCK
                                        + i * 1000.0 * self.resampler.frame_size / OPUS_CLOCK)
        return payloads, timestamp


def use_low_bitrate_opus(sender: RTCRtpSender, bitrate: int = DEFAULT_AUDIO_BITRATE,
                         frame_ms: int = DEFAULT_AUDIO_FRAME_MS) -> None:
    """Give this RTP sender the low-bitrate encoder (before it sends its first frame)."""
    # aiortc creates the encoder lazily when ``__encoder`` is None; setting it first is the
    # only per-sender hook it offers.
    sender._RTCRtpSender__encoder = LowBitrateOpusEncoder(bitrate, frame_ms)  # type: ignore[attr-defined]


NTP_UNIX_OFFSET_S = 2208988800


def lean_link_transport(pc: RTCPeerConnection) -> None:
    """Per-datagram savings on the talkcodec link, set before negotiation (on the link's
    sender side only; every cipher and profile here is one aiortc and browsers accept):

    - SRTP profile AES128_CM_HMAC_SHA1_80: a 10-byte auth tag per RTP packet instead of
      AEAD_AES_256_GCM's 16;
    - DTLS records in ChaCha20-Poly1305 first (server preference; GCM stays the fallback):
      no 8-byte explicit nonce on every data-channel message;
    - SCTP's congestion window capped at two full chunks (``LINK_SCTP_MAX_CWND``), so the
      identity frame does not burst past a narrow link's queue; a repeated FORWARD-TSN
      at most once per RTO (``_CappedWindowSctp``).
    """
    for dtls in _dtls_transports(pc):
        dtls._srtp_profiles = [SRTP_AES128_CM_SHA1_80]
    for cert in getattr(pc, "_RTCPeerConnection__certificates", []):
        _prefer_chacha(cert)
    if pc.sctp is not None:
        cap_sctp_window(pc.sctp)


class _CappedWindowSctp(RTCSctpTransport):
    """aiortc's SCTP transport with its congestion window clamped to ``LINK_SCTP_MAX_CWND``
    (aiortc assigns ``_cwnd`` in slow start, congestion avoidance and on timeouts; the clamp
    sits under all of them), and the same FORWARD-TSN sent at most once per RTO.

    aiortc sends a FORWARD-TSN (which tells the receiver to skip an abandoned 8x8 message)
    on every SACK until the peer acknowledges it. On a 16 kbit/s link the queue makes that
    take a second or more, so each lost 8x8 message cost ~10 FORWARD-TSN datagrams of ~85
    bytes: 2.9-4.1 kbit/s at 5 % loss, a fifth of the link, whose queue then dropped more
    (issue 16, BENCHMARKS.md). RFC 3758 asks for it again when it may have been lost: once
    per RTO (aiortc's RTO, >= 1 s) does that; a new cumulative TSN still goes out at once."""

    def _update_advanced_peer_ack_point(self) -> None:
        super()._update_advanced_peer_ack_point()
        chunk = self._forward_tsn_chunk
        if chunk is None:
            return
        now = time.monotonic()
        last = self.__dict__.get("_talkcodec_forward_tsn")
        if last is not None and last[0] == chunk.cumulative_tsn and now - last[1] < self._rto:
            self._forward_tsn_chunk = None  # the same one is on its way
        else:
            self.__dict__["_talkcodec_forward_tsn"] = (chunk.cumulative_tsn, now)

    @property
    def _cwnd(self) -> int:
        return self.__dict__["_talkcodec_cwnd"]

    @_cwnd.setter
    def _cwnd(self, value: int) -> None:
        self.__dict__["_talkcodec_cwnd"] = min(int(value), LINK_SCTP_MAX_CWND)


def channel_outstanding(pc: RTCPeerConnection, channel: Any) -> bool:
    """Some of ``channel``'s messages are not yet acknowledged by the peer: buffered in
    the data channel, queued in SCTP, or sent and not yet acknowledged (aiortc keeps a
    chunk in its sent queue until the cumulative ack passes it)."""
    if channel.bufferedAmount > 0:
        return True
    sctp = pc.sctp
    if sctp is None or channel.id is None:
        return False
    sid = channel.id
    if any(ch is channel for ch, _, _ in sctp._data_channel_queue):
        return True
    queued = (*sctp._outbound_queue, *sctp._sent_queue)
    return any(c.stream_id == sid and not c._acked and not c._abandoned for c in queued)


def cap_sctp_window(sctp: RTCSctpTransport) -> None:
    """At most ``LINK_SCTP_MAX_CWND`` bytes of DATA in flight on this SCTP transport."""
    cwnd = sctp.__dict__.pop("_cwnd", LINK_SCTP_MAX_CWND)
    sctp.__class__ = _CappedWindowSctp
    sctp._cwnd = cwnd


def _prefer_chacha(cert: object) -> None:
    if getattr(cert, "_talkcodec_chacha", False):
        return
    create = cert._create_ssl_context  # type: ignore[attr-defined]

    def create_ssl_context(srtp_profiles: Any) -> Any:
        ctx = create(srtp_profiles)
        ctx.set_cipher_list(LINK_DTLS_CIPHERS)
        ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
        return ctx

    cert._create_ssl_context = create_ssl_context  # type: ignore[attr-defined]
    cert._talkcodec_chacha = True  # type: ignore[attr-defined]


def lean_link_audio(pc: RTCPeerConnection, sender: RTCRtpSender,
                    rtcp_interval_s: float = LINK_RTCP_INTERVAL_S) -> None:
    """Once the answer is applied (before the transport connects), on the link's Opus RTP
    sender: no RTP header extensions (the negotiated mid + audio level cost 8 bytes a
    packet; the receiver routes by SSRC and uses neither), and sender reports every
    ``rtcp_interval_s`` instead of every 0.5-1.5 s."""
    for transceiver in pc.getTransceivers():
        if transceiver.sender is sender:
            # aiortc configures the sender from this list when the transport connects.
            transceiver._headerExtensions = []
    sender._RTCRtpSender__rtp_header_extensions_map = HeaderExtensionsMap()  # type: ignore[attr-defined]
    if getattr(sender, "_talkcodec_rtcp", False):
        return
    send_rtcp = sender._send_rtcp
    last = [float("-inf")]
    sampled: list[tuple[int, float]] = []  # (RTP timestamp, capture unix ms) of the last packet
    dtls = sender.transport
    send_rtp = dtls._send_rtp

    async def noting_send_rtp(data: bytes) -> None:
        encoder = getattr(sender, "_RTCRtpSender__encoder", None)
        captured = getattr(encoder, "captured_ms", None)
        if (captured and not is_rtcp(data) and len(data) >= 12
                and int.from_bytes(data[8:12], "big") == sender._ssrc):
            sampled[:] = [(int.from_bytes(data[4:8], "big"), captured.popleft())]
        await send_rtp(data)

    dtls._send_rtp = noting_send_rtp  # type: ignore[method-assign]

    async def throttled(packets: list) -> None:
        now = time.monotonic()
        bye = any(isinstance(p, RtcpByePacket) for p in packets)
        if not bye and not sampled:
            return  # nothing sent yet (the link holds its speech until the identity is in)
        if bye or now - last[0] >= rtcp_interval_s:
            last[0] = now
            for p in packets:
                if isinstance(p, RtcpSrPacket) and sampled:
                    # RFC 3550: the report's NTP time is the sampling instant of its RTP
                    # timestamp (aiortc writes the time the last packet was sent).
                    rtp, at_ms = sampled[0]
                    delta = _signed32(p.sender_info.rtp_timestamp - rtp)
                    p.sender_info.ntp_timestamp = _ntp(at_ms + delta * 1000.0 / OPUS_CLOCK)
            await send_rtcp(packets)

    sender._send_rtcp = throttled  # type: ignore[method-assign]
    sender._talkcodec_rtcp = True  # type: ignore[attr-defined]


def _signed32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def _ntp(unix_ms: float) -> int:
    seconds = unix_ms / 1000.0 + NTP_UNIX_OFFSET_S
    return (int(seconds) << 32) | int((seconds % 1) * (1 << 32))


class PromptAudioJitterBuffer(JitterBuffer):
    """The link's audio at the receiver: each Opus RTP packet is a whole frame, so it goes
    to the decoder as it arrives. aiortc's audio buffer first holds 4 packets back
    (4 x 120 ms = 480 ms with the link's Opus frames). Packets older than the newest one
    (late, duplicate) are dropped; a lost one is a gap (Opus PLC is not used by aiortc)."""

    def __init__(self) -> None:
        super().__init__(capacity=16)
        self._newest: int | None = None
        self.first_timestamp: int | None = None  # RTP timestamp of decoded pts 0

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:  # packet: an RtpPacket
        seq = packet.sequence_number
        if self._newest is not None and not 0 < uint16_add(seq, -self._newest) < 0x8000:
            return False, None
        self._newest = seq
        if self.first_timestamp is None:
            self.first_timestamp = packet.timestamp
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)




class SenderAudioClock:
    """When the sender captured each decoded audio frame, on the sender's clock.

    The link's sender reports pair an RTP timestamp with the wall-clock time its first
    decoded sample was captured (``lean_link_audio`` makes them so; RFC 3550's meaning).
    So a decoded frame (pts in 1/48000 s from the first packet, whose RTP timestamp the
    prompt jitter buffer kept) was captured at ``sr_time + (rtp - sr_rtp) / 48 kHz``: on
    the same clock as the talkcodec stream's epoch, whatever the network delay.
    ``capture_unix_ms`` is None until the first report (the caller then falls back to
    arrival time)."""

    def __init__(self, rtp_receiver: object) -> None:
        self.buffer = PromptAudioJitterBuffer()
        rtp_receiver._RTCRtpReceiver__jitter_buffer = self.buffer  # type: ignore[attr-defined]
        self.sr: tuple[float, int] | None = None  # (unix ms, RTP timestamp)
        handle = rtp_receiver._handle_rtcp_packet  # type: ignore[attr-defined]

        async def on_rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                ntp = packet.sender_info.ntp_timestamp
                unix_ms = ((ntp >> 32) - NTP_UNIX_OFFSET_S + (ntp & 0xFFFFFFFF) / 2**32) * 1000
                self.sr = (unix_ms, packet.sender_info.rtp_timestamp)
            await handle(packet)

        rtp_receiver._handle_rtcp_packet = on_rtcp  # type: ignore[attr-defined]

    def capture_unix_ms(self, frame: AudioFrame) -> float | None:
        first = self.buffer.first_timestamp
        if self.sr is None or first is None or frame.pts is None:
            return None
        rate = frame.sample_rate or OPUS_CLOCK
        rtp = first + int(frame.pts * OPUS_CLOCK / rate)
        return self.sr[0] + _signed32(rtp - self.sr[1]) * 1000.0 / OPUS_CLOCK


def prompt_audio_receiver(rtp_receiver: object) -> SenderAudioClock:
    """Give this (audio) RTP receiver the prompt jitter buffer; returns its capture clock."""
    return SenderAudioClock(rtp_receiver)


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """``pc.close()`` that a cancelled caller cannot break.

    When the remote end closes, aiortc starts its own ``close()`` task; a second caller
    awaits that task's "closed" future. If that caller is cancelled (a call shutting down)
    the future is cancelled with it, and aiortc's task then fails on ``set_result``:
    "Task exception was never retrieved ... InvalidStateError". Shielded, the caller's
    cancellation leaves the close running."""
    await asyncio.shield(pc.close())


class PacedAudioTrack(MediaStreamTrack):
    """An audio track that hands out ``PTIME_S`` frames of ``RATE`` mono s16 in real time;
    a subclass supplies the samples (``_next_samples``)."""

    kind = "audio"
    RATE = 48000
    PTIME_S = 0.02

    def __init__(self, ptime_s: float | None = None) -> None:
        super().__init__()
        if ptime_s is not None:
            self.PTIME_S = ptime_s
        self._start: float | None = None
        self._sent = 0

    def _next_samples(self, n: int) -> np.ndarray:
        """The next ``n`` samples, int16."""
        raise NotImplementedError

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = int(self.PTIME_S * self.RATE)
        if self._start is None:
            self._start = time.time()
        # A frame leaves when its last sample is due (the first one too: a 120 ms frame
        # handed over at its start held 120 ms of samples not fed yet, and everything
        # after it came that much late). Behind: at once, without a loop iteration each.
        wait = self._start + (self._sent + n) / self.RATE - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        return self._frame(self._next_samples(n))

    def _frame(self, samples: np.ndarray) -> AudioFrame:
        frame = AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = self.RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, self.RATE)
        self._sent += len(samples)
        return frame


class PcmAudioTrack(PacedAudioTrack):
    """An audio track fed with 16 kHz mono float32 PCM (``feed``), paced in real time;
    silence where nothing was fed in time."""

    RATE = 16000

    def __init__(self, max_buffer_s: float = 2.0, ptime_s: float | None = None) -> None:
        super().__init__(ptime_s)
        self._buffer = np.zeros(0, np.float32)
        self._max = int(max_buffer_s * self.RATE)

    def feed(self, pcm: np.ndarray) -> None:
        pcm = np.clip(np.asarray(pcm, np.float32).reshape(-1), -1.0, 1.0)
        self._buffer = np.concatenate([self._buffer, pcm])[-self._max:]

    def _next_samples(self, n: int) -> np.ndarray:
        chunk = self._buffer[:n]
        self._buffer = self._buffer[n:]
        if len(chunk) < n:
            chunk = np.concatenate([chunk, np.zeros(n - len(chunk), np.float32)])
        return (chunk * 32767).astype(np.int16)


class FedAudioTrack(PcmAudioTrack):
    """16 kHz mono PCM fed in real time by its producer (``FileSender`` feeds each canvas
    frame's audio at that frame's time): a ``PTIME_S`` frame leaves as soon as its last
    sample is fed, so the time it leaves (what the link's encoder stamps as its capture,
    ``LowBitrateOpusEncoder``) is when it was fed, however late this track started or
    its producer runs. (``PcmAudioTrack`` keeps its own clock: the offset between the
    feeding and that clock, set by start-up order, went into the speech's timestamps.)"""

    def __init__(self, max_buffer_s: float = 2.0, ptime_s: float | None = None) -> None:
        super().__init__(max_buffer_s, ptime_s)
        self._fed = asyncio.Event()

    def feed(self, pcm: np.ndarray) -> None:
        super().feed(pcm)
        self._fed.set()

    def stop(self) -> None:
        super().stop()
        self._fed.set()

    async def recv(self) -> AudioFrame:
        n = int(self.PTIME_S * self.RATE)
        while self.readyState == "live" and len(self._buffer) < n:
            self._fed.clear()
            await self._fed.wait()
        if self.readyState != "live":
            raise MediaStreamError
        return self._frame(self._next_samples(n))


@dataclass
class LinkShape:
    """An emulated link: bottleneck rate, one-way delay, random loss, drop-tail queue.

    ``max_queue_ms``: a datagram is dropped when it would wait longer than this behind the
    ones queued before it (a queue of ``rate x max_queue_ms``: 2 kB at 16 kbit/s, one full
    SCTP packet waiting behind another; 400 ms, 800 B, could not hold even one)."""

    rate_bps: float = 16000.0
    delay_ms: float = 100.0
    loss: float = 0.05
    max_queue_ms: float = 1000.0
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


def _dtls_transports(pc: RTCPeerConnection) -> list:
    found = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        found.append(pc.sctp.transport)
    unique: list[Any] = []
    for t in found:
        if all(t is not u for u in unique):
            unique.append(t)
    return unique


def _ice_transports(pc: RTCPeerConnection) -> list:
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
        for dtls in _dtls_transports(pc):
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
        for ice in _ice_transports(pc):
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
