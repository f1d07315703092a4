"""Process-wide fixes to aioice, aiortc and asyncio for calls on a busy machine, applied
when this module is imported (``server/transport.py`` imports it).

- ``patient_ice_consent``: ICE consent freshness as RFC 7675 has it, not aioice's six
  500 ms misses in a row, which ended healthy connections on a busy machine.
- ``fast_audio_level``: aiortc's per-frame audio level in numpy instead of a Python loop
  over every sample, on the event loop.
- ``draining_udp_reads``: a UDP socket is read until empty each time the event loop finds
  it readable, not one datagram per loop iteration.
- ``responsive_event_loop``: the GIL's switch interval 5 -> 1 ms.
- ``enable_loopback_candidates`` (on request): aioice offers a 127.0.0.1 host candidate.

Every private attribute of aiortc, aioice or asyncio that the server touches, here and in
``server/link_tuning.py``, ``server/audio_tracks.py``, ``server/link_emulator.py`` and
``server/wire_meter.py`` (written for aiortc 1.16.0 and aioice 0.13.0; ``AIORTC_PRIVATE`` lists them, and
``tests/test_transport.py`` checks that each still exists in the installed versions):
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import logging
import math
import random
import time
from typing import Any

import aioice.ice
import aiortc.rtp
import numpy as np
from aioice import stun
from av import AudioFrame

log = logging.getLogger(__name__)

#: (owner, attribute, where it is used): the private parts of the libraries this server
#: patches or reads, written for aiortc 1.16.0 and aioice 0.13.0.
AIORTC_PRIVATE: tuple[tuple[str, str, str], ...] = (
    ("aioice.ice.Connection", "query_consent", "patient_ice_consent (replaced)"),
    ("aioice.ice.Connection", "_query_consent_task", "patient_ice_consent"),
    ("aioice.ice.Connection", "_nominated", "patient_ice_consent"),
    ("aioice.ice", "get_host_addresses", "enable_loopback_candidates (replaced)"),
    ("aiortc.rtp", "compute_audio_level_dbov", "fast_audio_level (replaced)"),
    ("asyncio.selector_events._SelectorDatagramTransport", "_read_ready",
     "draining_udp_reads (replaced)"),
    ("aiortc.RTCRtpSender", "_RTCRtpSender__encoder", "link_tuning.use_low_bitrate_opus"),
    ("aiortc.RTCRtpSender", "_RTCRtpSender__rtp_header_extensions_map",
     "link_tuning.lean_link_audio"),
    ("aiortc.RTCRtpSender", "_send_rtcp", "link_tuning.lean_link_audio (wrapped)"),
    ("aiortc.RTCRtpSender", "_ssrc", "link_tuning.lean_link_audio"),
    ("aiortc.RTCRtpTransceiver", "_headerExtensions", "link_tuning.lean_link_audio"),
    ("aiortc.RTCDtlsTransport", "_send_rtp", "link_tuning.lean_link_audio (wrapped)"),
    ("aiortc.RTCDtlsTransport", "_send_data", "wire_meter.WireMeter (wrapped)"),
    ("aiortc.RTCDtlsTransport", "_srtp_profiles", "link_tuning.lean_link_transport"),
    ("aiortc.RTCDtlsTransport", "_get_stats", "wire_meter.link_stats"),
    ("aiortc.RTCCertificate", "_create_ssl_context", "link_tuning._prefer_chacha (wrapped)"),
    ("aiortc.RTCPeerConnection", "_RTCPeerConnection__certificates",
     "link_tuning.lean_link_transport"),
    ("aiortc.RTCSctpTransport", "_cwnd", "link_tuning._CappedWindowSctp (clamped)"),
    ("aiortc.RTCSctpTransport", "_update_advanced_peer_ack_point",
     "link_tuning._CappedWindowSctp (extended)"),
    ("aiortc.RTCSctpTransport", "_forward_tsn_chunk", "link_tuning._CappedWindowSctp"),
    ("aiortc.RTCSctpTransport", "_rto", "link_tuning._CappedWindowSctp"),
    ("aiortc.RTCSctpTransport", "_data_channel_queue", "link_tuning.channel_outstanding"),
    ("aiortc.RTCSctpTransport", "_outbound_queue", "link_tuning.channel_outstanding"),
    ("aiortc.RTCSctpTransport", "_sent_queue", "link_tuning.channel_outstanding"),
    ("aiortc.rtcsctptransport.DataChunk", "_acked", "link_tuning.channel_outstanding"),
    ("aiortc.rtcsctptransport.DataChunk", "_abandoned", "link_tuning.channel_outstanding"),
    ("aiortc.RTCIceTransport", "_send", "link_emulator, wire_meter (wrapped)"),
    ("aiortc.RTCIceTransport", "_connection", "wire_meter.WireMeter"),
    ("aiortc.RTCRtpReceiver", "_RTCRtpReceiver__jitter_buffer",
     "audio_tracks.SenderAudioClock"),
    ("aiortc.RTCRtpReceiver", "_handle_rtcp_packet", "audio_tracks.SenderAudioClock (wrapped)"),
)

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
