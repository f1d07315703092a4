"""The 8x8 stream over the val split: kbit/s (payload, and with packet headers) and PSNR.

Usage: nice .venv/bin/python -m benchmarks.bench_lowres_stream [--size 8 --fps 5 --quant 6
       --max-seconds N --clips N --loss 0.1]

Each val clip goes through the real sender canvas (``load_face_clip``) and the real
``Sender`` (which box-downsamples on the low-res grid and emits LOWRES packets); the
packets are decoded by ``StreamDecoder`` and compared with the unquantised exact box means
(PSNR over RGB, 0-255, pooled MSE per clip). With ``--loss`` a seeded fraction of LOWRES
packets is dropped and the share of frames still decoded (the rest are skipped until the
next intra frame) is printed too.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_lowres_stream ...")

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from codec.bitstream.packet import StreamKind, encode_packet  # noqa: E402
from codec.bitstream.stream import StreamDecoder  # noqa: E402
from codec.data import data_dir as data_root  # noqa: E402
from codec.sender.canvas import load_face_clip  # noqa: E402
from codec.sender.downsample import box_downsample  # noqa: E402
from codec.sender.sender import Sender, SenderConfig  # noqa: E402


def val_rows() -> list[dict[str, str]]:
    with open(data_root() / "manifest.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == "val"]


def evaluate(frames: np.ndarray, config: SenderConfig, loss: float) -> dict[str, float]:
    sender = Sender(config, with_audio=False)
    packets = sender.start(frames[0])
    truth: dict[int, np.ndarray] = {}
    factor = 256 // config.lowres_size
    for k, img in enumerate(frames):
        ts = int(round(k * 40))
        for p in sender.push_canvas_frame(img, ts):
            if p.kind is StreamKind.LOWRES:
                truth[p.timestamp_ms] = box_downsample(img, factor)
            packets.append(p)
    lowres = [p for p in packets if p.kind is StreamKind.LOWRES]
    seconds = len(frames) / 25.0
    payload = sum(len(p.payload) for p in lowres) * 8
    total = sum(len(encode_packet(p)) for p in lowres) * 8
    rng = random.Random(0)
    sent = [p for p in packets if p.kind is not StreamKind.LOWRES or rng.random() >= loss]
    dec = StreamDecoder()
    decoded = []
    for p in sent:
        decoded += dec.push(p).lowres
    decoded += dec.flush().lowres
    err = [np.mean((f.pixels.astype(np.float64) - truth[f.timestamp_ms]) ** 2) for f in decoded]
    mse = float(np.mean(err)) if err else float("nan")
    return {"frames": len(lowres), "payload_kbps": payload / seconds / 1000,
            "total_kbps": total / seconds / 1000, "psnr": 10 * np.log10(255**2 / mse),
            "decoded_share": len(decoded) / max(1, len(lowres))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--fps", type=int, default=5)
    ap.add_argument("--quant", type=float, default=SenderConfig.quant)
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--clips", type=int, default=None)
    ap.add_argument("--loss", type=float, default=0.0)
    args = ap.parse_args()
    config = SenderConfig(lowres_size=args.size, lowres_fps=args.fps, quant=args.quant)
    print(f"low-res {args.size}x{args.size} @ {args.fps} fps, quant {args.quant}, "
          f"intra every {config.intra_period_s} s, LOWRES loss {args.loss:.0%}")
    print(f"{'clip':24} {'frames':>6} {'payload kbit/s':>14} {'+headers kbit/s':>15} "
          f"{'PSNR dB':>8} {'decoded':>8}")
    results = []
    for row in val_rows()[: args.clips]:
        clip = load_face_clip(data_root() / row["file"], max_seconds=args.max_seconds)
        r = evaluate(clip.frames, config, args.loss)
        results.append(r)
        print(f"{row['identity'][:24]:24} {r['frames']:6d} {r['payload_kbps']:14.3f} "
              f"{r['total_kbps']:15.3f} {r['psnr']:8.2f} {r['decoded_share']:8.1%}", flush=True)
    mean = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
    print(f"{'mean over ' + str(len(results)) + ' clips':24} {'':6} {mean['payload_kbps']:14.3f} "
          f"{mean['total_kbps']:15.3f} {mean['psnr']:8.2f} {mean['decoded_share']:8.1%}")
    print(f"min PSNR {min(r['psnr'] for r in results):.2f} dB, max with headers "
          f"{max(r['total_kbps'] for r in results):.3f} kbit/s")


if __name__ == "__main__":
    main()
