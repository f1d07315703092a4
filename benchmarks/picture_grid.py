"""A picture grid for one val clip: ground truth, the 8x8 frames that were sent, every
talkcodec receiver on the 8x8-only stream, ``neural`` driven by the motion code (default
settings), and H.264 at its lowest rate (CRF 51) and at CRF 44, at a few times of the clip.

    .venv/bin/python -m benchmarks.picture_grid [--clip NAME] [--seconds 5] [--out PNG]

Columns are times; rows are: ground truth, 8x8 (enlarged, nearest), each receiver, H.264.
Each row label gives the video kbit/s the row cost (talkcodec: 8x8 stream with headers,
and the code; H.264: its elementary stream) and the row's PSNR over the clip (frame 0 left out).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.picture_grid ...")

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.standard_codecs import CODECS, encode_decode  # noqa: E402
from benchmarks.talkcodec_runner import (  # noqa: E402
    CODE_RECEIVERS,
    NO_CODE,
    available_receivers,
    decode,
    encode,
    sender_config,
)
from codec.data import data_dir  # noqa: E402
from codec.metrics.fidelity import mean_psnr, psnr  # noqa: E402
from codec.sender.canvas import load_face_clip  # noqa: E402
from codec.sender.downsample import box_downsample, box_upsample  # noqa: E402

LABEL_W = 230


def clip_psnr(out: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-frame PSNR, frame 0 (the identity frame) left out."""
    return mean_psnr([psnr(o, g) for o, g in zip(out[1:], gt[1:])])


def _label(text: str, height: int) -> np.ndarray:
    img = np.full((height, LABEL_W, 3), 255, np.uint8)
    for i, line in enumerate(text.split("\n")):
        cv2.putText(img, line, (8, 40 + 28 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return img


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default="OpenTalker__SadTalker__test__examples__source_image__"
                    "WDA_EdMarkey0_000.mp4", help="file name under clips/ (a val clip)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--times", default="0.6,1.8,3.0,4.2", help="seconds, comma separated")
    ap.add_argument("--out", default=str(ROOT / "docs" / "picture_grid.png"))
    args = ap.parse_args(argv)

    data = data_dir()
    with open(data / "manifest.csv") as f:
        split = {Path(r["file"]).name: r["split"] for r in csv.DictReader(f)}
    if split.get(args.clip) != "val":
        print(f"note: {args.clip} is not a val clip", file=sys.stderr)
    clip = load_face_clip(data / "clips" / args.clip, max_seconds=args.seconds)
    n = clip.n_frames
    idx = [min(n - 1, int(round(float(t) * 25))) for t in args.times.split(",")]
    gt = clip.frames

    stream = encode(clip, sender_config(NO_CODE))
    kbps_8x8 = stream.bits_lowres / clip.duration_s / 1000
    rows: list[tuple[str, np.ndarray]] = [("ground truth", gt)]
    lowres = box_upsample(box_downsample(gt, 32), 32).astype(np.uint8)
    rows.append((f"8x8 sent\n{kbps_8x8:.2f} kbit/s", lowres))
    for name in available_receivers():
        out = decode(stream.packets, name, n)
        rows.append((f"talkcodec {name}\n{kbps_8x8:.2f} kbit/s 8x8\nPSNR "
                     f"{clip_psnr(out, gt):.2f} dB", out))
    coded = encode(clip)  # the default: with the motion code
    kbps = (coded.bits_lowres + coded.bits_code) / clip.duration_s / 1000
    for name in [r for r in available_receivers() if r in CODE_RECEIVERS]:
        out = decode(coded.packets, name, n)
        rows.append((f"talkcodec {name}\n+ motion code\n{kbps:.2f} kbit/s 8x8+code\nPSNR "
                     f"{clip_psnr(out, gt):.2f} dB", out))
    for crf in (51, 44):
        h264 = encode_decode(gt, CODECS["H.264"], crf)
        rows.append((f"H.264 CRF {crf}\n{h264.bits / clip.duration_s / 1000:.2f} kbit/s\n"
                     f"PSNR {clip_psnr(h264.frames, gt):.2f} dB", h264.frames))

    lines = []
    for text, frames in rows:
        tiles = [frames[i] for i in idx]
        lines.append(np.concatenate([_label(text, 256), *tiles], axis=1))
    grid = np.concatenate(lines, axis=0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"{args.out}: {len(rows)} rows x {len(idx)} times of {args.clip}; talkcodec also "
          f"sends a one-time identity frame (frame 0, with its landmarks when the code is "
          f"on) and Opus speech")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
