"""Build the cached training set under cache/clips/<clip>/ (restartable, bounded in time).

Per clip: frames.u8 (T, 256, 256, 3) uint8 memmap of the 25 fps canvas, lowres.npy (T, 8, 8,
3) exact box means of every canvas frame, audio.npy (16 kHz), mel.npy (log-mel of the
zero-padded clip audio, see codec.audio.features), landmarks.npy (T, 68, 2) dlib landmarks
on the canvas (NaN where no face), meta.json written last (its presence = clip done).

    nice -n 5 .venv/bin/python -m training.build_cache --max-seconds 8
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import dlib
import numpy as np

from codec._dlib import DLIB_LOCK, face_detector, shape_predictor_68
from codec.audio.features import padded_clip_features
from codec.receiver.neural.contract import CANVAS, NET_LOWRES
from codec.sender.canvas import load_face_clip
from codec.sender.downsample import box_downsample
from training.paths import cache_dir, data_dir

LOWRES = NET_LOWRES  # the networks' 8x8 frames


def canvas_landmarks(frames: np.ndarray, detect_every: int = 5) -> np.ndarray:
    """(T, 68, 2) float32 landmarks; detection every few frames, box held in between."""
    with DLIB_LOCK:  # the package's one detector and predictor (codec._dlib)
        return _track_landmarks(frames, detect_every)


def _track_landmarks(frames: np.ndarray, detect_every: int) -> np.ndarray:
    det, pred = face_detector(), shape_predictor_68()
    out = np.full((len(frames), 68, 2), np.nan, np.float32)
    rect = None
    for k, img in enumerate(frames):
        img = np.ascontiguousarray(img)
        if k % detect_every == 0 or rect is None:
            rects = det(img, 0) or det(img, 1)
            if rects:
                rect = max(rects, key=lambda r: r.width() * r.height())
            elif k % detect_every == 0:
                rect = None
        if rect is None:
            continue
        shape = pred(img, rect)
        out[k] = [(p.x, p.y) for p in shape.parts()]
        # Re-centre the held box on this frame's landmarks (cheap tracking).
        xs, ys = out[k, :, 0], out[k, :, 1]
        cx, cy, w = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, rect.width()
        rect = dlib.rectangle(int(cx - w / 2), int(cy - w / 2), int(cx + w / 2), int(cy + w / 2))
    return out


def build_one(row: dict, root: Path, out: Path, max_seconds: float) -> None:
    clip = load_face_clip(str(root / row["file"]), max_seconds=max_seconds)
    frames = clip.frames
    t = len(frames)
    out.mkdir(parents=True, exist_ok=True)
    mm = np.memmap(out / "frames.u8", np.uint8, "w+", shape=frames.shape)
    mm[:] = frames
    mm.flush()
    del mm
    lowres = np.concatenate([box_downsample(frames[i : i + 64], CANVAS // LOWRES)
                             for i in range(0, t, 64)])
    np.save(out / "lowres.npy", lowres.astype(np.float32))
    audio = clip.audio if clip.audio is not None else np.zeros(0, np.float32)
    np.save(out / "audio.npy", audio.astype(np.float32))
    np.save(out / "mel.npy", padded_clip_features(clip.audio, t))
    np.save(out / "landmarks.npy", canvas_landmarks(frames))
    meta = {"file": row["file"], "identity": row["identity"], "split": row["split"],
            "speech": row["speech"], "n_frames": t, "has_audio": clip.audio is not None,
            "loader": "sender"}
    (out / "meta.json").write_text(json.dumps(meta))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--val-max-seconds", type=float, default=12.0)
    ap.add_argument("--budget-s", type=float, default=3600.0, help="stop after this long")
    args = ap.parse_args()
    root = data_dir()
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    rows.sort(key=lambda r: (r["split"] != "val", r["file"]))
    start = time.time()
    for row in rows:
        out = cache_dir() / "clips" / Path(row["file"]).stem
        if (out / "meta.json").exists():
            continue
        if time.time() - start > args.budget_s:
            print("time budget reached; rerun to continue")
            break
        cap = args.val_max_seconds if row["split"] == "val" else args.max_seconds
        t0 = time.time()
        try:
            build_one(row, root, out, cap)
            print(f"{row['split']} {out.name}: {time.time() - t0:.1f}s", flush=True)
        except Exception as e:  # noqa: BLE001 - a bad clip is skipped, the set goes on
            print(f"skip {row['file']}: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
