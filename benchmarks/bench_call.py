"""The live call on loopback: glass-to-glass latency, link bitrate and frames/s.

A Python sender streams a ../shared/data clip in real time over a talkcodec link to the
receiver worker; a headless Python viewer receives the reconstructed WebRTC video and reads
each frame's timestamp stamp. Printed per receiver timing mode (interpolate / low latency):

- latency: viewer receive time - (sender epoch + frame timestamp), one clock (loopback);
  includes the 8x8 wait (interpolate mode), receiver render, VP8 encode/decode, playout;
- link bitrate, measured by the transports themselves: the 8x8 stream (talkcodec
  datagram bytes), Opus RTP payload (the sender's RTP sender stats), and everything the
  sender's DTLS transport handed to ICE (SRTP + SCTP/DTLS + RTCP, no UDP/IP headers),
  broken down per stream (``server.transport.WireMeter``);
- frames/s at the viewer;
- lip sync: the same clip with a beep every second as its audio; the A/V offset of each
  beep at the viewer (``server.probe_viewer.av_offset``).

    python benchmarks/bench_call.py [--seconds 15] [--receiver NAME] [--clip PATH]
                                    [--audio-frame-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from codec.data import data_dir  # noqa: E402
from codec.receiver.registry import default_receiver_name  # noqa: E402
from server.probe_viewer import av_offset, beep_clip, probe_call  # noqa: E402
from server.transport import (  # noqa: E402
    DEFAULT_AUDIO_FRAME_MS,
    OPUS_FRAME_MS,
    link_audio_frame_ms,
)

DEFAULT_CLIP = "clips/OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4"


async def measure(clip, receiver: str, low_latency: bool, seconds: float,  # noqa: ANN001
                  av_probe: bool = False, audio_frame_ms: int = DEFAULT_AUDIO_FRAME_MS) -> dict:
    async with probe_call(clip, receiver=receiver, low_latency=low_latency,
                          max_seconds=seconds + 30, viewer_name="bench",
                          audio_frame_ms=audio_frame_ms) as (call, viewer, sender):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--receiver", default="", help="default: best available")
    parser.add_argument("--clip", default=str(data_dir() / DEFAULT_CLIP))
    parser.add_argument("--audio-frame-ms", type=int, choices=OPUS_FRAME_MS,
                        help="Opus packet length on the link (default: as talkcodec demo, "
                             "120 ms, 60 ms in low-latency mode)")
    args = parser.parse_args()
    from codec.sender.canvas import load_face_clip

    clip = load_face_clip(args.clip, max_seconds=8.0)
    receiver = args.receiver or default_receiver_name()
    print(f"# bench_call: {Path(args.clip).name}, {args.seconds:.0f} s per mode, receiver "
          f"'{receiver}', {platform.machine()} "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, loopback")
    header = ("mode", "Opus ms", "fps", "lat med", "p10", "p90", "video", "audio", "v+a", "wire",
              "pkt/s", "render")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    results = []
    for low_latency in (False, True):
        frame_ms = args.audio_frame_ms or link_audio_frame_ms(low_latency)
        r = asyncio.run(measure(clip, receiver, low_latency, args.seconds,
                                audio_frame_ms=frame_ms))
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
                                av_probe=True, audio_frame_ms=frame_ms))
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
