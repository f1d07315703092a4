"""docs/voice_grid.png (issue 14): the ``voice`` receiver mixing one clip's 8x8 with
another speaker's voice. One row per val clip A; columns: A's 8x8 (enlarged, nearest),
``voice`` with A's own speech, ``voice`` with B's speech (a val speaker of the opposite
perceived gender), the ground truth; frame ``--frame`` of the first 5 s, through the
bitstream.

    .venv/bin/python -m benchmarks.voice_grid [--out docs/voice_grid.png]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.voice_grid ...")

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from benchmarks import talkcodec_runner  # noqa: E402
from benchmarks.bench_bpp import load_canvas  # noqa: E402
from benchmarks.bench_voice import genders  # noqa: E402
from codec.data import data_dir  # noqa: E402

CLIPS = ("hdtf_WDA_EdMarkey", "mimictalk_May", "lrs2_deepavsr_00004", "mead_M024")
CELL = 160


def label(text: str, width: int, height: int = 22) -> np.ndarray:
    img = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(img, text, (6, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return img


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "voice_grid.png")
    ap.add_argument("--frame", type=int, default=60)
    args = ap.parse_args()
    gender = genders()
    rows = {r["identity"]: r for r in csv.DictReader(open(data_dir() / "manifest.csv"))}
    clips = {i: load_canvas(data_dir() / rows[i]["file"], 5.0) for i in CLIPS}
    lines = []
    for a in CLIPS:
        b = next(i for i in CLIPS if gender[i] != gender[a])
        clip = clips[a]
        stream = talkcodec_runner.encode(clip)
        own = talkcodec_runner.decode(stream.packets, "voice", clip.n_frames)
        mixed = talkcodec_runner.decode(stream.packets, "voice", clip.n_frames,
                                        voice=np.asarray(clips[b].audio))
        k = min(args.frame, clip.n_frames - 1)
        k8 = k - k % 5  # the 8x8 frame that was sent
        small = cv2.resize(clip.frames[k8], (8, 8), interpolation=cv2.INTER_AREA)
        cells = [cv2.resize(small, (CELL, CELL), interpolation=cv2.INTER_NEAREST),
                 own[k], mixed[k], clip.frames[k]]
        row = np.hstack([cv2.resize(c, (CELL, CELL), interpolation=cv2.INTER_AREA)
                         for c in cells])
        lines += [label(f"A = {a} ({gender[a]}), B = {b} ({gender[b]})", row.shape[1]), row]
    head = label("A's 8x8  |  voice: A's voice  |  voice: B's voice  |  ground truth", 4 * CELL)
    grid = np.vstack([head] + lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"-> {args.out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
