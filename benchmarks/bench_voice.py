"""Does the voice matter? The ``voice`` receiver on val with four voices (issue 14).

For every val clip with speech (first 5 s of the sender's canvas, through the real
bitstream: quantised 8x8 at 5 fps, Opus speech), decoded by ``voice`` with: the clip's own
speech (the stream's Opus), another val clip's speech of the same and of the opposite
perceived gender (a train speaker's when val has none), silence; and by ``bicubic``.
Per clip: PSNR (every frame), SSIM (every 4th), dlib 128-d descriptor distance to the
ground-truth frame (every 10th, in the ground truth's face box), gender agreement (the
share of those frames whose descriptor a gender classifier fitted on train faces'
descriptors labels as the person's annotated gender, training/perceived_gender.csv); FID
pooled over the clips (every 10th frame). Prints mean, sd and range over the clips.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python -m benchmarks.bench_voice
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.bench_voice ...")

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from benchmarks import talkcodec_runner  # noqa: E402
from benchmarks.bench_bpp import load_canvas  # noqa: E402
from codec._dlib import detect_face  # noqa: E402
from codec.data import data_dir  # noqa: E402
from codec.metrics.fid import frechet_distance, inception_features  # noqa: E402
from codec.metrics.fidelity import mean_psnr, psnr, ssim  # noqa: E402
from codec.metrics.identity import descriptor_distance, face_descriptor  # noqa: E402

CONDITIONS = ("own voice", "same-gender voice", "opposite-gender voice", "silence")


def genders() -> dict[str, str]:
    lines = (ln for ln in open(REPO / "training" / "perceived_gender.csv") if not ln.startswith("#"))
    return {r["identity"]: r["perceived_gender"] for r in csv.DictReader(lines)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def gender_classifier(gender: dict[str, str]) -> tuple[np.ndarray, float]:
    """Linear discriminant (w, b) on dlib descriptors of train faces: > 0 means male.
    Faces: 2 per train clip from cache/voice (64 px, enlarged to 256 for dlib)."""
    import cv2

    x, y = [], []
    for p in sorted((REPO / "cache" / "voice").glob("*.npz")):
        z = np.load(p)
        if str(z["split"]) != "train":
            continue
        for face in z["faces"][[0, len(z["faces"]) // 2]]:
            img = cv2.resize(face, (256, 256), interpolation=cv2.INTER_CUBIC)
            box = detect_face(img)
            if box is not None:
                x.append(face_descriptor(img, box))
                y.append(gender[str(z["identity"])] == "male")
    xa, ya = np.array(x), np.array(y)
    m1, m0 = xa[ya].mean(0), xa[~ya].mean(0)
    cov = np.cov(np.vstack([xa[ya] - m1, xa[~ya] - m0]).T) + 1e-3 * np.eye(xa.shape[1])
    w = np.linalg.solve(cov, m1 - m0)
    b = -float(w @ (m1 + m0) / 2)
    acc = float(np.mean(((xa @ w + b) > 0) == ya))
    log(f"gender classifier: {len(xa)} train face descriptors, train accuracy {acc:.3f}")
    return w, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-seconds", type=float, default=5.0)
    ap.add_argument("--no-fid", action="store_true")
    args = ap.parse_args()
    gender = genders()
    rows = [r for r in csv.DictReader(open(data_dir() / "manifest.csv")) if r["split"] == "val"
            and r["speech"] == "yes"]
    w, b = gender_classifier(gender)
    clips = {r["identity"]: load_canvas(data_dir() / r["file"], args.max_seconds) for r in rows}
    train_voices: dict[str, np.ndarray] = {}
    for p in sorted((REPO / "cache" / "voice").glob("*.npz")):
        z = np.load(p)
        g = gender[str(z["identity"])]
        if str(z["split"]) == "train" and str(z["speech"]) == "yes" and g not in train_voices:
            train_voices[g] = z["audio"][: int(args.max_seconds * 16000)]
    per: dict[str, dict[str, list[float]]] = {}
    feats: dict[str, list[np.ndarray]] = {}
    ids = list(clips)
    for ident in ids:
        clip, g = clips[ident], gender[ident]
        frames = clip.frames
        n = len(frames)
        idx_id = np.arange(1, n, 10)
        boxes = {int(k): detect_face(frames[k]) for k in idx_id}
        truth = {k: face_descriptor(frames[k], bx) for k, bx in boxes.items() if bx is not None}
        feats.setdefault("ground truth", []).append(frames[idx_id])
        stream = talkcodec_runner.encode(clip)

        def other(want: str, ident: str = ident) -> tuple[str, np.ndarray]:
            for o in ids:
                if o != ident and gender[o] == want and clips[o].audio is not None:
                    return o, np.asarray(clips[o].audio)
            return f"train {want}", train_voices[want]

        opp = "female" if g == "male" else "male"
        same_id, same_audio = other(g)
        opp_id, opp_audio = other(opp)
        runs = {"bicubic": ("bicubic", {}), "own voice": ("voice", {}),
                "same-gender voice": ("voice", {"voice": same_audio}),
                "opposite-gender voice": ("voice", {"voice": opp_audio}),
                "silence": ("voice", {"voice": np.zeros(16000, np.float32)})}
        for cond, (rx, kw) in runs.items():
            out = talkcodec_runner.decode(stream.packets, rx, n, **kw)
            d = {k: face_descriptor(out[k], boxes[k]) for k in truth}
            dist = [descriptor_distance(d[k], truth[k]) for k in truth]
            agree = [((d[k] @ w + b) > 0) == (g == "male") for k in truth]
            r = per.setdefault(cond, {"psnr": [], "ssim": [], "dist": [], "gender": []})
            r["psnr"].append(mean_psnr([psnr(out[k], frames[k]) for k in range(1, n)]))
            r["ssim"].append(float(np.mean([ssim(out[k], frames[k]) for k in range(1, n, 4)])))
            r["dist"].append(float(np.mean(dist)) if dist else float("nan"))
            r["gender"].append(float(np.mean(agree)) if agree else float("nan"))
            feats.setdefault(cond, []).append(out[idx_id])
        log(f"{ident} ({g}; same: {same_id}, opposite: {opp_id}): " + ", ".join(
            f"{c} {per[c]['dist'][-1]:.3f}/{per[c]['gender'][-1]:.2f}" for c in runs))
    fid = {}
    if not args.no_fid:
        ref = inception_features(np.concatenate(feats["ground truth"]))
        for cond in per:
            fid[cond] = frechet_distance(inception_features(np.concatenate(feats[cond])), ref)
    n_frames = len(np.concatenate(feats["ground truth"]))
    print(f"\n{len(ids)} val clips with speech, first {args.max_seconds:g} s, through the "
          f"bitstream; mean (sd) [min, max] over the clips; FID over {n_frames} frames\n")
    print("| receiver | voice | descriptor distance | gender agreement | PSNR dB | SSIM | FID |")
    print("|---|---|---|---|---|---|---|")

    def cell(v: list[float], f: str) -> str:
        a = np.array(v, np.float64)
        a = a[np.isfinite(a)]
        return f"{a.mean():{f}} ({a.std():{f}}) [{a.min():{f}}, {a.max():{f}}]"

    for cond, r in per.items():
        rx, voice = ("bicubic", "-") if cond == "bicubic" else ("voice", cond)
        print(f"| {rx} | {voice} | {cell(r['dist'], '.3f')} | {cell(r['gender'], '.2f')} | "
              f"{cell(r['psnr'], '.2f')} | {cell(r['ssim'], '.3f')} | "
              f"{fid.get(cond, float('nan')):.1f} |")
    own, opp_d = np.array(per["own voice"]["dist"]), np.array(per["opposite-gender voice"]["dist"])
    print(f"\nown voice closer than the opposite-gender voice on {int(np.sum(own < opp_d))} of "
          f"{len(own)} clips (mean difference {np.nanmean(opp_d - own):+.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
