"""Train the neural receiver (IdentityEncoder + Animator) on cached train clips.

    nice -n 5 .venv/bin/python -m training.train_receiver --steps 3000 [--resume]

A phase is a number of steps with its own cosine learning-rate schedule; ``--resume``
continues from cache/receiver.pt. Single torch thread, fixed seeds and a step count (not a
time budget), so a rerun on the same cache gives the same weights. The 8x8 windows are
linearly interpolated by default (``--interp trained`` uses cache/interpolator.pt), so the
receiver does not depend on the interpolator run; with cache/mouth.pt present the identity
frames get the mouth stage's warp (see ``samples.SampleSource``). Checkpoints to
cache/receiver.pt every 300 steps; logs val PSNR at 256x256 on fixed val samples.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.dataset import load_clips
from training.device import cpu_state, resolve
from training.losses import (
    affine_equivariance,
    frequency_l1,
    gradient_l1,
    landmark_motion,
    random_affines,
    warp_lowres,
    weighted_l1,
)
from training.networks.interpolator import Interpolator
from training.networks.network import ReceiverNet
from training.paths import cache_dir
from training.samples import Batch, SampleSource
from training.train_mouth import predicted_openings


def load_interpolator() -> Interpolator | None:
    p = cache_dir() / "interpolator.pt"
    if not p.exists():
        return None
    m = Interpolator()
    m.load_state_dict(torch.load(p, map_location="cpu"))
    return m.eval()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.round() - b) ** 2).item()
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms added to the region-weighted L1 (0: the term is not computed)."""

    freq: float = 0.05
    grad: float = 0.0
    landmark_motion: float = 0.0
    equivariance: float = 0.0


def step_loss(net: ReceiverNet, b: Batch, w: LossWeights, eq_gen: torch.Generator
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The training objective of one batch, on the batch's device: (loss, (L1, frequency
    L1, landmark motion, equivariance)) with the terms that are off as zeros."""
    id_lr, f32, f16 = net.identity_encoder(b.identity)
    theta, flow, mask, colour = net.animator.heads(b.window, id_lr, f32, f16, b.mel)
    out = net.animator.compose(b.identity, theta, flow, mask, colour, b.window[:, 2])
    l1 = weighted_l1(out, b.target, b.weight)
    fr = frequency_l1(out, b.target)
    loss = l1 + w.freq * fr
    if w.grad > 0:
        loss = loss + w.grad * gradient_l1(out, b.target, b.weight)
    lm = torch.zeros(())
    if w.landmark_motion > 0:
        lm = landmark_motion(theta, flow, b.points_target, b.points_identity, b.points_valid)
        loss = loss + w.landmark_motion * lm
    eq = torch.zeros(())
    if w.equivariance > 0:
        # Drawn on the CPU generator, so phases without the loss draw what they drew before.
        t = random_affines(b.window.shape[0], eq_gen).to(b.window.device)
        theta_t = net.animator.heads(warp_lowres(b.window, t), id_lr, f32, f16, b.mel)[0]
        eq = affine_equivariance(theta, theta_t, t)
        loss = loss + w.equivariance * eq
    return loss, (l1, fr, lm, eq)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, required=True, help="steps in this phase")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--size", type=int, default=128, help="training output resolution")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--freq-weight", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is much faster than 2 on a loaded 2-core box")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--interp", choices=("linear", "trained"), default="linear")
    ap.add_argument("--no-mouth", action="store_true", help="identity frames unwarped")
    ap.add_argument("--grad-weight", type=float, default=0.0,
                    help="weight of the region-weighted image-gradient L1 (0: off)")
    ap.add_argument("--landmark-motion", type=float, default=0.0,
                    help="weight of the landmark supervision of the motion (0: off)")
    ap.add_argument("--equivariance", type=float, default=0.0,
                    help="weight of the affine-motion equivariance loss (0: off)")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default, reproducible), cuda[:N] or auto; see training/device.py")
    ap.add_argument("--ckpt", type=Path, default=None,
                    help="checkpoint to resume from and write (default cache/receiver.pt)")
    args = ap.parse_args()
    device = resolve(args.device)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    interp = load_interpolator() if args.interp == "trained" else None
    clips = load_clips("train")
    use_mouth = not args.no_mouth and (cache_dir() / "mouth.pt").exists()
    openings = predicted_openings(clips) if use_mouth else None
    vclips = load_clips("val")
    val = SampleSource(vclips, interp, 1234,
                       openings=predicted_openings(vclips) if use_mouth else None
                       ).sample(32, 256).to(device)
    print(f"train clips {len(clips)}, interpolator {'yes' if interp else 'linear'}, "
          f"mouth warp {'yes' if use_mouth else 'no'}, device {device}", flush=True)
    net = ReceiverNet().to(device)
    ckpt = args.ckpt or cache_dir() / "receiver.pt"
    # Its own generator, so phases without the loss draw exactly what they drew before.
    eq_gen = torch.Generator().manual_seed(args.seed + 7919)
    weights = LossWeights(args.freq_weight, args.grad_weight, args.landmark_motion,
                          args.equivariance)
    step = 0
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    if args.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=device)  # our own
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    train = SampleSource(clips, interp, args.seed + step, openings=openings)  # fresh draws per phase
    t0 = time.time()
    first, last = step, step + args.steps
    while step < last:
        step += 1
        frac = (step - first - 1) / args.steps
        for g in opt.param_groups:
            g["lr"] = float(args.lr * 0.5 * (1 + np.cos(np.pi * frac)))
        b = train.sample(args.batch, args.size).to(device)
        loss, (l1, fr, lm, eq) = step_loss(net, b, weights, eq_gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"step {step} l1 {l1.item():.4f} freq {fr.item():.4f} eq {eq.item():.4f} "
                  f"lm {lm.item():.4f} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if step % 300 == 0 or step == last:
            with torch.no_grad():
                v = torch.cat([net(val.window[i : i + 8], val.mel[i : i + 8],
                                   val.identity[i : i + 8]) for i in range(0, 32, 8)])
            print(f"step {step} val psnr@256 {psnr(v, val.target):.2f}", flush=True)
            torch.save({"net": cpu_state(net), "opt": cpu_state(opt.state_dict()),
                        "step": step}, ckpt)


if __name__ == "__main__":
    main()
