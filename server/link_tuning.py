"""Per-link settings of the talkcodec link's sender, fewer bytes per datagram and a link
that a narrow bottleneck does not choke (aiortc's private parts: ``server/aiortc_patches.py``
lists them).

- ``LowBitrateOpusEncoder`` / ``use_low_bitrate_opus``: aiortc fixes Opus at 96 kbit/s and
  20 ms frames; the talkcodec link sends speech at 8 kbit/s in 120 ms packets instead (60 ms
  to a low-latency receiver), set on that one RTP sender only; it also keeps the sampling
  clock of each packet.
- ``lean_link_transport`` / ``lean_link_audio``: fewer bytes per datagram on the link (SRTP
  profile, DTLS cipher, no RTP header extensions, sender reports every 5 s carrying the
  sampling time); SCTP's window capped and its FORWARD-TSN not repeated on every SACK.
- ``channel_outstanding``: whether a data channel still has unacknowledged messages.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.codecs.opus import OpusEncoder
from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80
from aiortc.rtcsctptransport import USERDATA_MAX_LENGTH, RTCSctpTransport
from aiortc.rtp import HeaderExtensionsMap, RtcpByePacket, RtcpSrPacket, is_rtcp
from av import AudioFrame, AudioResampler
from OpenSSL import SSL

from server.audio_tracks import OPUS_CLOCK, ntp_of_unix_ms, signed32
from server.link_audio import DEFAULT_AUDIO_FRAME_MS, OPUS_FRAME_MS
from server.transport import dtls_transports

DEFAULT_AUDIO_BITRATE = 8000
# Silence put through the resampler before the first input at another rate than 48 kHz,
# ms: more than its filter holds back (1 ms at 16 kHz, 2 ms at 8 kHz; ``LowBitrateOpusEncoder``).
RESAMPLER_PRIME_MS = 4
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
        self._primed = False

    def _prime(self, frame: Any) -> None:
        """Before the first input at another rate than 48 kHz, a few ms of silence through
        the resampler. Its filter holds back ~1 ms of output (at 16 kHz), so a chunk of one
        packet's length made a packet only when the next chunk came: the speech of a file
        sender (16 kHz) left one packet late, +60 ms in low-latency mode (the A/V offset was
        +66 to +69 ms, BENCHMARKS.md "The call"). Primed, each chunk makes its packet."""
        self._primed = True
        if (frame.sample_rate == 48000 or frame.pts is None or frame.time_base is None
                or frame.format.name != "s16"):
            return
        pad = -(-frame.sample_rate * RESAMPLER_PRIME_MS // 1000)
        channels = len(frame.layout.channels)
        silence = AudioFrame.from_ndarray(np.zeros((1, pad * channels), np.int16),
                                          format="s16", layout=frame.layout.name)
        silence.sample_rate = frame.sample_rate
        silence.time_base = frame.time_base
        silence.pts = frame.pts - int(round(pad / (frame.sample_rate * frame.time_base)))
        super().encode(silence)

    def encode(self, frame: Any, force_keyframe: bool = False) -> Any:
        # The track hands a frame over once its last sample is captured.
        now_ms = time.time() * 1000
        if not self._primed:
            self._prime(frame)
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
    for dtls in dtls_transports(pc):
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
                    delta = signed32(p.sender_info.rtp_timestamp - rtp)
                    p.sender_info.ntp_timestamp = ntp_of_unix_ms(at_ms + delta * 1000.0 / OPUS_CLOCK)
            await send_rtcp(packets)

    sender._send_rtcp = throttled  # type: ignore[method-assign]
    sender._talkcodec_rtcp = True  # type: ignore[attr-defined]
