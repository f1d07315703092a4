"""Fit the MouthDriver (speech -> lip opening) on the cached train clips; report val.

    nice -n 5 .venv/bin/python -m training.train_mouth

Targets: ``codec.metrics.landmarks.mouth_opening`` of the cached dlib landmarks of every
canvas frame. Features: ``codec.receiver.neural.mouth.block_features`` of the clip's
log-mel (the receiver computes the same from the decoded Opus audio). Closed-form ridge
regression (deterministic); the ridge strength is chosen on a dev set of held-out *train*
identities (every 5th), never on val. Printed on val, per clip Pearson r of predicted vs
true opening (the benchmark's "mouth r" measure on the 8x8-free audio path alone), and the
same with the audio swapped with another val clip's and with silence: if the speech did not
matter, these would not drop.

``--probe-8x8`` fits nothing to ship: it compares the speech features, the 8x8 stream's
lower-face luma (the cache's exact box means) and both as ridge features of the opening.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from codec import FRAME_MS
from codec.audio.features import LOG_FLOOR, N_MELS
from codec.metrics.fidelity import luma
from codec.metrics.landmarks import motion_correlation, mouth_opening
from codec.receiver.neural.mouth import BLOCK_FRAMES, block_features, block_from_clip
from training.dataset import CachedClip, dev_split, load_clips, received_stream
from training.networks.mouth_driver import MouthDriver
from training.paths import cache_dir

GAIN_SHARE = 0.6
LAMBDAS = (10.0, 100.0, 1e3, 1e4, 1e5, 3e5, 1e6, 1e7)


def clip_arrays(clip: CachedClip, mel: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T, N_FEATURES) features and (T,) openings (NaN where no landmarks)."""
    mel = clip.mel if mel is None else mel
    t = clip.n_frames
    x = np.stack([block_features(block_from_clip(mel, i * FRAME_MS)) for i in range(t)])
    y = np.array([np.nan if np.isnan(p).any() else mouth_opening(p) for p in clip.landmarks[:t]])
    return x.astype(np.float64), y


def predicted_openings(clips: list[CachedClip], path: str | None = None) -> list[np.ndarray]:
    """Per clip, the shipped-to-be MouthDriver's opening at every frame (cache/mouth.pt)."""
    net = MouthDriver()
    net.load_state_dict(torch.load(path or cache_dir() / "mouth.pt"))
    out = []
    with torch.no_grad():
        for c in clips:
            x, _ = clip_arrays(c)
            out.append(net(torch.from_numpy(x).float())[:, 0].numpy())
    return out


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, ...]:
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    y0 = y.mean()
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y - y0))
    return mu, sd, w, y0


def predict(model: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
    mu, sd, w, y0 = model
    return np.clip(((x - mu) / sd) @ w + y0, 0.0, 0.6)


def mean_r(model: tuple[np.ndarray, ...], data: list[tuple[np.ndarray, np.ndarray]]) -> float:
    rs = []
    for x, y in data:
        ok = ~np.isnan(y)
        r = motion_correlation(predict(model, x[ok]), y[ok])
        if not np.isnan(r):
            rs.append(r)
    return float(np.mean(rs)) if rs else float("nan")


def lowres_features(clip: CachedClip) -> np.ndarray:
    """(T, 40) what the 8x8 stream shows of the lower face at every 25 fps frame: the luma
    of rows 3-7 of the linear 25 fps stream (``received_stream`` of the cache's exact box
    means), less each frame's mean (lighting)."""
    t = clip.n_frames
    y = luma(received_stream(clip.lowres[:t], None))
    y = y - y.mean((1, 2), keepdims=True)
    return y[:, 3:].reshape(t, -1)


def probe_lowres(fit_clips: list[CachedClip], dev_clips: list[CachedClip],
                 val: list[CachedClip]) -> None:
    """Does the 8x8 stream say how open the mouth is? Ridge fits, strength chosen on dev,
    of the opening from the speech features, from the 8x8 features, and from both."""
    groups = [[(*clip_arrays(c), lowres_features(c)) for c in cs]
              for cs in (fit_clips, dev_clips, val)]
    sets = {"speech": lambda a, v: a, "8x8": lambda a, v: v,
            "speech + 8x8": lambda a, v: np.concatenate([a, v], 1)}
    for name, pick in sets.items():
        tr, dev, va = ([(pick(a, v), y) for a, y, v in g] for g in groups)
        xt, yt = stack(tr)
        dev_r = {lam: mean_r(fit_ridge(xt, yt, lam), dev) for lam in LAMBDAS}
        lam = max(dev_r, key=dev_r.get)
        print(f"{name:>13}: dev r {dev_r[lam]:.3f} (lambda {lam:g}), "
              f"val r {mean_r(fit_ridge(*stack(tr + dev), lam), va):.3f}", flush=True)


def stack(data: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([d[0] for d in data])
    y = np.concatenate([d[1] for d in data])
    ok = ~np.isnan(y)
    return x[ok], y[ok]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(cache_dir() / "mouth.pt"))
    ap.add_argument("--probe-8x8", action="store_true",
                    help="only compare speech, 8x8 and both as the opening's features")
    args = ap.parse_args()
    t0 = time.time()
    train = [c for c in load_clips("train") if c.meta.get("has_audio", True)]
    val = [c for c in load_clips("val") if c.meta.get("has_audio", True)]
    fit_clips, dev_clips = dev_split(train, step=5)
    if args.probe_8x8:
        probe_lowres(fit_clips, dev_clips, val)
        return
    tr = [clip_arrays(c) for c in fit_clips]
    dev = [clip_arrays(c) for c in dev_clips]
    print(f"train clips {len(tr)}, dev clips {len(dev)} (held-out train identities), "
          f"val clips {len(val)}", flush=True)
    xt, yt = stack(tr)
    best = max(LAMBDAS, key=lambda lam: mean_r(fit_ridge(xt, yt, lam), dev))
    for lam in LAMBDAS:
        print(f"lambda {lam:g}: dev r {mean_r(fit_ridge(xt, yt, lam), dev):.3f}"
              f"{'  <- chosen' if lam == best else ''}", flush=True)
    model = fit_ridge(*stack(tr + dev), best)
    # Ridge at this strength shrinks the predictions towards the mean; the rendered mouth
    # must move visibly, so the deviations are scaled up to GAIN_SHARE of the true spread
    # (a gain does not change any correlation; it trades a little landmark error for it).
    xa, ya = stack(tr + dev)
    spread = float(np.std(predict(model, xa)))
    gain = GAIN_SHARE * float(np.std(ya)) / max(spread, 1e-6)
    model = (model[0], model[1], model[2] * gain, model[3])
    print(f"train opening std {np.std(ya):.3f}, ridge prediction std {spread:.3f}, gain {gain:.2f}",
          flush=True)

    vdata = [clip_arrays(c) for c in val]
    swapped = [clip_arrays(c, mel=val[(i + 1) % len(val)].mel) for i, c in enumerate(val)]
    silent_mel = np.full((BLOCK_FRAMES * 4, N_MELS), np.log(LOG_FLOOR), np.float32)
    silent = [clip_arrays(c, mel=silent_mel) for c in val]
    print(f"val mean per-clip r (predicted vs true lip opening): {mean_r(model, vdata):.3f}; "
          f"audio swapped with the next val clip's: {mean_r(model, swapped):.3f}; "
          f"silence: {mean_r(model, silent):.3f}", flush=True)
    for c, (x, y) in zip(val, vdata, strict=True):
        ok = ~np.isnan(y)
        print(f"  {c.meta['identity']:<24} r {motion_correlation(predict(model, x[ok]), y[ok]):6.3f}")

    mu, sd, w, y0 = model
    net = MouthDriver()
    with torch.no_grad():
        net.mu.copy_(torch.from_numpy(mu).float())
        net.sd.copy_(torch.from_numpy(sd).float())
        net.linear.weight.copy_(torch.from_numpy(w).float()[None])
        net.linear.bias.fill_(float(y0))
    torch.save(net.state_dict(), args.out)
    print(f"saved {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
