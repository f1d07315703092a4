"""Train the 5 -> 25 fps Interpolator on the cached 8x8 frames; report val PSNR vs linear.

    nice -n 5 .venv/bin/python -m training.train_interpolator

Inputs are the decoded (quantised) key frames k-2..k+1, targets the exact box means of the
4 frames between k and k+1. A few train identities (``dev_split``) are held out as a dev
set (all 5 key phases of each dev clip): the checkpoint with the best dev PSNR is kept, and
val is only scored at the end, on that checkpoint, next to linear interpolation and a
Catmull-Rom spline. Loss: MSE (PSNR is what is judged). Fixed seeds and one torch thread:
the run is deterministic on the same cache. Augmentation, drawn once with a fixed seed:
all 5 key phases of each clip, mirroring, time reversal and a per-channel gain /
brightness jitter, each applied to the exact frames before the low-res codec, so the keys
carry the codec's real error.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from training.dataset import (
    KEY_EVERY,
    dev_split,
    key_context,
    load_clips,
    transmitted,
)
from training.device import cpu_state, resolve
from training.networks.interpolator import Interpolator
from training.paths import cache_dir

MOUTH_ROWS = slice(4, 7)  # 8x8 rows 4-6 = y 128..224 px of the canvas (the mouth's rows)


def make_pairs(lowres_list: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs: decoded (quantised) key frames; targets: exact in-between box means."""
    xs, ys = [], []
    for lr in lowres_list:
        sent = transmitted(lr)
        n_keys = (len(lr) - 1) // KEY_EVERY + 1
        for k in range(n_keys - 1):
            xs.append(key_context(sent, k))
            ys.append(lr[k * KEY_EVERY + 1 : k * KEY_EVERY + KEY_EVERY])
    x = torch.from_numpy(np.stack(xs)).permute(0, 4, 1, 2, 3).float()
    y = torch.from_numpy(np.stack(ys)).permute(0, 4, 1, 2, 3).float()
    return x, y


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of the pooled squared error (all pairs, frames, pixels, channels)."""
    mse = torch.mean((a.clamp(0, 255) - b) ** 2).item()
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def linear(x: torch.Tensor) -> torch.Tensor:
    a, b = x[:, :, 2:3], x[:, :, 3:4]
    frac = torch.arange(1, KEY_EVERY, dtype=torch.float32).view(1, 1, -1, 1, 1) / KEY_EVERY
    return a + (b - a) * frac


def catmull_rom(x: torch.Tensor) -> torch.Tensor:
    """Cubic Hermite between k and k+1: tangent (k+1 - k-1)/2 at k, one-sided k+1 - k at
    k+1 (k+2 is not at the receiver yet)."""
    km1, p0, p1 = x[:, :, 1:2], x[:, :, 2:3], x[:, :, 3:4]
    t = torch.arange(1, KEY_EVERY, dtype=torch.float32).view(1, 1, -1, 1, 1) / KEY_EVERY
    m0, m1 = (p1 - km1) / 2, p1 - p0
    return ((2 * t**3 - 3 * t**2 + 1) * p0 + (t**3 - 2 * t**2 + t) * m0
            + (-2 * t**3 + 3 * t**2) * p1 + (t**3 - t**2) * m1)


def augment(lowres: np.ndarray, rng: np.random.Generator, jitter: float) -> list[np.ndarray]:
    """Every key phase x mirrored or not x time-reversed or not; each copy gets, with
    probability 1/2, a per-channel gain (1 +- jitter) and a brightness shift (+- 100 jitter
    grey levels) before the low-res codec sees it."""
    out = []
    for off in range(KEY_EVERY):
        for mirror in (False, True):
            for reverse in (False, True):
                lr = lowres[::-1] if reverse else lowres
                lr = lr[off:, :, ::-1] if mirror else lr[off:]
                lr = np.ascontiguousarray(lr, dtype=np.float32)
                if jitter > 0 and rng.random() < 0.5:
                    gain = rng.uniform(1 - jitter, 1 + jitter, 3).astype(np.float32)
                    shift = np.float32(rng.uniform(-100 * jitter, 100 * jitter))
                    lr = np.clip((lr - 128) * gain + 128 + shift, 0, 255)
                out.append(lr)
    return out


def scores(pred: torch.Tensor, y: torch.Tensor) -> str:
    mouth = psnr(pred[..., MOUTH_ROWS, :], y[..., MOUTH_ROWS, :])
    return f"{psnr(pred, y):.3f} dB (mouth rows {mouth:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--jitter", type=float, default=0.3)
    ap.add_argument("--loss", choices=("mse", "charbonnier"), default="mse")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is much faster than 2 on a loaded 2-core box")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default, reproducible), cuda[:N] or auto; see training/device.py")
    ap.add_argument("--out", default=str(cache_dir() / "interpolator.pt"))
    args = ap.parse_args()
    device = resolve(args.device)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    fit, dev = dev_split(load_clips("train"), step=8, start=3)
    xt, yt = make_pairs([a for c in fit for a in augment(c.lowres, rng, args.jitter)])
    xd, yd = make_pairs([c.lowres[off:] for c in dev for off in range(KEY_EVERY)])
    print(f"fit clips {len(fit)} ({len(xt)} augmented pairs), dev clips {len(dev)} "
          f"({len(xd)} pairs: {sorted(c.meta['identity'] for c in dev)})", flush=True)
    print(f"dev linear {scores(linear(xd), yd)}, catmull-rom {scores(catmull_rom(xd), yd)}",
          flush=True)
    model = Interpolator(args.width, args.depth).to(device)
    xt, yt, xd, yd = xt.to(device), yt.to(device), xd.to(device), yd.to(device)
    print(f"params {sum(p.numel() for p in model.parameters())}", flush=True)
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    gen = torch.Generator().manual_seed(args.seed)
    best, best_state, best_step = -1.0, cpu_state(model), 0
    t0 = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(xt), (args.batch,), generator=gen).to(device)
        err = (model(xt[idx]) - yt[idx]) / 255.0
        loss = (err**2).mean() if args.loss == "mse" else torch.sqrt(err**2 + 1e-6).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.eval_every == 0 or step == args.steps:
            with torch.no_grad():
                pd = psnr(model(xd), yd)
            if pd > best:
                best, best_state, best_step = pd, cpu_state(model), step
            print(f"step {step} loss {loss.item():.3g} dev psnr {pd:.3f} (best {best:.3f} "
                  f"@ {best_step}) {time.time() - t0:.0f}s", flush=True)
    model = model.cpu()
    model.load_state_dict(best_state)
    torch.save(best_state, args.out)
    xd, yd = xd.cpu(), yd.cpu()
    xv, yv = make_pairs([c.lowres for c in load_clips("val")])
    with torch.no_grad():
        pv, pd = model(xv), model(xd)
    print(f"kept step {best_step} -> {args.out}; {time.time() - t0:.0f}s of training")
    print(f"dev ({len(xd)} pairs): linear {scores(linear(xd), yd)}, catmull-rom "
          f"{scores(catmull_rom(xd), yd)}, net {scores(pd, yd)}")
    print(f"val ({len(xv)} pairs): linear {scores(linear(xv), yv)}, catmull-rom "
          f"{scores(catmull_rom(xv), yv)}, net {scores(pv, yv)}")


if __name__ == "__main__":
    main()
