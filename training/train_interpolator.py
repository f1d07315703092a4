"""Train the 5 -> 25 fps Interpolator on the cached 8x8 frames; report val PSNR vs linear.

    nice -n 5 .venv/bin/python -m training.train_interpolator --steps 400 --batch 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from codec.receiver.neural.interpolator import Interpolator
from training.dataset import KEY_EVERY, key_context, load_clips, transmitted
from training.paths import cache_dir


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
    mse = torch.mean((a.clamp(0, 255) - b) ** 2).item()
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def linear(x: torch.Tensor) -> torch.Tensor:
    a, b = x[:, :, 2:3], x[:, :, 3:4]
    frac = torch.arange(1, KEY_EVERY, dtype=torch.float32).view(1, 1, -1, 1, 1) / KEY_EVERY
    return a + (b - a) * frac


def augment(lowres: np.ndarray) -> list[np.ndarray]:
    """Time offsets (other key phases) and mirroring: more training pairs per clip."""
    out = []
    for off in range(KEY_EVERY):
        lr = lowres[off:]
        out.append(lr)
        out.append(lr[:, :, ::-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is much faster than 2 on a loaded 2-core box")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train = [a for c in load_clips("train") for a in augment(c.lowres)]
    val = [c.lowres for c in load_clips("val")]
    xt, yt = make_pairs(train)
    xv, yv = make_pairs(val)
    print(f"train pairs {len(xt)}, val pairs {len(xv)}", flush=True)
    model = Interpolator()
    print(f"params {sum(p.numel() for p in model.parameters())}", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(xt), (args.batch,))
        loss = torch.nn.functional.l1_loss(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps:
            with torch.no_grad():
                pv = psnr(model(xv), yv)
            print(f"step {step} loss {loss.item():.3f} val psnr {pv:.2f} "
                  f"(linear {psnr(linear(xv), yv):.2f}) {time.time() - t0:.0f}s", flush=True)
    torch.save(model.state_dict(), cache_dir() / "interpolator.pt")


if __name__ == "__main__":
    main()
