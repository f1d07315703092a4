"""The live call on loopback: glass-to-glass latency, link bitrate and frames/s.

A Python sender streams a ../shared/data clip in real time over a talkcodec link to the
receiver worker; a headless Python viewer receives the reconstructed WebRTC video and reads
each frame's timestamp stamp. Printed per receiver timing mode (interpolate / low latency):

- latency: viewer receive time - (sender epoch + frame timestamp), one clock (loopback);
  includes the 8x8 wait (interpolate mode), receiver render, VP8 encode/decode, playout;
- link bitrate, measured by the transports themselves: the 8x8 stream (talkcodec
  datagram bytes), Opus RTP payload (the sender's RTP sender stats), and everything the
  sender's DTLS transport handed to ICE (SRTP + SCTP/DTLS + RTCP, no UDP/IP headers);
- frames/s at the viewer.

    python benchmarks/bench_call.py [--seconds 15] [--receiver NAME] [--clip PATH]
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

from codec.receiver.registry import default_receiver_name  # noqa: E402
from server.local_call import start_local_call  # noqa: E402
from server.probe_viewer import ProbeViewer  # noqa: E402
from server.sender_agent import FileSender  # noqa: E402
from codec.data import data_dir  # noqa: E402

DEFAULT_CLIP = "clips/OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4"


async def measure(clip, receiver: str, low_latency: bool, seconds: float) -> dict:  # noqa: ANN001
    call = await start_local_call(with_agent=False, receiver=receiver, low_latency=low_latency)
    viewer = ProbeViewer(call.client("viewer", "bench"))
    viewer_task = asyncio.ensure_future(viewer.run())
    await asyncio.sleep(0.3)
    sender = FileSender(call.client("sender", "clip"), clip, loop=True)
    sender_task = asyncio.ensure_future(sender.run(max_seconds=seconds + 30))
    try:
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
        lat = np.array(record.latencies_ms[l0:])
        kbps = {k: (s1[k] - s0[k]) * 8 / dt / 1000 for k in s1}
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
            "render_ms": worker.get("render_ms", float("nan")),
        }
    finally:
        sender_task.cancel()
        await viewer.close()
        viewer_task.cancel()
        await call.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--receiver", default="", help="default: best available")
    parser.add_argument("--clip", default=str(data_dir() / DEFAULT_CLIP))
    args = parser.parse_args()
    from codec.sender.canvas import load_face_clip

    clip = load_face_clip(args.clip, max_seconds=8.0)
    receiver = args.receiver or default_receiver_name()
    print(f"# bench_call: {Path(args.clip).name}, {args.seconds:.0f} s per mode, receiver "
          f"'{receiver}', {platform.machine()} {os.cpu_count()} CPUs, loopback")
    header = ("mode", "fps", "lat med", "p10", "p90", "video", "audio", "v+a", "wire", "pkt/s",
              "render")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for low_latency in (False, True):
        r = asyncio.run(measure(clip, receiver, low_latency, args.seconds))
        print(f"| {r['mode']} | {r['fps']:.1f} | {r['lat_med']:.0f} ms | {r['lat_p10']:.0f} | "
              f"{r['lat_p90']:.0f} | {r['video_kbps']:.2f} kbit/s | {r['audio_kbps']:.2f} | "
              f"{r['total_kbps']:.2f} | {r['wire_kbps']:.2f} | {r['audio_pps']:.0f} | "
              f"{r['render_ms']:.1f} ms |", flush=True)
    print("video = 8x8 stream datagrams; audio = Opus RTP payload; wire = all SRTP/SCTP/DTLS "
          "bytes the sender's transport sent (no UDP/IP headers); pkt/s = audio RTP packets")


if __name__ == "__main__":
    main()
