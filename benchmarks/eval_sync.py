"""Lip sync of the receivers on val: LSE-C, LSE-D and offset accuracy from our sync expert.

Each val clip is fed to the receivers exactly as ``benchmarks/eval_neural.py`` does (its
helpers are imported: first ``--seconds`` s of the sender's canvas, identity = frame 0, 8x8
stream through the bitstream's low-res codec, audio through Opus at 8 kbit/s). The output is
scored against the clip's *original* 16 kHz audio with ``codec.metrics.sync`` (mouth boxes
from the ground-truth landmarks, offsets -7..+7 frames). Only clips with speech count in the
means (9 of the 11 val clips; ``eamm_disgusted`` has audio but no speech and is printed
apart, ``lia_vox_driving1`` has no audio).

Reference rows, which say whether the expert can tell sync at all:
``gt`` (ground-truth video, its own audio), ``gt:swapped`` (the next speech clip's audio),
``gt:shift10`` (own audio 10 frames = 400 ms late, beyond the offset search), ``gt:frozen``
(frame 0 held for the whole clip, own audio).

    nice -n 5 .venv/bin/python -m benchmarks.eval_sync [--receivers bicubic,...] [--gt-only]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.eval_sync ...")

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from benchmarks.eval_neural import (
    MouthTruth,
    audio_chunks,
    load_val,
    lowres_stream,
    run_receiver,
    val_rows,
)
from codec.metrics.sync import SyncExpert, sync_scores

KEYS = ("lse_c", "lse_d", "av_offset", "offset_acc", "lse_c_window", "lse_d_window")


def shifted(audio: np.ndarray, frames: int) -> np.ndarray:
    """The audio delayed by ``frames`` video frames (silence in front)."""
    n = int(frames * 640)
    return np.concatenate([np.zeros(n, np.float32), audio[: len(audio) - n]]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--receivers", default="bicubic,backproject,align,neural")
    ap.add_argument("--gt-only", action="store_true", help="only the reference rows")
    ap.add_argument("--clips", type=int, default=None)
    args = ap.parse_args()
    expert = SyncExpert()
    print(f"sync expert {expert.path.name}", flush=True)
    rows = val_rows()[: args.clips] if args.clips else val_rows()
    clips = [(r, *load_val(r, args.seconds)) for r in rows]
    speech = [i for i, (r, _, a) in enumerate(clips) if r["speech"] == "yes" and len(a)]
    receivers = [] if args.gt_only else args.receivers.split(",")
    table: dict[str, list[dict[str, float]]] = {}
    apart: dict[str, list[dict[str, float]]] = {}
    t0 = time.time()
    for ci, (row, canvas, audio) in enumerate(clips):
        name = Path(row["file"]).stem[-40:]
        if not len(audio):
            print(f"{name:40s} no audio: not scored", flush=True)
            continue
        truth = MouthTruth(canvas, REPO / "cache" / "eval" /
                           f"{Path(row['file']).stem}-{args.seconds:g}s-truth.npz")
        n = len(canvas)
        audio = np.resize(audio, n * 640).astype(np.float32) if len(audio) < n * 640 else audio
        runs: dict[str, tuple[np.ndarray | list[np.ndarray], np.ndarray]] = {
            "gt": (canvas, audio),
            "gt:shift10": (canvas, shifted(audio, 10)),
            "gt:frozen": (np.repeat(canvas[:1], n, 0), audio)}
        if ci in speech and len(speech) > 1:
            other = clips[speech[(speech.index(ci) + 1) % len(speech)]][2]
            runs["gt:swapped"] = (canvas, np.resize(other, len(audio)).astype(np.float32))
        if receivers:
            lows = lowres_stream(canvas, exact=False)
            chunks = audio_chunks(audio, raw=False)
            for rx in receivers:
                runs[rx] = (run_receiver(rx, canvas, lows, chunks)[0], audio)
        for label, (frames, aud) in runs.items():
            res = sync_scores(frames, truth.points, aud, expert).as_dict()
            (table if ci in speech else apart).setdefault(label, []).append(res)
            print(f"{name:40s} {label:12s} " + " ".join(f"{k} {res[k]:.3f}" for k in KEYS),
                  flush=True)
    for title, tab in (("speech clips", table), ("val clips without speech", apart)):
        if not tab:
            continue
        print(f"\nmean over {title} (offsets -7..+7 frames; {time.time() - t0:.0f} s):")
        print(f"  {'':12s} {'n':>2s} {'LSE-C':>6s} {'LSE-D':>6s} {'|AV off|<=1':>11s} "
              f"{'off.acc':>7s} {'LSE-C/w':>7s} {'LSE-D/w':>7s}")
        for label, res in tab.items():
            m = {k: float(np.mean([r[k] for r in res])) for k in KEYS}
            ok = float(np.mean([abs(r["av_offset"]) <= 1 for r in res]))
            print(f"  {label:12s} {len(res):2d} {m['lse_c']:6.3f} {m['lse_d']:6.3f} {ok:11.2f} "
                  f"{m['offset_acc']:7.3f} {m['lse_c_window']:7.3f} {m['lse_d_window']:7.3f}")


if __name__ == "__main__":
    main()
