"""Fit the motion code's basis (``codec/bitstream/motion_basis.py``) on the train split.

Input: the sender's landmarks on every clip (``training/measure_landmarks.py``, cached in
cache/motion/). Steps:

1. the template: the mean face in a frame where the eye corners and nose are aligned
   (generalised Procrustes on those rigid points, 4 rounds), scaled so the outer eye
   corners are 1 apart, eyes level, centred;
   (the priors of the code's background values come out "almost always zero": the cached
   measurements hold the landmarks only, and a desk's background holds still);
2. the displacements: for each train clip and a few anchor frames in it (the first
   confident frame, then one every 2 s), every confident frame's normalised landmarks
   minus the anchor's, i.e. exactly what the code describes: how a face moves away from
   its identity frame;
3. PCA without centring (a displacement of zero means "as in the identity frame"); the
   first ``--keep`` components are kept.

It prints how much of the displacement each K explains and the landmark error left, in
canvas pixels, on the train and val clips (val is reported, never used to fit), and
writes ``models/motion_basis-<hash>.npz`` (``--out`` to write elsewhere).

    .venv/bin/python -m training.fit_motion_basis
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from codec.bitstream.entropy import BitModel
from codec.bitstream.motion_basis import (
    RIGID,
    MotionBasis,
    fit_similarity,
    invert,
    load_basis_file,
    save_basis,
)
from codec.bitstream.motion_codec import _N_POSE as N_RIGID
from codec.bitstream.motion_codec import N_PREFIX, MotionEncoder, MotionParams, _Models
from training.paths import REPO, cache_dir

ANCHOR_EVERY = 50  # frames (2 s)


def load_measurements(split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for f in sorted((cache_dir() / "motion").glob("*.npz")):
        z = np.load(f)
        if str(z["split"]) == split:
            out.append((f.stem, z["points"].astype(np.float64), z["confident"]))
    return out


def _canonical(shape: np.ndarray) -> np.ndarray:
    """Centre on the rigid points, eye corners 1 apart and level."""
    s = shape - shape[RIGID].mean(0)
    eye = s[45] - s[36]
    scale, ang = np.linalg.norm(eye), np.arctan2(eye[1], eye[0])
    c, sn = np.cos(-ang) / scale, np.sin(-ang) / scale
    return s @ np.array([[c, sn], [-sn, c]])


def fit_template(shapes: np.ndarray, rounds: int = 4) -> np.ndarray:
    template = _canonical(shapes[0])
    for _ in range(rounds):
        aligned = [invert(fit_similarity(template[RIGID], s[RIGID])).apply(s) for s in shapes]
        template = _canonical(np.mean(aligned, 0))
    return template


def displacements(clips: list, template: np.ndarray) -> np.ndarray:
    basis = MotionBasis(template, np.zeros((136, 0)), np.zeros(0), "0" * 64)
    rows = []
    for _, pts, conf in clips:
        idx = np.flatnonzero(conf)
        if len(idx) < 2:
            continue
        norm = {int(k): basis.normalise(pts[k]) for k in idx}
        anchors = [int(idx[0])] + [int(k) for k in idx if k % ANCHOR_EVERY == 0 and k != idx[0]]
        for a in anchors:
            for k in idx:
                rows.append((norm[int(k)] - norm[a]).reshape(-1))
    return np.array(rows)


def reconstruction_error(clips: list, basis: MotionBasis, k: int) -> float:
    """Mean landmark error in canvas pixels of analyse -> synthesise with k coefficients,
    the anchor being each clip's first confident frame (as in the codec)."""
    errs = []
    for _, pts, conf in clips:
        idx = np.flatnonzero(conf)
        if len(idx) < 2:
            continue
        anchor_norm = basis.normalise(pts[idx[0]])
        for t in idx[1::2]:
            pose, c = basis.analyse(pts[t], anchor_norm, k)
            rec = basis.synthesise(pose, c, anchor_norm)
            errs.append(np.linalg.norm(rec - pts[t], axis=1).mean())
    return float(np.mean(errs))


class _Counting(BitModel):
    """A bit model that also counts the bits it codes (for the priors)."""

    def __init__(self, counts: np.ndarray) -> None:
        super().__init__(0.5, 5)
        self.counts = counts

    def update(self, bit: int) -> None:
        self.counts[bit] += 1
        super().update(bit)


def fit_priors(clips: list, basis: MotionBasis, params: MotionParams) -> dict[str, np.ndarray]:
    """Starting probabilities of the code's bit models: how often each codes a 0 when
    the train clips are encoded with ``params`` (add-one smoothed)."""
    n_values = N_RIGID + basis.n_coeffs
    counts = {
        "zero0": np.zeros((n_values, 2)), "zero1": np.zeros((n_values, 2)),
        "mag0": np.zeros((n_values * N_PREFIX, 2)), "mag1": np.zeros((n_values * N_PREFIX, 2)),
        "empty": np.zeros((2, 2)), "conf": np.zeros((1, 2)),
        "count": np.zeros((N_PREFIX, 2)), "offset": np.zeros((N_PREFIX, 2)),
    }

    class Recorder(MotionEncoder):
        def new_models(self) -> _Models:
            m = _Models(len(self.steps))
            nv = len(self.steps)
            for k in (0, 1):
                m.zero[k] = [_Counting(counts[f"zero{k}"][i]) for i in range(nv)]
                m.mag[k] = [[_Counting(counts[f"mag{k}"][i * N_PREFIX + j])
                             for j in range(N_PREFIX)] for i in range(nv)]
            m.empty = [_Counting(counts["empty"][k]) for k in (0, 1)]
            m.conf = _Counting(counts["conf"][0])
            m.count = [_Counting(counts["count"][j]) for j in range(N_PREFIX)]
            m.offset = [_Counting(counts["offset"][j]) for j in range(N_PREFIX)]
            return m

    for _, pts, conf in clips:
        idx = np.flatnonzero(conf)
        if len(idx) < 2:
            continue
        enc = Recorder(params, basis)
        enc.set_anchor(pts[idx[0]])
        encode_measured(enc, pts, conf)
    return {k: np.clip((c[:, 0] + 1) / (c.sum(1) + 2), 0.02, 0.98) for k, c in counts.items()}


def encode_measured(enc: MotionEncoder, pts: np.ndarray, conf: np.ndarray,
                    lowres_every: int = 5) -> list[bytes]:
    """Encode a clip's measured landmarks as the sender does (a group per 8x8 frame)."""
    step = enc.params.period_ms // 40
    groups, pending = [], []
    for k in range(len(pts)):
        if k % step == 0:
            pending.append((k * 40, pts[k] if conf[k] else None))
        if k % lowres_every == 0:
            groups.append(enc.encode_group(k * 40, pending, seq=len(groups)))
            pending = []
    return groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", type=int, default=32, help="components kept in the file")
    ap.add_argument("--out", type=Path, default=REPO / "models", help="folder for the file")
    args = ap.parse_args()
    train, val = load_measurements("train"), load_measurements("val")
    print(f"train: {len(train)} clips, val: {len(val)} clips")
    shapes = np.concatenate([p[c][::10] for _, p, c in train])
    template = fit_template(shapes)
    d = displacements(train, template)
    print(f"{len(d)} displacement samples from train")
    _, sv, vt = np.linalg.svd(d, full_matrices=False)
    comps = vt[: args.keep].T
    energy = np.cumsum(sv**2) / np.sum(sv**2)
    scales = (d @ comps).std(0)
    for old in args.out.glob("motion_basis-*.npz"):
        old.unlink()
    plain = MotionBasis(template, comps, scales, "0" * 64)
    defaults = MotionParams(basis_id=0)
    priors = fit_priors(train, plain, defaults)
    path = save_basis(args.out, template, comps, scales, priors)
    basis = load_basis_file(path)
    print(" K  energy  train px  val px")
    for k in (4, 8, 12, 16, 20, 24, 32):
        if k > args.keep:
            break
        print(f"{k:2d}  {energy[k - 1]:.4f}  {reconstruction_error(train[::3], basis, k):7.3f}"
              f"  {reconstruction_error(val, basis, k):6.3f}")
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


if __name__ == "__main__":
    main()
