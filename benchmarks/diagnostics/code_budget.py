"""Where the motion code's mouth error comes from: measurement, rate, coding, rendering.

Per val clip (first ``--seconds`` s of the sender's canvas, as ``bench_bpp.py`` loads it),
the mouth landmark distance (points 48-67, px at 256x256, every 2nd frame, frame 0 left
out; the ground truth is dlib's 68 points in the box detected on the true frame, as in
``clip_metrics.py``) of:

- ``measured, every frame``: the sender's landmarker (``codec/sender/landmarks.py``) on
  every canvas frame, its de-jittering off: the measurement alone;
- ``measured, code grid``: the landmarker as the sender runs it (on the code's sample grid,
  de-jittered), linearly interpolated between its samples: measurement + sample rate +
  the filter's lag;
- ``decoded``: the landmarks the receiver animates with, decoded from the real packets
  (quantised, predicted, range coded): everything up to the renderer;
- ``rendered``: dlib's landmarks on the receiver's output (the benchmark's figure);
- ``rendered from truth``: the same renderer driven by the true landmarks of every frame:
  the renderer's own floor.

The gaps between the rows say which stage costs the most.

    nice .venv/bin/python -m benchmarks.diagnostics.code_budget [--seconds 5] [--clips N] [--code 12.5:6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.diagnostics.code_budget ...")

import numpy as np

REPO = Path(__file__).resolve().parents[2]

from benchmarks import talkcodec_runner  # noqa: E402
from benchmarks.bench_bpp import list_clips, load_canvas  # noqa: E402
from codec.data import data_dir  # noqa: E402
from codec.metrics.landmarks import MOUTH, detect_face, landmark_distance, landmarks  # noqa: E402
from codec.receiver.backproject import back_project  # noqa: E402
from codec.receiver.base import FRAME_MS  # noqa: E402
from codec.receiver.neural import NeuralReceiver  # noqa: E402
from codec.receiver.pipeline import decode_packets  # noqa: E402
from codec.receiver.upsample import Upsampler  # noqa: E402
from codec.sender.downsample import box_downsample  # noqa: E402
from codec.sender.landmarks import FaceLandmarker  # noqa: E402

ROWS = ("measured, every frame", "measured, code grid", "decoded", "rendered",
        "rendered from truth")


class RecordingReceiver(NeuralReceiver):
    """The shipped receiver, keeping the landmarks it animated each frame with."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.used: dict[int, np.ndarray] = {}

    def render(self, t_ms: float) -> np.ndarray:
        sample = self.motion_sample_at(t_ms) if self._warp is not None else None
        if sample is not None and sample.points is not None:
            self.used[round(t_ms / FRAME_MS)] = np.asarray(sample.points, np.float64)
        return super().render(t_ms)


def _interpolated(samples: dict[int, np.ndarray], k: int) -> np.ndarray | None:
    if k in samples:
        return samples[k]
    before = [j for j in samples if j < k]
    after = [j for j in samples if j > k]
    if not before or not after:
        return None
    a, b = max(before), min(after)
    w = (k - a) / (b - a)
    return (1 - w) * samples[a] + w * samples[b]


def clip_budget(frames: np.ndarray, packets: list, period_frames: int) -> dict[str, float]:
    n = len(frames)
    truth: dict[int, tuple] = {}
    for k in range(1, n, 2):
        box = detect_face(frames[k])
        if box is not None:
            truth[k] = (box, landmarks(frames[k], box))
    raw_lm = FaceLandmarker(smooth=False)
    raw = {k: raw_lm.measure(frames[k]).points for k in range(n)}
    grid_lm = FaceLandmarker(fps=25.0 / period_frames)
    grid = {}
    for k in range(0, n, period_frames):
        s = grid_lm.measure(frames[k])
        if s.points is not None and s.confident:
            grid[k] = np.asarray(s.points, np.float64)
    rx = RecordingReceiver()
    out = decode_packets(packets, rx).frames
    by_index = {round(f.timestamp_ms / FRAME_MS): f.image for f in out}
    ident = rx._identity
    warp = rx._warp
    up = Upsampler(256)
    errs: dict[str, list[float]] = {r: [] for r in ROWS}
    for k, (box, gt) in truth.items():
        def d(p: np.ndarray | None, gt: np.ndarray = gt) -> float | None:
            return None if p is None else landmark_distance(np.asarray(p), gt, MOUTH)

        vals = {ROWS[0]: d(raw.get(k)), ROWS[1]: d(_interpolated(grid, k)),
                ROWS[2]: d(rx.used.get(k))}
        if k in by_index:
            vals[ROWS[3]] = d(landmarks(by_index[k], box))
        if warp is not None and ident is not None:
            lows = box_downsample(frames[k : k + 1].astype(np.float32), 32)[0]
            img = back_project(warp.render(gt), lows, up)
            vals[ROWS[4]] = d(landmarks(np.clip(np.rint(img), 0, 255).astype(np.uint8), box))
        if any(v is None for v in vals.values()) or len(vals) < len(ROWS):
            continue  # every row on the same frames
        for r, v in vals.items():
            errs[r].append(float(v))  # type: ignore[arg-type]
    return {r: float(np.mean(v)) if v else float("nan") for r, v in errs.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clips", type=int, default=0, help="first N val clips (0: all)")
    ap.add_argument("--code", default=talkcodec_runner.DEFAULT_CODE_POINTS[0],
                    help="samples/s:quantiser, as bench_bpp's --code")
    args = ap.parse_args(argv)
    config = talkcodec_runner.sender_config(args.code)
    period_frames = config.motion_period_ms // 40
    paths = list_clips(data_dir(), "val")
    if args.clips:
        paths = paths[: args.clips]
    table = []
    for path in paths:
        clip = load_canvas(path, args.seconds)
        stream = talkcodec_runner.encode(clip, config)
        res = clip_budget(clip.frames, stream.packets, period_frames)
        table.append(res)
        print(f"{path.stem[:40]:40s} " + " ".join(f"{res[r]:6.2f}" for r in ROWS), flush=True)
    print(f"\nmouth LMD px, mean of {len(table)} val clips, code {args.code}:")
    for r in ROWS:
        vals = [t[r] for t in table if np.isfinite(t[r])]
        print(f"  {r:24s} {np.mean(vals):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
