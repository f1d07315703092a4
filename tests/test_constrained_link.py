"""A call through an emulated link at default live settings (8x8 stream with the
previous packet's copy, Opus at 6 kbit/s in 120 ms packets): 16 kbit/s counted with
UDP/IPv4 headers, 100 ms one-way delay, 5 % random loss, a drop-tail queue of 1 s at the
link rate, injected under DTLS/SRTP on the sender's side. The first face comes within 1.5 s
(issue 14: the 8x8 stream flows from the start and the ``neural`` receiver shows the voice
face until the identity frame, sent in acknowledged pieces, is in; the speech waits for the
identity's acknowledgement), video and speech keep flowing, and after a 2 s total outage
the video comes back within a few seconds (next intra frame).

The link's steady state is ~16 kbit/s with UDP/IPv4 headers, so the call runs at the link's
capacity (asserted: at most 17 offered once the identity is in; issue 16). Before the
identity-first start it failed at the start (first face after ~10 s, 16 frames in the 6 s
before the outage; docs/CALL.md, Constrained link), and with the 8x8 stream held until the
identity's acknowledgement the first face came after 4.5-5.5 s."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from codec.receiver.registry import neural_available
from server.link_emulator import LinkShape
from server.probe_viewer import probe_call
from tests._call_media import CALL_CLIP

RATE_BPS, DELAY_MS, LOSS = 16000.0, 100.0, 0.05
BEFORE_OUTAGE_S, OUTAGE_S, AFTER_OUTAGE_S = 12.0, 2.0, 8.0
FIRST_FACE_S = 1.5  # issue 14's bar: the first face at most this long after connecting
BUDGET_SETTLE_S = 1.0  # after the identity's acknowledgement, before the budget's window
BUDGET_WINDOW_S = 5.0  # the budget's window, at least (the outage waits for its end)
BUDGET_KBPS = 17.0  # the offered rate's bar in that window (NaN fails it: identity late)


def _frames_between(times_ms: np.ndarray, a: float, b: float) -> int:
    return int(((times_ms >= a) & (times_ms < b)).sum())


async def _constrained_call() -> dict:
    from codec.sender.canvas import load_face_clip

    clip = await asyncio.get_running_loop().run_in_executor(
        None, lambda: load_face_clip(CALL_CLIP, max_seconds=6.0))
    assert clip.audio is not None
    shape = LinkShape(rate_bps=RATE_BPS, delay_ms=DELAY_MS, loss=LOSS, seed=1)
    # Default live sender settings: Opus 6 kbit/s, 120 ms packets, the 8x8 copy.
    async with probe_call(clip, receiver="neural", link_shape=shape) as (call, viewer, sender):
        for _ in range(300):
            if sender.link is not None and sender.link.connected:
                break
            await asyncio.sleep(0.05)
        assert sender.link is not None and sender.link.emulator is not None
        connected = time.time() * 1000
        emu = sender.link.emulator
        # Constrained, lossy link. What the sender offers the link in steady state, once
        # the identity frame is in (speech and 8x8 with its copy, every header): the live
        # settings' budget. The first second after the acknowledgement is left out (the
        # start of the speech and an intra frame); the outage waits for the window's end.
        t_end = time.monotonic() + BEFORE_OUTAGE_S
        while sender.link.media_held and time.monotonic() < t_end:
            await asyncio.sleep(0.05)
        await asyncio.sleep(BUDGET_SETTLE_S)
        offered0, t0, stats0 = emu.offered_bytes, time.monotonic(), await sender.link.stats()
        await asyncio.sleep(max(BUDGET_WINDOW_S, t_end - t0))
        dt = time.monotonic() - t0
        offered_kbps = ((emu.offered_bytes - offered0) * 8 / dt / 1000
                        if not sender.link.media_held else float("nan"))
        stats1 = await sender.link.stats()
        offered_by_kind = {k[5:]: round((v - stats0.get(k, 0)) * 8 / dt / 1000, 2)
                           for k, v in stats1.items()
                           if k.startswith("wire_") and "pkts" not in k and v > stats0.get(k, 0)}
        outage = time.time() * 1000
        emu.shape.loss = 1.0  # the link drops out entirely ...
        await asyncio.sleep(OUTAGE_S)
        emu.shape.loss = LOSS  # ... and comes back
        restored = time.time() * 1000
        sent_before = emu.sent_bytes + 28 * emu.delivered
        await asyncio.sleep(AFTER_OUTAGE_S)
        end = time.time() * 1000
        link_kbps = (emu.sent_bytes + 28 * emu.delivered - sent_before) * 8 / (end - restored)
        assert viewer.views, "no view of the link reached the viewer"
        record = next(iter(viewer.views.values()))
        stats = await sender.link.stats()
        return {"record": record, "connected": connected, "outage": outage,
                "restored": restored, "end": end, "emu": emu, "stats": stats,
                "link_kbps": link_kbps, "offered_kbps": offered_kbps,
                "offered_by_kind": offered_by_kind,
                "metrics": call.worker.snapshot()}


def test_call_with_speech_flows_and_recovers_on_a_16kbps_lossy_link() -> None:
    if not CALL_CLIP.exists():
        pytest.skip("shared data not present")
    if not neural_available():
        pytest.skip("the neural receiver (its voice face before the identity) cannot run here")
    out = asyncio.run(asyncio.wait_for(_constrained_call(), timeout=100))
    record, emu, stats = out["record"], out["emu"], out["stats"]
    times = np.array([t for t, _ in record.frames])
    assert len(times) > 100, "reconstructed video did not flow over the constrained link"
    # The first face (the voice face) within 1.5 s of connecting (4.5-5.5 s while the 8x8
    # stream waited for the identity; ~10 s before the identity-first start), and the
    # identity frame got through too.
    assert "identity_acked_ms" in stats, "the worker never acknowledged the identity frame"
    first_s = (times[0] - out["connected"]) / 1000
    assert first_s <= FIRST_FACE_S, f"first reconstructed frame {first_s:.2f} s after connecting"
    # Flowing before the outage: a good share of the 25 fps frames in the 5 s before it
    # (a lost 8x8 frame freezes the picture until the next intra frame).
    before = _frames_between(times, out["outage"] - 5000, out["outage"])
    assert before >= 0.3 * 25 * 5, before
    # Recovers: the first frame captured after the link came back is shown within 3.5 s
    # (next intra frame, or sooner on the worker's intra request), and video flows on.
    assert record.epoch_unix_ms is not None
    captured = np.array([record.epoch_unix_ms + ts for _, ts in record.frames])
    fresh = times[captured >= out["restored"]]
    assert len(fresh) and fresh[0] - out["restored"] < 3500, "no recovery after the outage"
    window_s = (out["end"] - out["restored"] - 4000) / 1000
    after = _frames_between(times, out["restored"] + 4000, out["end"])
    assert after >= 0.3 * 25 * window_s, after
    # The live settings fit the link (issue 16): once the identity is in, the sender
    # offers about the link's 16 kbit/s, not more (Opus 6 kbit/s: 15.9-16.1 over 30 s in
    # bench_call; at 8 kbit/s it offered 18.4-18.8). A few seconds of VBR speech and 8x8
    # sizes wander, hence the margin.
    assert out["offered_kbps"] <= BUDGET_KBPS, (
        f"offered {out['offered_kbps']:.2f} kbit/s to a {RATE_BPS / 1000:.0f} kbit/s link "
        f"in steady state (without UDP/IPv4 headers: {out['offered_by_kind']})")
    # Speech flowed (20 ms frames at the viewer: > 4 s of it).
    assert record.audio_frames > 200, "speech did not flow"
    # The shaper really constrained and dropped (5 % random + the outage).
    assert emu.dropped > 20
    # The receiver's /metrics saw the same link (issue 15, item 4): its payload rates, and
    # the 8x8 frames the outage and the loss cost.
    metrics = out["metrics"]
    kbps = metrics["talkcodec_receiver_link_kbps"]
    dropped = metrics["talkcodec_receiver_lowres_dropped"]
    print(f"\nreceiver metrics: link_kbps={kbps} lowres_dropped={dropped} "
          f"frames_skipped={metrics['talkcodec_receiver_frames_skipped']}")
    assert 0.5 < kbps[("video",)] < 8 and 2 < kbps[("audio",)] < 12, kbps
    assert 0 < kbps[("code",)] < kbps[("video",)], kbps
    assert dropped[("lost",)] + dropped[("undecodable",)] >= 5, dropped  # the 2 s outage
    lat = np.array(record.latencies_ms[-50:])
    print(f"\nconstrained link 16 kbit/s + speech: first_face_s={first_s:.2f} "
          f"identity_acked_ms={stats['identity_acked_ms']} frames={len(times)} "
          f"fps_before_outage={before / 5:.1f} "
          f"recovered_after_ms={fresh[0] - out['restored']:.0f} fps_after={after / window_s:.1f} "
          f"offered_kbps_before_outage={out['offered_kbps']:.2f} "
          f"link_kbps_after_outage={out['link_kbps']:.1f} dropped={emu.dropped} "
          f"audio_frames={record.audio_frames} latency_median_ms={np.median(lat):.0f} "
          f"link_stats={stats}")
