"""Export the trained networks to models/<role>-<sha256[:12]>.onnx and check ORT agrees.

    .venv/bin/python -m training.export_onnx [--only ROLE]

Reads cache/interpolator.pt, cache/receiver.pt and cache/mouth.pt; replaces older files of
the same roles.
``--only ROLE`` exports just that network (e.g. a retrained interpolator) and leaves the
other roles' files untouched.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from codec.receiver.neural.contract import (
    ANIMATOR,
    IDENTITY_ENCODER,
    LOG_MEL,
    NETWORKS,
    PIXELS,
    Tensor,
)
from codec.receiver.neural.weights import ROLES, hashed_name, models_dir
from training.networks.interpolator import Interpolator
from training.networks.mouth_driver import MouthDriver
from training.networks.network import ReceiverNet
from training.paths import cache_dir

OPSET = 17


def _example(t: Tensor, g: torch.Generator) -> torch.Tensor:
    if t.kind == PIXELS:
        return torch.rand(*t.shape, generator=g) * 255
    if t.kind == LOG_MEL:
        return torch.randn(*t.shape, generator=g) * 4 - 6
    return torch.randn(*t.shape, generator=g)


def example_inputs(role: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of the role's contract (``codec.receiver.neural.contract``), by name."""
    g = torch.Generator().manual_seed(seed)
    if role == ANIMATOR.role:  # the draws of an identity frame first, as the seeds had them
        _example(IDENTITY_ENCODER.inputs[0], g)
    return {t.name: _example(t, g) for t in NETWORKS[role].inputs}


class _AnimatorByName(nn.Module):
    """The Animator's network part with named inputs in a fixed order, for export (the
    warp/blend/back-projection runs in numpy at run time: compose.py)."""

    def __init__(self, net: ReceiverNet) -> None:
        super().__init__()
        self.animator = net.animator

    def forward(self, window: torch.Tensor, mel: torch.Tensor, id_lr: torch.Tensor,
                f32: torch.Tensor, f16: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.animator.heads(window, id_lr, f32, f16, mel)


def trained_modules(roles: tuple[str, ...] = ROLES,
                    receiver_ckpt: Path | None = None) -> dict[str, nn.Module]:
    out: dict[str, nn.Module] = {}
    if "interpolator" in roles:
        interp = Interpolator()
        interp.load_state_dict(torch.load(cache_dir() / "interpolator.pt", map_location="cpu"))
        out["interpolator"] = interp.eval()
    if {"identity_encoder", "animator"} & set(roles):
        net = ReceiverNet()
        net.load_state_dict(torch.load(receiver_ckpt or cache_dir() / "receiver.pt",
                                       weights_only=False, map_location="cpu")["net"])
        out["identity_encoder"] = net.identity_encoder.eval()
        out["animator"] = _AnimatorByName(net).eval()
    if "mouth" in roles:
        mouth = MouthDriver()
        mouth.load_state_dict(torch.load(cache_dir() / "mouth.pt", map_location="cpu"))
        out["mouth"] = mouth.eval()
    return {r: m for r, m in out.items() if r in roles}


def output_names(role: str) -> list[str]:
    return NETWORKS[role].output_names


def to_onnx(module: nn.Module, role: str) -> bytes:
    inputs = example_inputs(role)
    buf = io.BytesIO()
    torch.onnx.export(module, tuple(inputs.values()), buf, input_names=list(inputs),
                      output_names=output_names(role), opset_version=OPSET, dynamo=False)
    return buf.getvalue()


def max_abs_diff(module: nn.Module, data: bytes, role: str, seed: int = 1) -> float:
    inputs = example_inputs(role, seed)
    with torch.no_grad():
        ref = module(*inputs.values())
    ref = ref if isinstance(ref, tuple) else (ref,)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in inputs.items()})
    return max(float(np.abs(r.numpy() - o).max()) for r, o in zip(ref, got, strict=True))


def export_all(out_dir: Path, roles: tuple[str, ...] = ROLES,
               receiver_ckpt: Path | None = None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for role, module in trained_modules(roles, receiver_ckpt).items():
        data = to_onnx(module, role)
        print(f"{role}: max |torch - ort| = {max_abs_diff(module, data, role):.4f} "
              f"({len(data) / 1024:.0f} KiB)")
        for old in out_dir.glob(f"{role}-*.onnx"):
            old.unlink()
        path = out_dir / hashed_name(role, data)
        path.write_bytes(data)
        written[role] = path
    assert set(written) == set(roles)
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=ROLES, action="append",
                    help="export just this role (repeatable)")
    ap.add_argument("--receiver-ckpt", type=Path, default=None,
                    help="identity encoder + animator checkpoint (default cache/receiver.pt)")
    args = ap.parse_args()
    roles = tuple(args.only) if args.only else ROLES
    for p in export_all(models_dir(), roles, args.receiver_ckpt).values():
        print(p)
