"""aiortc plumbing on loopback: data channels, 8 kbit/s Opus proven on the wire, the link's
per-packet overheads on the wire, link emulation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from codec.data import data_dir
from server.aiortc_patches import enable_loopback_candidates
from server.audio_tracks import PcmAudioTrack
from server.link_emulator import LinkEmulator, LinkShape
from server.link_tuning import (
    LINK_SCTP_MAX_CWND,
    lean_link_audio,
    lean_link_transport,
    use_low_bitrate_opus,
)
from server.transport import (
    LOWRES_CHANNEL,
    RELIABLE_CHANNEL,
    accept_answer,
    make_answer,
    make_offer,
    new_peer_connection,
    wait_connected,
)
from server.wire_meter import WireMeter, link_stats

DATA = data_dir()
SPEECH_CLIP = DATA / "clips" / "OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout=timeout))


def speech(seconds: float) -> np.ndarray:
    if not SPEECH_CLIP.exists():
        pytest.skip("shared data not present")
    from codec.sender.video_io import read_audio

    pcm = read_audio(SPEECH_CLIP, max_seconds=seconds)
    assert pcm is not None and len(pcm) > 16000
    return pcm


async def _connect(sender_pc, receiver_pc) -> None:
    await accept_answer(sender_pc, await make_answer(receiver_pc, await make_offer(sender_pc)))
    await wait_connected(sender_pc)
    await wait_connected(receiver_pc)


async def _audio_rate(pcm: np.ndarray, low_bitrate: bool) -> tuple[float, float]:
    enable_loopback_candidates(only_loopback=True)
    tx, rx = new_peer_connection(), new_peer_connection()
    track = PcmAudioTrack()
    track.feed(pcm)
    sender = tx.addTrack(track)
    if low_bitrate:
        use_low_bitrate_opus(sender)
    received = []

    @rx.on("track")
    def on_track(t) -> None:
        async def drain() -> None:
            while True:
                try:
                    received.append(await t.recv())
                except Exception:  # noqa: BLE001 - track ended
                    return

        asyncio.ensure_future(drain())

    await _connect(tx, rx)
    await asyncio.sleep(0.5)
    start = await link_stats(tx)
    seconds = 3.0
    await asyncio.sleep(seconds)
    end = await link_stats(tx)
    await tx.close()
    await rx.close()
    decoded_s = sum(f.samples / f.sample_rate for f in received)
    return (end["audio_rtp_payload"] - start["audio_rtp_payload"]) * 8 / seconds, decoded_s


def test_opus_is_8kbps_on_the_wire_not_aiortcs_96():
    pcm = speech(5.0)
    low, decoded_s = run(_audio_rate(pcm, low_bitrate=True))
    default, _ = run(_audio_rate(pcm, low_bitrate=False))
    assert decoded_s > 3.0, decoded_s  # speech decoded at the far end
    assert 4000 < low <= 8000 * 1.1, low
    assert default > 30000, default  # aiortc's own setting, for contrast


def test_lean_link_overheads_on_the_wire():
    """What the link's sender hands to ICE, per packet: Opus RTP with no header
    extensions and a 10-byte SRTP tag (12 + 10 B), 120 ms packets, a sender report per
    5 s, and 8x8 messages in ChaCha20-Poly1305 DTLS records (SCTP 28 + DTLS 29 B)."""
    pcm = speech(6.0)

    async def scenario():
        enable_loopback_candidates(only_loopback=True)
        tx, rx = new_peer_connection(), new_peer_connection()
        lowres = tx.createDataChannel(LOWRES_CHANNEL, ordered=False, maxRetransmits=0)
        track = PcmAudioTrack()
        track.feed(pcm)
        sender = tx.addTrack(track)
        use_low_bitrate_opus(sender)
        lean_link_transport(tx)
        meter = WireMeter()
        got = []
        rx.on("datachannel", lambda ch: ch.on("message", got.append))
        await accept_answer(tx, await make_answer(rx, await make_offer(tx)))
        lean_link_audio(tx, sender)
        meter.attach(tx)
        await wait_connected(tx)
        while lowres.readyState != "open":
            await asyncio.sleep(0.02)
        meter.attach(tx, lowres_channels=[lowres])
        await asyncio.sleep(1.0)
        s0, w0 = await link_stats(tx), meter.snapshot()
        for i in range(20):  # 4 s of 8x8 packets at 5 fps (36 bytes: a typical one)
            lowres.send(bytes([i]) * 36)
            await asyncio.sleep(0.2)
        s1, w1 = await link_stats(tx), meter.snapshot()
        await tx.close()
        await rx.close()
        return ({k: s1[k] - s0[k] for k in s1},
                {k: w1.get(k, 0) - w0.get(k, 0) for k in w1}, len(got))

    stats, wire, received = run(scenario())
    assert received >= 20
    packets = wire["wire_pkts_rtp_audio"]
    assert packets == stats["audio_packets"] and 28 <= packets <= 38, wire  # 8.3 a second
    per_packet = (wire["wire_rtp_audio"] - stats["audio_rtp_payload"]) / packets
    assert per_packet == 12 + 10, per_packet
    assert wire["wire_pkts_sctp_data_lowres"] == 20, wire
    per_message = wire["wire_sctp_data_lowres"] / 20 - 36
    assert per_message == 28 + 29, per_message
    assert wire.get("wire_pkts_rtcp", 0) <= 1, wire
    dtls_total = sum(v for k, v in wire.items()
                     if k.startswith("wire_") and "pkts" not in k and k != "wire_stun")
    assert dtls_total == stats["transport_total"], (dtls_total, stats)


def test_data_channels_carry_packets_both_ways_of_reliability():
    async def scenario():
        enable_loopback_candidates(only_loopback=True)
        tx, rx = new_peer_connection(), new_peer_connection()
        lowres = tx.createDataChannel(LOWRES_CHANNEL, ordered=False, maxRetransmits=0)
        reliable = tx.createDataChannel(RELIABLE_CHANNEL)
        got: dict[str, list[bytes]] = {LOWRES_CHANNEL: [], RELIABLE_CHANNEL: []}
        done = asyncio.Event()

        @rx.on("datachannel")
        def on_channel(channel) -> None:
            @channel.on("message")
            def on_message(message) -> None:
                got[channel.label].append(message)
                if len(got[RELIABLE_CHANNEL]) == 1 and len(got[LOWRES_CHANNEL]) == 20:
                    done.set()

        await _connect(tx, rx)
        while reliable.readyState != "open" or lowres.readyState != "open":
            await asyncio.sleep(0.02)
        reliable.send(b"I" * 5000)  # an identity frame is bigger than one datagram
        for i in range(20):
            lowres.send(bytes([i]) * 30)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(done.wait(), 10)
        assert got[RELIABLE_CHANNEL] == [b"I" * 5000]
        assert sorted(m[0] for m in got[LOWRES_CHANNEL]) == list(range(20))
        assert lowres.ordered is False and lowres.maxRetransmits == 0
        await tx.close()
        await rx.close()

    run(scenario())


def test_cli_offers_the_opus_frame_lengths_the_link_accepts():
    from server import cli, link_audio

    assert cli.OPUS_FRAME_MS == link_audio.OPUS_FRAME_MS
    assert link_audio.link_audio_frame_ms(False) == link_audio.DEFAULT_AUDIO_FRAME_MS == 120
    assert link_audio.link_audio_frame_ms(True) == 60


def test_every_private_library_part_the_server_touches_is_listed_and_still_there():
    """``AIORTC_PRIVATE`` names each private attribute of aiortc, aioice and asyncio the
    server patches or reads; each still appears in the installed library's source (a new
    aiortc that renames one fails here, not in a call), and every private attribute the
    server's aiortc modules write on a library object is in the list."""
    import importlib
    import inspect
    import re

    from server.aiortc_patches import AIORTC_PRIVATE

    for owner, attr, _ in AIORTC_PRIVATE:
        module_name, _, cls_name = owner.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError):
            obj = importlib.import_module(owner)  # a module-level attribute
        if hasattr(obj, attr):
            continue
        source = inspect.getsource(obj)
        mangled = re.match(r"_([A-Za-z]+)(__\w+)$", attr)
        wanted = mangled.group(2) if mangled else attr
        pattern = rf"\.{re.escape(wanted)}\b|^\s*{re.escape(wanted)}\s*:"  # use, or annotation
        assert re.search(pattern, source, re.M), f"{owner}.{attr} is gone"
    listed = {attr for _, attr, _ in AIORTC_PRIVATE}
    here = Path(__file__).resolve().parent.parent / "server"
    for name in ("link_tuning", "audio_tracks", "link_emulator", "wire_meter"):
        text = (here / f"{name}.py").read_text()
        for attr in re.findall(r"\b(?:sender|dtls|rtp_receiver|transceiver|sctp|cert|ice|"
                               r"transport)\.(_[A-Za-z]\w*)\b", text):
            if not attr.startswith("_talkcodec"):
                assert attr in listed, f"{name}.py touches {attr}, not in AIORTC_PRIVATE"


def test_link_emulator_rate_delay_and_loss():
    async def scenario():
        shape = LinkShape(rate_bps=16000, delay_ms=100, loss=0.2, max_queue_ms=10_000, seed=3)
        emu = LinkEmulator(shape)
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []

        async def deliver(data: bytes) -> None:
            arrivals.append(loop.time())

        send = emu.wrap(deliver)
        t0 = loop.time()
        for _ in range(100):
            await send(b"x" * 72)  # 100 bytes on the wire each = 50 ms at 16 kbit/s
        await asyncio.sleep(0.1 + 100 * 0.05 * 0.8 + 0.3)
        assert emu.dropped == 100 - len(arrivals)
        assert 10 <= emu.dropped <= 30  # ~20 % loss
        assert arrivals[0] - t0 >= 0.1 + 0.05 - 0.01  # serialisation + delay
        mean_gap = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
        assert mean_gap >= 0.05 * 0.95  # never faster than the bottleneck rate
        # Drop-tail: a short queue refuses a burst.
        tight = LinkEmulator(LinkShape(rate_bps=16000, delay_ms=0, loss=0, max_queue_ms=200))
        tsend = tight.wrap(deliver)
        for _ in range(20):
            await tsend(b"x" * 72)
        assert tight.dropped >= 14

    run(scenario())


def test_link_sctp_window_is_capped_at_two_chunks():
    """The link's SCTP never has more than two full chunks in flight (an identity frame
    burst past a narrow link's queue otherwise; docs/CALL.md, Constrained link), whatever
    aiortc's congestion control assigns; smaller windows stay as they are."""

    async def scenario():
        pc = new_peer_connection()
        pc.createDataChannel(RELIABLE_CHANNEL)
        lean_link_transport(pc)
        seen = [pc.sctp._cwnd]
        pc.sctp._cwnd = 100 * LINK_SCTP_MAX_CWND  # slow start would grow it
        seen.append(pc.sctp._cwnd)
        pc.sctp._cwnd = 1000  # a timeout shrinks it
        seen.append(pc.sctp._cwnd)
        await pc.close()
        return seen

    assert run(scenario()) == [LINK_SCTP_MAX_CWND, LINK_SCTP_MAX_CWND, 1000]


def test_repeated_forward_tsn_goes_out_at_most_once_per_rto() -> None:
    """aiortc re-sends a FORWARD-TSN on every SACK until acknowledged; on a slow link that
    was ~10 datagrams per lost 8x8 message (issue 16). The link's SCTP sends the same one
    again only after an RTO, a new one at once."""
    from collections import deque

    from aiortc.rtcsctptransport import RTCSctpTransport

    from server.link_tuning import _CappedWindowSctp

    sctp = object.__new__(RTCSctpTransport)
    sctp.__dict__.update(_last_sacked_tsn=10, _advanced_peer_ack_tsn=12, _outbound_queue=deque(),
                         _sent_queue=deque(), _forward_tsn_streams={}, _rto=1.0,
                         _forward_tsn_chunk=None)
    sctp.__class__ = _CappedWindowSctp
    sctp._update_advanced_peer_ack_point()  # first time: goes out
    assert sctp._forward_tsn_chunk is not None and sctp._forward_tsn_chunk.cumulative_tsn == 12
    sctp._forward_tsn_chunk = None  # sent
    sctp._update_advanced_peer_ack_point()  # the next SACK, still unacknowledged: held back
    assert sctp._forward_tsn_chunk is None
    sctp._advanced_peer_ack_tsn = 13  # another message abandoned: a new one, at once
    sctp._update_advanced_peer_ack_point()
    assert sctp._forward_tsn_chunk is not None and sctp._forward_tsn_chunk.cumulative_tsn == 13
    sctp._forward_tsn_chunk = None
    sctp._rto = 0.0  # an RTO later: the same one again
    sctp._update_advanced_peer_ack_point()
    assert sctp._forward_tsn_chunk is not None
