"""How far the mouth bars can be reached from an 8x8 stream at 5 fps and the speech.

Per val clip (the ``eval_neural.py`` clips: first ``--seconds`` s, through the bitstream),
the two mouth scores of the benchmark tables (mouth landmark distance, mouth r: per clip
Pearson r of the lip opening over time) for:

- ``speech driver``: the mouth driver's lip opening (speech -> opening, before rendering)
  against the ground truth's: what the audio path predicts (r only).
- ``neural``: the shipped receiver; its mouth landmark distance also per frame phase
  (phase 0: a received 8x8 frame; 1-4: the interpolated frames between).
- ``oracle opening xS``: the same receiver with its mouth driver replaced by the ground
  truth's lip opening at each frame, the mouth stage at strength S (shipped: 0.5). What a
  perfect speech -> opening model would give through this renderer: an upper bound for the
  audio path, and the landmark distance left when the mouth's shape is right.
- ``5 fps truth``: the ground-truth landmarks at the received frames only, linearly
  interpolated between them: what the 5 fps rate alone costs, were every received frame
  rendered exactly.

The means are over the clips that have a score: the driver's r is left out on the clips the
manifest marks as without speech (``eamm_disgusted``'s track is not speech,
``lia_vox_driving1`` has no audio), where the output's r is what the 8x8 gives.

    nice .venv/bin/python -m benchmarks.diagnostics.mouth_ceiling [--seconds 10] [--clips N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.diagnostics.mouth_ceiling ...")

import numpy as np

REPO = Path(__file__).resolve().parents[2]

from benchmarks.eval_neural import (
    MouthTruth,
    audio_chunks,
    load_val,
    lowres_stream,
    run_built,
    val_rows,
)
from codec import CANVAS_FPS
from codec.bitstream.lowres_codec import LowResParams
from codec.metrics.landmarks import (
    MOUTH,
    landmark_distance,
    landmarks,
    motion_correlation,
    mouth_opening,
)
from codec.receiver.base import FRAME_MS
from codec.receiver.neural import NeuralReceiver

KEY_EVERY = CANVAS_FPS // LowResParams().fps  # canvas frames per received 8x8 frame


class ProbedReceiver(NeuralReceiver):
    """The shipped receiver, recording the lip opening its mouth stage is given per frame;
    with ``openings`` (frame index -> opening) that opening replaces the speech driver's."""

    def __init__(self, openings: dict[int, float] | None = None,
                 strength: float | None = None, **kw: object) -> None:
        super().__init__(**kw)
        self.openings = openings
        self.driven: dict[int, float] = {}
        self._frame = 0
        if strength is not None:
            self.mouth_strength = strength

    def render(self, t_ms: float) -> np.ndarray:
        self._frame = round(t_ms / FRAME_MS)
        return super().render(t_ms)

    def opening(self, block: np.ndarray) -> float:
        o = (super().opening(block) if self.openings is None or self._frame not in self.openings
             else self.openings[self._frame])
        self.driven[self._frame] = o
        return o


def scored(truth: MouthTruth) -> list[int]:
    """The frames the benchmark tables score: all but the identity frame, where the ground
    truth has a face."""
    return [i for i in range(1, len(truth.points))
            if truth.boxes[i] is not None and truth.points[i] is not None]


def frame_scores(points: dict[int, np.ndarray], truth: MouthTruth) -> dict[str, float]:
    """Mouth LMD (all, and per phase) and mouth r of output landmarks per scored frame."""
    idx = [i for i in scored(truth) if i in points]
    d = {i: landmark_distance(points[i], truth.points[i], MOUTH) for i in idx}
    out = {"lmd": float(np.mean(list(d.values()))) if d else float("nan"),
           "r": motion_correlation(np.array([mouth_opening(points[i]) for i in idx]),
                                   np.array([mouth_opening(truth.points[i]) for i in idx]))
           if len(idx) >= 3 else float("nan")}
    for ph in range(KEY_EVERY):
        v = [d[i] for i in idx if i % KEY_EVERY == ph]
        out[f"lmd{ph}"] = float(np.mean(v)) if v else float("nan")
    return out


def rendered(frames: list[np.ndarray], truth: MouthTruth) -> dict[int, np.ndarray]:
    return {i: landmarks(frames[i], truth.boxes[i]) for i in scored(truth)}


def five_fps_truth(truth: MouthTruth) -> dict[int, np.ndarray]:
    """Ground-truth landmarks at the received frames, linear between them (where both
    neighbouring received frames have a face)."""
    out = {}
    for i in scored(truth):
        k0 = (i // KEY_EVERY) * KEY_EVERY
        k1 = k0 + KEY_EVERY
        a = truth.points[k0]
        if i == k0 and a is not None:
            out[i] = a
        elif a is not None and k1 < len(truth.points) and truth.points[k1] is not None:
            w = (i - k0) / KEY_EVERY
            out[i] = (1.0 - w) * a + w * truth.points[k1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clips", type=int, default=None)
    ap.add_argument("--strengths", default="0.5,1.0",
                    help="mouth-stage strengths of the oracle-opening rows")
    args = ap.parse_args()
    rows = val_rows()[: args.clips] if args.clips else val_rows()
    strengths = [float(s) for s in args.strengths.split(",") if s]
    table: dict[str, list[dict[str, float]]] = {}

    def add(name: str, res: dict[str, float], ident: str, speech: bool) -> None:
        table.setdefault(name, []).append({**res, "_speech": float(speech)})
        print(f"{ident[:22]:22s} {name:18s} " + " ".join(
            f"{k} {v:6.3f}" for k, v in res.items() if not np.isnan(v)), flush=True)

    for row in rows:
        canvas, audio = load_val(row, args.seconds)
        truth = MouthTruth(canvas, REPO / "cache" / "eval" /
                           f"{Path(row['file']).stem}-{args.seconds:g}s-truth.npz")
        lows, chunks = lowres_stream(canvas, False), audio_chunks(audio, False)
        ident, speech = row["identity"], row.get("speech") != "no"
        rx = ProbedReceiver(threads=1)
        frames = run_built(rx, canvas, lows, chunks)[0]
        idx = [i for i in scored(truth) if i in rx.driven]
        add("speech driver", {"r": motion_correlation(
            np.array([rx.driven[i] for i in idx]),
            np.array([mouth_opening(truth.points[i]) for i in idx]))
            if speech and len(idx) >= 3 else float("nan")}, ident, speech)
        add("neural", frame_scores(rendered(frames, truth), truth), ident, speech)
        true_open = {i: mouth_opening(p) for i, p in enumerate(truth.points) if p is not None}
        for s in strengths:
            rx = ProbedReceiver(openings=true_open, strength=s, threads=1)
            frames = run_built(rx, canvas, lows, chunks)[0]
            add(f"oracle opening x{s:g}", frame_scores(rendered(frames, truth), truth),
                ident, speech)
        add("5 fps truth", frame_scores(five_fps_truth(truth), truth), ident, speech)

    print(f"\nmeans over the clips with a score ({len(rows)} val clips, first {args.seconds:g} s)")
    print(f"  {'':19s} {'mouth r':>8s} {'speech clips':>12s} {'mouth LMD':>10s}  "
          "LMD by phase 0 / 1 / 2 / 3 / 4")
    for name, res in table.items():
        def m(k: str, res: list[dict[str, float]] = res, speech_only: bool = False) -> float:
            v = [r[k] for r in res if k in r and not np.isnan(r[k])
                 and (r["_speech"] or not speech_only)]
            return float(np.mean(v)) if v else float("nan")
        phases = " / ".join(f"{m(f'lmd{p}'):.2f}" for p in range(KEY_EVERY))
        print(f"  {name:19s} {m('r'):8.3f} {m('r', speech_only=True):12.3f} "
              f"{m('lmd'):10.2f}  {phases}")


if __name__ == "__main__":
    main()
