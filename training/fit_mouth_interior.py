"""Fit the mouth interior model (``codec/receiver/mouth_interior.py``) on ``train``.

For each clip: its canvas (the sender's loader), the sender's landmarks on it
(``FaceLandmarker``, as the motion code carries them), the identity frame (frame 0, the
sender's default) and its lip and skin colours; then for each confident frame the true
colours on the canonical grid between the inner lips and the model's features. A ridge
from features to colours over skin colour is fitted on the train clips; the val clips
measure it (the mouth box's PSNR of the warped identity frame with the painted
interior, against the hand-painted cavity). Per-clip samples are cached
(``cache/mouth_interior/``), so a second run only fits.

    nice -n 5 .venv/bin/python -m training.fit_mouth_interior --max-seconds 8 --write
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from codec.receiver.landmark_warp import LandmarkWarp
from codec.receiver.mouth_interior import (
    N_FEATURES,
    features,
    opening,
    sample_grid,
    save_model,
)
from codec.sender.canvas import load_face_clip
from training.measure_landmarks import measure_clip
from training.paths import cache_dir, data_dir, manifest_rows

REPO = Path(__file__).resolve().parents[1]


def clip_samples(path: Path, max_seconds: float, stride: int) -> dict[str, np.ndarray]:
    clip = load_face_clip(str(path), max_seconds=max_seconds)
    points, confident = measure_clip(clip.frames)
    if not confident[0]:
        raise ValueError("no confident face on the identity frame")
    warp = LandmarkWarp(clip.frames[0], points[0])
    lip, skin = warp.lip_colour, warp.skin_colour
    keep = [k for k in range(1, len(points), stride) if confident[k]]
    x = np.stack([features(points[k], lip, skin) for k in keep]) if keep else np.zeros(
        (0, N_FEATURES))
    y = (np.stack([sample_grid(clip.frames[k], points[k]) for k in keep]) if keep
         else np.zeros((0, 1, 1, 3)))
    gaps = np.array([opening(points[k]) for k in keep])
    return {"x": x, "y": y, "gap": gaps, "skin": skin, "frames": np.array(keep),
            "points": points, "confident": confident}


def collect(max_seconds: float, stride: int) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    out_dir = cache_dir() / "mouth_interior"
    out_dir.mkdir(parents=True, exist_ok=True)
    sets: dict[str, dict[str, dict[str, np.ndarray]]] = {"train": {}, "val": {}}
    for row in manifest_rows():
        stem = Path(row["file"]).stem
        f = out_dir / f"{stem}.npz"
        if not f.exists():
            t0 = time.time()
            try:
                s = clip_samples(data_dir() / row["file"], max_seconds, stride)
            except Exception as e:  # noqa: BLE001 - a clip without a face is left out
                print(f"skip {stem}: {type(e).__name__}: {e}", flush=True)
                continue
            np.savez_compressed(f, **s)
            print(f"{row['split']} {stem}: {len(s['x'])} samples, {time.time() - t0:.1f}s",
                  flush=True)
        with np.load(f) as z:
            sets[row["split"]][stem] = {k: z[k] for k in z.files}
    return sets


def fit(train: dict[str, dict[str, np.ndarray]], ridge: float) -> np.ndarray:
    xs = np.concatenate([s["x"] for s in train.values()])
    ys = np.concatenate([(s["y"] / s["skin"]).reshape(len(s["y"]), -1)
                         for s in train.values()])
    # Each clip weighs the same, whatever its length.
    w = np.concatenate([np.full(len(s["x"]), 1.0 / max(1, len(s["x"])))
                        for s in train.values()])
    a = (xs * w[:, None]).T @ xs
    a += ridge * np.trace(a) / len(a) * np.eye(len(a))
    return np.linalg.solve(a, (xs * w[:, None]).T @ ys)


def grid_error(weights: np.ndarray, sets: dict[str, dict[str, np.ndarray]],
               min_gap: float) -> float:
    """RMS colour error (0-255) on the grid over frames whose mouth is open > min_gap px."""
    err, n = 0.0, 0
    for s in sets.values():
        open_ = s["gap"] > min_gap
        if not open_.any():
            continue
        pred = (s["x"][open_] @ weights).reshape(s["y"][open_].shape) * s["skin"]
        err += float(((np.clip(pred, 0, 255) - s["y"][open_]) ** 2).sum()) / 3
        n += pred[..., 0].size
    return float(np.sqrt(err / max(n, 1)))


def evaluate(weights: np.ndarray, val: dict[str, dict[str, np.ndarray]],
             max_seconds: float) -> dict[str, float]:
    """Mean mouth-box PSNR (dB) on the val clips' sampled frames: the identity frame warped
    to the sender's landmarks, each way of filling the mouth, back-projected onto the 8x8
    as the receiver does."""
    import codec.receiver.landmark_warp as lw
    from benchmarks.clip_metrics import mouth_box
    from codec.metrics.fidelity import psnr
    from codec.receiver.backproject import back_project
    from codec.receiver.mouth_interior import MouthInteriorModel
    from codec.receiver.upsample import Upsampler
    from codec.sender.downsample import box_downsample

    up = Upsampler(256)
    model = MouthInteriorModel(weights)
    rows = {row["file"]: row for row in manifest_rows()}
    scores: dict[str, list[float]] = {}
    for stem, s in val.items():
        file = next(f for f in rows if Path(f).stem == stem)
        clip = load_face_clip(str(data_dir() / file), max_seconds=max_seconds)
        pts = s["points"]
        warp = LandmarkWarp(clip.frames[0], pts[0])
        per: dict[str, list[float]] = {}
        for k in s["frames"]:
            gt = clip.frames[k]
            low = box_downsample(gt[None].astype(np.float32), 32)[0]
            y0, y1, x0, x1 = mouth_box(pts[k], 256)
            outs = {"warp only": warp.render(pts[k], fill_mouth=False)}
            warp.interior = None
            outs["painted cavity"] = warp.render(pts[k])
            for alpha in ("opened", "full"):
                lw.INTERIOR_ALPHA = alpha
                warp.interior = model
                outs[f"learned ({alpha})"] = warp.render(pts[k])
            for name, img in outs.items():
                img = np.clip(np.rint(back_project(img, low, up)), 0, 255)
                per.setdefault(name, []).append(
                    psnr(img[y0:y1, x0:x1].astype(np.uint8), gt[y0:y1, x0:x1]))
        for name, v in per.items():
            scores.setdefault(name, []).append(float(np.mean(v)))
        print(stem[:40], {n: round(float(np.mean(v)), 2) for n, v in per.items()}, flush=True)
    lw.INTERIOR_ALPHA = "opened"
    return {n: float(np.mean(v)) for n, v in scores.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--stride", type=int, default=2, help="every n-th frame of a clip")
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--write", action="store_true", help="write the model into models/")
    ap.add_argument("--evaluate", action="store_true", help="mouth-box PSNR on val")
    args = ap.parse_args()
    sets = collect(args.max_seconds, args.stride)
    print(f"train {len(sets['train'])} clips {sum(len(s['x']) for s in sets['train'].values())}"
          f" samples; val {len(sets['val'])} clips")
    for ridge in sorted({args.ridge, 1e-4, 1e-2, 1e-1}):
        w = fit(sets["train"], ridge)
        print(f"ridge {ridge:g}: grid RMS (open > 3 px) train "
              f"{grid_error(w, sets['train'], 3.0):.2f} val {grid_error(w, sets['val'], 3.0):.2f}")
    mean = np.mean(np.concatenate([(s["y"] / s["skin"]).reshape(len(s["y"]), -1)
                                   for s in sets["train"].values()]), 0)
    const = np.zeros((N_FEATURES, mean.size))
    const[-1] = mean
    print(f"constant (mean ratio) baseline: val {grid_error(const, sets['val'], 3.0):.2f}")
    if args.evaluate:
        w = fit(sets["train"], args.ridge)
        for name, v in evaluate(w, sets["val"], args.max_seconds).items():
            print(f"val mouth-box PSNR, {name}: {v:.2f} dB")
    if args.write:
        w = fit(sets["train"], args.ridge)
        print(f"wrote {save_model(REPO / 'models', w)}")


if __name__ == "__main__":
    main()
