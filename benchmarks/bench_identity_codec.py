"""Identity-frame image coding: bytes vs quality for WebP, JPEG and AVIF on val frames.

Usage: .venv/bin/python -m benchmarks.bench_identity_codec [--clips N]
Prints, per format and quality, the mean bytes, PSNR (RGB) and SSIM (luma) over the first
canvas frame of each val clip, and the mean encode / decode time in milliseconds.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_identity_codec ...")

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from codec.bitstream.identity_codec import ImageFormat, decode_image, encode_image  # noqa: E402
from codec.data import data_dir as data_root  # noqa: E402
from codec.metrics.fidelity import psnr, ssim  # noqa: E402
from codec.sender.canvas import load_face_clip  # noqa: E402

SETTINGS = {
    ImageFormat.JPEG: (70, 80, 90, 95),
    ImageFormat.WEBP: (70, 80, 90, 95),
    ImageFormat.AVIF: (50, 65, 80, 90),
}


def val_frames(limit: int) -> list[np.ndarray]:
    root = data_root()
    with open(root / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val"]
    frames = []
    for row in rows[:limit]:
        clip = load_face_clip(root / row["file"], max_seconds=0.2)
        frames.append(clip.frames[0])
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=11)
    args = ap.parse_args()
    frames = val_frames(args.clips)
    print(f"{len(frames)} val frames (256x256)")
    print(f"{'format':6} {'q':>3} {'bytes':>7} {'PSNR dB':>8} {'SSIM':>6} {'enc ms':>7} {'dec ms':>7}")
    for fmt, qualities in SETTINGS.items():
        for q in qualities:
            sizes, ps, ss, te, td = [], [], [], [], []
            for img in frames:
                t0 = time.perf_counter()
                data = encode_image(img, fmt, q)
                t1 = time.perf_counter()
                out = decode_image(data, fmt)
                t2 = time.perf_counter()
                sizes.append(len(data))
                ps.append(psnr(out, img))
                ss.append(ssim(out, img))
                te.append(t1 - t0)
                td.append(t2 - t1)
            print(f"{fmt.name:6} {q:3d} {np.mean(sizes):7.0f} {np.mean(ps):8.2f} "
                  f"{np.mean(ss):6.4f} {1000 * np.mean(te):7.1f} {1000 * np.mean(td):7.1f}")


if __name__ == "__main__":
    main()
