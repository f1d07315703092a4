"""Fit the ``voice`` receiver's model (issue 14): speaker encoder + face prior, closed form.

    .venv/bin/python -m training.build_voice_cache     # cache/voice/*.npz (~15 min)
    .venv/bin/python -m training.train_voice           # models/voice-<sha256[:12]>.npz

Only ``split=train`` clips are fitted on. Deterministic (fixed seed, no gradient descent):
the same cache and package versions give the same model to float rounding (BLAS summation
order; a rerun on 2026-12-07 differed by at most 3e-5 in the ridge, and so in the hash). See
``codec/receiver/voice.py`` for the model and docs/DESIGN.md for why it is linear.
"""

from __future__ import annotations

import argparse
import csv
import io
import zipfile
from pathlib import Path

import numpy as np

from codec.audio.features import log_mel
from codec.models import content_hash
from codec.receiver.upsample import upsample_matrix
from codec.receiver.voice import FACE_SIZE, voiced_stats
from training.paths import REPO, cache_dir

SEGMENT_S = 3.0


def load_cache(split: str) -> list[dict]:
    out = []
    for p in sorted((cache_dir() / "voice").glob("*.npz")):
        z = np.load(p)
        if str(z["split"]) != split:
            continue
        out.append({"name": p.stem, "identity": str(z["identity"]), "speech": str(z["speech"]),
                    "faces": z["faces"].astype(np.float64), "lowres": z["lowres"].astype(np.float64),
                    "audio": z["audio"]})
    return out


def genders() -> dict[str, int]:
    """identity -> 1 (perceived male) / 0 (female) from training/perceived_gender.csv."""
    rows = csv.DictReader(line for line in open(REPO / "training" / "perceived_gender.csv")
                          if not line.startswith("#"))
    return {r["identity"]: int(r["perceived_gender"] == "male") for r in rows}


def segment_stats(audio: np.ndarray, seconds: float = SEGMENT_S) -> list[np.ndarray]:
    n = int(seconds * 16000)
    out = []
    for s in range(0, max(1, len(audio) - n + 1), n):
        st = voiced_stats(log_mel(audio[s : s + n]))
        if st is not None:
            out.append(st)
    return out


def lda(z: np.ndarray, y: np.ndarray, dims: int, shrink: float) -> np.ndarray:
    classes = np.unique(y)
    mu = z.mean(0)
    sw = np.zeros((z.shape[1],) * 2)
    sb = np.zeros_like(sw)
    for c in classes:
        zc = z[y == c]
        mc = zc.mean(0)
        sw += (zc - mc).T @ (zc - mc)
        sb += len(zc) * np.outer(mc - mu, mc - mu)
    sw /= len(z)
    sb /= len(z)
    sw = (1 - shrink) * sw + shrink * np.eye(len(sw)) * np.trace(sw) / len(sw)
    evals, evecs = np.linalg.eig(np.linalg.solve(sw, sb))
    order = np.argsort(-evals.real)[:dims]
    w = evecs[:, order].real
    # Unit within-class variance per dimension.
    scale = np.sqrt(np.einsum("ij,jk,ki->i", w.T, sw, w))
    return w / scale


def logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """Newton's method, L2-regularised (bias unregularised); x gets a ones column."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        g = xb.T @ (p - y) + reg * w
        h = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        w -= np.linalg.solve(h, g)
    return w


def deterministic_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (np.load reads it) with fixed zip timestamps, so its hash is reproducible."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for k in sorted(arrays):
            arr = io.BytesIO()
            np.lib.format.write_array(arr, arrays[k], allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0)), arr.getvalue())
    return buf.getvalue()


DEV_ALPHAS = (300.0, 3000.0, 30000.0)
Pca = tuple[np.ndarray, np.ndarray, float]
Ridge = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def fit_pca(y: np.ndarray, components: int) -> Pca:
    mean = y.mean(0)
    _, sv, vt = np.linalg.svd(y - mean, full_matrices=False)
    return mean, vt[:components], float((sv[:components] ** 2).sum() / (sv**2).sum())


def _design(x8: np.ndarray, v: np.ndarray, x_mean: np.ndarray, x_std: np.ndarray) -> np.ndarray:
    return np.hstack([(x8 - x_mean) / x_std, v, np.ones((len(x8), 1))])


def fit_ridge(pca: Pca, y: np.ndarray, x8: np.ndarray, v: np.ndarray, alpha: float) -> Ridge:
    """(face mean, basis, x mean, x std, ridge): PCA coefficients from [8x8, voice, 1]."""
    mean, basis, _ = pca
    coef = (y - mean) @ basis.T
    x_mean, x_std = x8.mean(0), x8.std(0) + 1e-6
    x = _design(x8, v, x_mean, x_std)
    reg = np.full(x.shape[1], alpha)
    reg[-1] = 0.0
    return mean, basis, x_mean, x_std, np.linalg.solve(x.T @ x + np.diag(reg), x.T @ coef)


def predict(model: Ridge, x8: np.ndarray, v: np.ndarray) -> np.ndarray:
    mean, basis, x_mean, x_std, ridge = model
    return mean + _design(x8, v, x_mean, x_std) @ ridge @ basis


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, default=16, help="voice code size")
    ap.add_argument("--components", type=int, default=64, help="PCA face components")
    ap.add_argument("--voice-gain", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=REPO / "models")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    gender = genders()
    train = load_cache("train")
    print(f"{len(train)} train clips, {len({c['identity'] for c in train})} identities")

    # ---- speaker encoder ----
    seg, seg_id, seg_clip = [], [], []
    for ci, c in enumerate(train):
        if c["speech"] != "yes" or not len(c["audio"]):
            continue
        for st in segment_stats(c["audio"]):
            seg.append(st)
            seg_id.append(c["identity"])
            seg_clip.append(ci)
    s = np.array(seg)
    stat_mean, stat_std = s.mean(0), s.std(0) + 1e-6
    z = (s - stat_mean) / stat_std
    ids = np.array(seg_id)
    w_lda = lda(z, ids, args.dims, shrink=0.2)
    g = np.array([gender[i] for i in ids], np.float64)
    gender_w = logistic(z, g, l2=3.0)
    acc = np.mean(((np.hstack([z, np.ones((len(z), 1))]) @ gender_w) > 0) == g)
    print(f"speaker encoder: {len(z)} segments of {SEGMENT_S:.0f} s from "
          f"{len(set(seg_id))} identities; train gender accuracy {acc:.3f}")
    codes = z @ w_lda
    code_mean = codes.mean(0)
    p_male = 1 / (1 + np.exp(-np.clip(np.hstack([z, np.ones((len(z), 1))]) @ gender_w, -30, 30)))
    clip_segments: dict[int, list[int]] = {}
    for k, ci in enumerate(seg_clip):
        clip_segments.setdefault(ci, []).append(k)

    # ---- face prior: PCA of the train faces (and their mirror images) ----
    faces, lows, feats_v, ident_rows = [], [], [], []
    for ci, c in enumerate(train):
        f, lo = c["faces"], c["lowres"]
        f = np.concatenate([f, f[:, :, ::-1]])
        lo = np.concatenate([lo, lo[:, :, ::-1]])
        for _ in range(len(f)):
            ks = clip_segments.get(ci)
            if ks and rng.random() > 0.15:  # some speech frames see silence, as a call begins
                k = int(rng.choice(ks))
                feats_v.append(np.concatenate([codes[k], [p_male[k] - 0.5]]))
            else:
                feats_v.append(np.concatenate([code_mean, [0.0]]))
        faces.append(f.reshape(len(f), -1))
        ident_rows += [c["identity"]] * len(f)
        lows.append(lo.reshape(len(lo), -1))
    x8 = np.concatenate(lows)
    up = upsample_matrix(8, FACE_SIZE, "cubic", True)
    base = np.einsum("ai,nijc,bj->nabc", up, x8.reshape(-1, 8, 8, 3), up).reshape(len(x8), -1)
    y = np.concatenate(faces) - base
    v = np.array(feats_v) * args.voice_gain
    ident = np.array(ident_rows)
    dev_ids = sorted(set(ident))[3::8]  # held-out train identities (never val) pick the ridge
    dev = np.isin(ident, dev_ids)
    pca, gains = fit_pca(y[~dev], args.components), []
    for alpha in DEV_ALPHAS:
        model = fit_ridge(pca, y[~dev], x8[~dev], v[~dev], alpha)
        err = y[dev] - predict(model, x8[dev], v[dev])
        gains.append(10 * np.log10((y[dev] ** 2).mean() / (err**2).mean()))
        print(f"  dev (held-out train identities) PSNR gain over bicubic at 64 px, "
              f"ridge {alpha:g}: {gains[-1]:+.2f} dB")
    alpha = DEV_ALPHAS[int(np.argmax(gains))]
    pca = fit_pca(y, args.components)
    face_mean, basis, energy = pca
    model = fit_ridge(pca, y, x8, v, alpha)
    x_mean, x_std, ridge = model[2], model[3], model[4]
    print(f"face prior: {len(y)} faces at {FACE_SIZE} px, {args.components} components "
          f"({energy:.3f} of the energy); ridge {alpha:g}")

    arrays = {"stat_mean": stat_mean, "stat_std": stat_std, "lda": w_lda,
              "code_mean": code_mean, "gender_w": gender_w, "face_mean": face_mean,
              "face_basis": basis, "x_mean": x_mean, "x_std": x_std, "ridge": ridge}
    data = deterministic_npz({k: np.asarray(a, np.float32) for k, a in arrays.items()})
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("voice-*.npz"):
        old.unlink()
    dst = args.out / f"voice-{content_hash(data)}.npz"
    dst.write_bytes(data)
    print(f"-> {dst} ({len(data) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
