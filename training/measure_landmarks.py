"""Measure the sender's landmarks on every clip (restartable): cache/motion/<clip>.npz.

Each file holds what ``codec.sender.landmarks.FaceLandmarker`` measures on the clip's
25 fps canvas (the same loader and tracker as the sender): ``points`` (T, 68, 2) float32
(NaN where no face) and ``confident`` (T,) bool, plus the split and identity. The motion
basis (``fit_motion_basis.py``) is fitted on the train files.

    nice -n 5 .venv/bin/python -m training.measure_landmarks --max-seconds 12
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from codec.sender.canvas import load_face_clip
from codec.sender.landmarks import FaceLandmarker
from training.paths import cache_dir, data_dir, manifest_rows


def measure_clip(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lm = FaceLandmarker()
    points = np.full((len(frames), 68, 2), np.nan, np.float32)
    confident = np.zeros(len(frames), bool)
    for k, frame in enumerate(frames):
        s = lm.measure(frame)
        if s.points is not None:
            points[k] = s.points
        confident[k] = s.confident
    return points, confident


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-seconds", type=float, default=12.0, help="seconds of each clip")
    ap.add_argument("--split", choices=["train", "val", "all"], default="all")
    args = ap.parse_args()
    root = data_dir()
    out_dir = cache_dir() / "motion"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = manifest_rows()
    for row in rows:
        if args.split != "all" and row["split"] != args.split:
            continue
        out = out_dir / f"{Path(row['file']).stem}.npz"
        if out.exists():
            continue
        t0 = time.time()
        try:
            clip = load_face_clip(str(root / row["file"]), max_seconds=args.max_seconds)
        except Exception as e:  # noqa: BLE001 - a bad clip is skipped, the set goes on
            print(f"skip {row['file']}: {type(e).__name__}: {e}", flush=True)
            continue
        points, confident = measure_clip(clip.frames)
        np.savez_compressed(out, points=points, confident=confident, split=row["split"],
                            identity=row["identity"])
        print(f"{row['split']} {out.stem}: {len(points)} frames, "
              f"{confident.mean():.0%} confident, {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
