"""The live call on loopback: glass-to-glass latency, link bitrate and frames/s.

A Python sender streams a ../shared/data clip in real time over a talkcodec link to the
receiver worker; a headless Python viewer receives the reconstructed WebRTC video and reads
each frame's timestamp stamp. Printed per receiver timing mode (interpolate / low latency):

- latency: viewer receive time - (sender epoch + frame timestamp), one clock (loopback);
  includes the 8x8 wait (interpolate mode), receiver render, VP8 encode/decode, playout;
- link bitrate, measured by the transports themselves: the 8x8 stream (talkcodec
  datagram bytes), Opus RTP payload (the sender's RTP sender stats), and everything the
  sender's DTLS transport handed to ICE (SRTP + SCTP/DTLS + RTCP, no UDP/IP headers),
  broken down per stream (``server.wire_meter.WireMeter``);
- frames/s at the viewer;
- lip sync: the same clip with a beep every second as its audio; the A/V offset of each
  beep at the viewer (``server.probe_viewer.av_offset``).

    python -m benchmarks.bench_call [--seconds 15] [--receiver NAME] [--clip PATH]
                                    [--audio-frame-ms MS] [--loss 0.05,0.1,0.2]
                                    [--no-redundancy] [--audio-bitrate BPS]

``--loss``: instead of the figures above, a sweep through the link emulator (16 kbit/s with
UDP/IPv4 headers, 100 ms one-way, the given random loss, ``server.link_emulator.LinkShape``),
interpolate mode only. Per loss: the 8x8 frames/s the worker decoded, PSNR of the 8x8
picture a receiver has at each sent frame's time against the sender's exact 8x8 box means
(the last decoded frame held, and linear interpolation between the decoded frames on either
side), and the sender's wire rate (everything handed to ICE, with UDP/IPv4 headers, lost
datagrams included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_call ...")

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from codec.bitstream.packet import StreamKind  # noqa: E402
from codec.data import data_dir  # noqa: E402
from codec.receiver.registry import default_receiver_name  # noqa: E402
from codec.sender.sender import SenderConfig  # noqa: E402
from server.link_audio import (  # noqa: E402
    DEFAULT_AUDIO_FRAME_MS,
    OPUS_FRAME_MS,
    link_audio_frame_ms,
)
from server.link_emulator import LinkShape  # noqa: E402
from server.probe_viewer import av_offset, beep_clip, probe_call  # noqa: E402

DEFAULT_CLIP = "clips/OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4"


async def measure(clip, receiver: str, low_latency: bool, seconds: float,  # noqa: ANN001
                  av_probe: bool = False, audio_frame_ms: int = DEFAULT_AUDIO_FRAME_MS,
                  config: SenderConfig | None = None) -> dict:
    async with probe_call(clip, receiver=receiver, low_latency=low_latency,
                          max_seconds=seconds + 30, viewer_name="bench",
                          audio_frame_ms=audio_frame_ms, config=config) as (call, viewer, sender):
        deadline = time.monotonic() + 90
        while not viewer.views or not next(iter(viewer.views.values())).frames:
            if time.monotonic() > deadline:
                raise RuntimeError("no reconstructed frame reached the viewer in 90 s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # warm-up
        assert sender.link is not None
        record = next(iter(viewer.views.values()))
        s0, f0, l0, t0 = await sender.link.stats(), len(record.frames), len(record.latencies_ms), time.monotonic()
        await asyncio.sleep(seconds)
        s1, f1, t1 = await sender.link.stats(), len(record.frames), time.monotonic()
        dt = t1 - t0
        if av_probe:
            link = next(iter(call.worker.links.values()))
            out = av_offset(record, seconds)
            out.update({"mode": "low latency" if low_latency else "interpolate",
                        "worker_video_delay": link.playout.video_delay_ms,
                        "worker_audio_delay": link.viewer_audio.delay_ms,
                        "worker_audio_late": link.viewer_audio.late_ms})
            return out
        lat = np.array(record.latencies_ms[l0:])
        kbps = {k: (s1[k] - s0.get(k, 0)) * 8 / dt / 1000 for k in s1}
        pps = {k[len("wire_pkts_"):]: (s1[k] - s0.get(k, 0)) / dt for k in s1
               if k.startswith("wire_pkts_")}
        wire = {k[len("wire_"):]: v for k, v in kbps.items()
                if k.startswith("wire_") and not k.startswith("wire_pkts_")}
        worker = record.stats[-1] if record.stats else {}
        return {
            "receiver": call.worker.receiver_name, "mode": "low latency" if low_latency else "interpolate",
            "fps": (f1 - f0) / dt,
            "lat_med": float(np.median(lat)), "lat_p10": float(np.percentile(lat, 10)),
            "lat_p90": float(np.percentile(lat, 90)),
            "video_kbps": kbps["sent_lowres"], "audio_kbps": kbps["audio_rtp_payload"],
            "total_kbps": kbps["sent_lowres"] + kbps["audio_rtp_payload"],
            "wire_kbps": kbps["transport_total"],
            "audio_pps": kbps["audio_packets"] * 1000 / 8,
            "wire": wire, "wire_pps": pps,
            "render_ms": worker.get("render_ms", float("nan")),
        }


async def measure_loss(clip, receiver: str, loss: float, seconds: float,  # noqa: ANN001
                       audio_frame_ms: int, config: SenderConfig) -> dict:
    """One call through the emulated 16 kbit/s / 100 ms link at ``loss``: decoded 8x8
    frames/s, the 8x8 picture's PSNR at every sent frame time, the sender's wire rate."""
    from codec.sender.downsample import box_downsample, lowres_factor

    shape = LinkShape(rate_bps=16000.0, delay_ms=100.0, loss=loss, seed=1)
    async with probe_call(clip, receiver=receiver, max_seconds=seconds + 60,
                          viewer_name="bench", audio_frame_ms=audio_frame_ms,
                          link_shape=shape, config=config) as (call, viewer, sender):
        deadline = time.monotonic() + 90
        while not call.worker.links or sender.link is None or not viewer.views:
            if time.monotonic() > deadline:
                raise RuntimeError("the link did not open in 90 s")
            await asyncio.sleep(0.1)
        link = next(iter(call.worker.links.values()))
        decoded: list[tuple[int, np.ndarray]] = []
        sent_ts: list[int] = []
        feed, send = link.decoder.feed, sender.link.send

        def recording_feed(datagram: bytes) -> list:
            frames = feed(datagram)
            decoded.extend((f.timestamp_ms, f.pixels) for f in frames)
            return frames

        def recording_send(packets) -> None:  # noqa: ANN001
            packets = list(packets)
            sent_ts.extend(p.timestamp_ms for p in packets if getattr(p, "kind", None)
                           is StreamKind.LOWRES and not sender.link.media_held)
            send(packets)

        link.decoder.feed = recording_feed  # type: ignore[method-assign]
        sender.link.send = recording_send  # type: ignore[method-assign]
        while sender.link.media_held:  # the identity frame first
            if time.monotonic() > deadline:
                raise RuntimeError("the identity frame was not acknowledged in 90 s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # warm-up
        s0, t0, n0 = await sender.link.stats(), time.monotonic(), len(sent_ts)
        await asyncio.sleep(seconds)
        s1, t1, n1 = await sender.link.stats(), time.monotonic(), len(sent_ts)
        await asyncio.sleep(1.0)  # the last frames arrive
    dt = t1 - t0
    window = sorted(set(sent_ts[n0:n1]))
    got = dict(decoded)
    times = np.array(sorted(got))
    factor = lowres_factor(clip.frames.shape[1], 8)
    held_se, interp_se = [], []
    for ts in window:
        truth = box_downsample(clip.frames[int(round(ts / 40)) % clip.n_frames], factor)
        i = int(np.searchsorted(times, ts, side="right"))  # times[i-1] <= ts < times[i]
        if i == 0:
            continue
        held = got[int(times[i - 1])]
        if times[i - 1] == ts or i == len(times):
            interp = held
        else:
            a, b = int(times[i - 1]), int(times[i])
            w = (ts - a) / (b - a)
            interp = (1 - w) * held + w * got[b]
        held_se.append(np.mean((held.astype(np.float64) - truth) ** 2))
        interp_se.append(np.mean((interp.astype(np.float64) - truth) ** 2))
    n_decoded = sum(1 for ts in window if ts in got)
    wire = sum(s1.get(f"wire_{k}", 0) - s0.get(f"wire_{k}", 0) for k, _ in WIRE_ROWS)
    pkts = sum(s1.get(f"wire_pkts_{k}", 0) - s0.get(f"wire_pkts_{k}", 0) for k, _ in WIRE_ROWS)

    def db(se: list) -> float:
        return float(10 * np.log10(255.0 ** 2 / np.mean(se))) if se else float("nan")

    return {"loss": loss, "sent_fps": len(window) / dt, "decoded_fps": n_decoded / dt,
            "decoded_share": n_decoded / max(1, len(window)),
            "psnr_held": db(held_se), "psnr_interp": db(interp_se),
            "video_kbps": (s1["sent_lowres"] - s0.get("sent_lowres", 0)) * 8 / dt / 1000,
            "wire_kbps": (wire + 28 * pkts) * 8 / dt / 1000,
            "wire": {k: (s1.get(f"wire_{k}", 0) - s0.get(f"wire_{k}", 0)
                         + 28 * (s1.get(f"wire_pkts_{k}", 0) - s0.get(f"wire_pkts_{k}", 0)))
                     * 8 / dt / 1000 for k, _ in WIRE_ROWS}}


def loss_sweep(clip, receiver: str, losses: list[float], seconds: float,  # noqa: ANN001
               audio_frame_ms: int, config: SenderConfig) -> None:
    print("| loss | 8x8 sent fps | decoded fps | decoded | PSNR held | PSNR interp | "
          "8x8 datagrams kbit/s | wire kbit/s (+UDP/IPv4) |")
    print("|---|---|---|---|---|---|---|---|")
    details = []
    for loss in losses:
        r = asyncio.run(measure_loss(clip, receiver, loss, seconds, audio_frame_ms, config))
        print(f"| {loss:.0%} | {r['sent_fps']:.2f} | {r['decoded_fps']:.2f} | "
              f"{r['decoded_share']:.0%} | {r['psnr_held']:.2f} dB | {r['psnr_interp']:.2f} dB | "
              f"{r['video_kbps']:.2f} | {r['wire_kbps']:.2f} |", flush=True)
        details.append(f"{loss:.0%}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["wire"].items()
                                                   if v > 0))
    print("wire kbit/s by stream, with UDP/IPv4 headers (lost datagrams included):")
    for line in details:
        print(f"- {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--receiver", default="", help="default: best available")
    parser.add_argument("--clip", default=str(data_dir() / DEFAULT_CLIP))
    parser.add_argument("--audio-frame-ms", type=int, choices=OPUS_FRAME_MS,
                        help="Opus packet length on the link (default: as talkcodec demo, "
                             "120 ms, 60 ms in low-latency mode)")
    parser.add_argument("--loss", default="",
                        help="comma-separated loss fractions: the emulated-link sweep instead")
    parser.add_argument("--no-redundancy", action="store_true",
                        help="8x8 packets without the previous packet's copy (before issue 16)")
    parser.add_argument("--audio-bitrate", type=int, default=0,
                        help="Opus bit/s on the link (default: the live sender's, "
                             "codec.sender.sender.LIVE_AUDIO_BITRATE)")
    args = parser.parse_args()
    from codec.sender.canvas import load_face_clip

    clip = load_face_clip(args.clip, max_seconds=8.0)
    receiver = args.receiver or default_receiver_name()
    config = replace(SenderConfig.live(), redundancy=not args.no_redundancy)
    if args.audio_bitrate:
        config = replace(config, audio_bitrate=args.audio_bitrate)
    if args.loss:
        print(f"# bench_call --loss: {Path(args.clip).name}, {args.seconds:.0f} s per loss, "
              f"receiver '{receiver}', 16 kbit/s / 100 ms emulated link, {platform.machine()} "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"# 8x8 redundancy (previous packet's copy): {config.redundancy}; "
              f"Opus {config.audio_bitrate} bit/s")
        loss_sweep(clip, receiver, [float(x) for x in args.loss.split(",")], args.seconds,
                   args.audio_frame_ms or link_audio_frame_ms(False), config)
        return
    print(f"# bench_call: {Path(args.clip).name}, {args.seconds:.0f} s per mode, receiver "
          f"'{receiver}', {platform.machine()} "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, loopback; "
          f"8x8 copy {config.redundancy}, Opus {config.audio_bitrate} bit/s")
    header = ("mode", "Opus ms", "fps", "lat med", "p10", "p90", "video", "audio", "v+a", "wire",
              "pkt/s", "render")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    results = []
    for low_latency in (False, True):
        frame_ms = args.audio_frame_ms or link_audio_frame_ms(low_latency)
        r = asyncio.run(measure(clip, receiver, low_latency, args.seconds,
                                audio_frame_ms=frame_ms, config=config))
        print(f"| {r['mode']} | {frame_ms} | {r['fps']:.1f} | {r['lat_med']:.0f} ms | {r['lat_p10']:.0f} | "
              f"{r['lat_p90']:.0f} | {r['video_kbps']:.2f} kbit/s | {r['audio_kbps']:.2f} | "
              f"{r['total_kbps']:.2f} | {r['wire_kbps']:.2f} | {r['audio_pps']:.0f} | "
              f"{r['render_ms']:.1f} ms |", flush=True)
        results.append(r)
    print("video = 8x8 stream datagrams; audio = Opus RTP payload; wire = all SRTP/SCTP/DTLS "
          "bytes the sender's transport sent (no UDP/IP headers); pkt/s = audio RTP packets")
    print_breakdown(results)
    print()
    print("Lip sync at the viewer (the clip's video, its audio replaced by a 1 kHz beep every "
          "second; latency of each beep onset minus the video latency, both on arrival at the "
          "viewer before playout buffers; > 0 = sound after picture; 'decoded' = after "
          "aiortc's video jitter buffer, which holds each frame until the next starts):")
    print("| mode | A/V offset median | p10 | p90 | beeps | audio latency | video latency "
          "(arrival) | (decoded) | worker: video delay | audio played at | audio late by |")
    print("|" + "---|" * 11)
    for low_latency in (False, True):
        frame_ms = args.audio_frame_ms or link_audio_frame_ms(low_latency)
        a = asyncio.run(measure(beep_clip(clip), receiver, low_latency, args.seconds,
                                av_probe=True, audio_frame_ms=frame_ms, config=config))
        print(f"| {a['mode']}, {frame_ms} ms Opus | {a['av_offset_med']:+.0f} ms | {a['av_offset_p10']:+.0f} | "
              f"{a['av_offset_p90']:+.0f} | {a['av_n']} | {a['audio_lat_med']:.0f} ms | "
              f"{a['video_lat_med']:.0f} ms | {a['video_decoded_lat_med']:.0f} ms | "
              f"{a['worker_video_delay']:.0f} ms | "
              f"{a['worker_audio_delay']:.0f} ms | {a['worker_audio_late']:.0f} ms |", flush=True)


WIRE_ROWS = (
    ("rtp_audio", "SRTP audio (RTP header + Opus + auth tag)"),
    ("sctp_data_lowres", "DTLS/SCTP DATA, 8x8 channel"),
    ("sctp_data_reliable", "DTLS/SCTP DATA, reliable channel (CONFIG, control)"),
    ("rtcp", "SRTCP (sender reports)"),
    ("sctp_sack", "DTLS/SCTP SACK"),
    ("sctp_heartbeat", "DTLS/SCTP HEARTBEAT(-ACK)"),
    ("sctp_forward_tsn", "DTLS/SCTP FORWARD-TSN"),
    ("sctp_other", "DTLS/SCTP other"),
    ("dtls_other", "DTLS other (handshake, alerts)"),
)


def print_breakdown(results: list[dict]) -> None:
    """Where the wire bytes go, per stream (the sender's side of the link)."""
    print()
    print("| wire, sender -> receiver | " + " | ".join(
        f"{r['mode']} kbit/s | pkt/s | B/pkt" for r in results) + " |")
    print("|---|" + "---|---|---|" * len(results))
    rows = [*WIRE_ROWS, ("stun", "STUN consent (ICE, outside DTLS; not in the total)")]
    for key, name in rows:
        cells = []
        for r in results:
            kb, pps = r["wire"].get(key, 0.0), r["wire_pps"].get(key, 0.0)
            cells.append(f"{kb:.2f} | {pps:.1f} | {kb * 125 / pps if pps else 0:.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        total = sum(r["wire"].get(k, 0.0) for k, _ in WIRE_ROWS)
        pps = sum(r["wire_pps"].get(k, 0.0) for k, _ in WIRE_ROWS)
        cells.append(f"**{total:.2f}** | {pps:.1f} | +UDP/IPv4: {total + pps * 28 * 8 / 1000:.2f}")
    print("| **total (= wire)** | " + " | ".join(cells) + " |")
    for r in results:
        payload_oh = r["wire"].get("rtp_audio", 0.0) - r["audio_kbps"]
        video_oh = r["wire"].get("sctp_data_lowres", 0.0) - r["video_kbps"]
        print(f"{r['mode']}: overhead on top of payload: audio {payload_oh:.2f} kbit/s "
              f"({payload_oh * 125 / max(r['wire_pps'].get('rtp_audio', 1), 1e-9):.0f} B/packet), "
              f"8x8 {video_oh:.2f} kbit/s "
              f"({video_oh * 125 / max(r['wire_pps'].get('sctp_data_lowres', 1), 1e-9):.0f} B/message)")


if __name__ == "__main__":
    main()
