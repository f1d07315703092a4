"""Where the mouth landmark distance comes from: a misplaced mouth or a mis-shaped one.

Per val clip (the ``eval_neural.py`` clips: first ``--seconds`` s, through the bitstream)
and per output, the mouth landmark distance of the benchmark tables, split by
``codec.metrics.landmarks.distance_parts`` into the length of the mouth's mean offset from
the ground truth and the shape distance left once that offset is removed; next to it the
nose's mean offset (points 27-35: is the whole face misplaced, or only the mouth?), and
``motion_gain``: how much of the head's motion the output follows, the least-squares slope
of the output's nose displacement from the identity frame (frame 0) on the ground truth's
(1: all of it; 0: a frozen head), per clip and pooled over the clips (the pooled slope
weighs the clips by how far their heads move; a still head's slope is mostly noise).

Outputs: receivers (``--receivers``, default ``neural``), H.264 at ``--crf`` (default 51,
its floor at 256x256), and ``truth/8 cubic``: the ground truth box-averaged 8x down and
cubic-upsampled back, which shows how far blur alone moves dlib's landmarks.

    nice .venv/bin/python -m benchmarks.diagnostics.mouth_error [--seconds 10] [--receivers neural,align]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.diagnostics.mouth_error ...")

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]

from benchmarks.eval_neural import (
    MouthTruth,
    audio_chunks,
    load_val,
    lowres_stream,
    run_receiver,
    val_rows,
)
from benchmarks.standard_codecs import CODECS, encode_decode
from codec.metrics.landmarks import MOUTH, distance_parts, landmark_distance, landmarks

NOSE = slice(27, 36)


def blurred_truth(canvas: np.ndarray, factor: int = 8) -> list[np.ndarray]:
    side = canvas.shape[1]
    out = []
    for f in canvas:
        small = cv2.resize(f, (side // factor, side // factor), interpolation=cv2.INTER_AREA)
        out.append(cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC))
    return out


def parts(frames: list[np.ndarray], truth: MouthTruth) -> dict[str, float]:
    """Means over the scored frames (all but frame 0, ground-truth face found)."""
    lmd, off, shape, nose, dy, moved, followed = [], [], [], [], [], [], []
    start = truth.points[0]
    for i in range(1, len(truth.points)):
        box, gt = truth.boxes[i], truth.points[i]
        if box is None or gt is None:
            continue
        p = landmarks(frames[i], box)
        o, s = distance_parts(p, gt, MOUTH)
        lmd.append(landmark_distance(p, gt, MOUTH))
        off.append(float(np.linalg.norm(o)))
        dy.append(float(o[1]))
        shape.append(s)
        nose.append(float(np.linalg.norm(distance_parts(p, gt, NOSE)[0])))
        if start is not None:
            moved.append(distance_parts(gt, start, NOSE)[0])
            followed.append(distance_parts(p, start, NOSE)[0])
    m, f = np.array(moved).reshape(-1, 2), np.array(followed).reshape(-1, 2)
    cross, moved_sq = float((m * f).sum()), float((m * m).sum())
    return {"mouth_lmd": float(np.mean(lmd)), "offset": float(np.mean(off)),
            "shape": float(np.mean(shape)), "nose_offset": float(np.mean(nose)),
            "offset_dy": float(np.mean(dy)), "motion_gain": cross / moved_sq if moved_sq > 0 else float("nan"),
            "_cross": cross, "_moved_sq": moved_sq}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--receivers", default="neural")
    ap.add_argument("--crf", type=int, default=51)
    ap.add_argument("--clips", type=int, default=None)
    args = ap.parse_args()
    rows = val_rows()[: args.clips] if args.clips else val_rows()
    table: dict[str, list[dict[str, float]]] = {}
    kbps: list[float] = []
    for row in rows:
        canvas, audio = load_val(row, args.seconds)
        truth = MouthTruth(canvas, REPO / "cache" / "eval" /
                           f"{Path(row['file']).stem}-{args.seconds:g}s-truth.npz")
        outputs: dict[str, list[np.ndarray]] = {}
        lows, chunks = lowres_stream(canvas, False), audio_chunks(audio, False)
        for name in args.receivers.split(","):
            outputs[name] = run_receiver(name, canvas, lows, chunks)[0]
        h264 = encode_decode(canvas, CODECS["H.264"], args.crf)
        outputs[f"H.264 crf={args.crf}"] = list(h264.frames)
        kbps.append(h264.bits / (len(canvas) / 25.0) / 1000.0)
        outputs["truth/8 cubic"] = blurred_truth(canvas)
        for name, frames in outputs.items():
            res = parts(frames, truth)
            table.setdefault(name, []).append(res)
            print(f"{row['identity'][:22]:22s} {name:14s} " + " ".join(
                f"{k} {v:6.2f}" for k, v in res.items() if not k.startswith("_")), flush=True)
    print("\nmean over clips (px of the 256 canvas); H.264 at "
          f"{np.mean(kbps):.1f} kbit/s video on average")
    for name, res in table.items():
        pooled = sum(r["_cross"] for r in res) / max(sum(r["_moved_sq"] for r in res), 1e-9)
        print(f"  {name:14s} " + " ".join(
            f"{k} {np.nanmean([r[k] for r in res]):.2f}" for k in res[0] if not k.startswith("_"))
            + f" pooled motion_gain {pooled:.2f}")


if __name__ == "__main__":
    main()
