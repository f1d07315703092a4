"""Where a training script runs: ``--device cpu`` (the default: the documented,
bit-reproducible run), ``cuda`` (a lent GPU) or ``auto`` (CUDA when torch sees one).

On CUDA the same steps run with the same seeds, but GPU kernels are not bit-reproducible
and their float results differ from the CPU's, so weights trained there are not the
shipped files; checkpoints are always written with CPU tensors, so they load anywhere."""

from __future__ import annotations

import torch


def resolve(name: str) -> torch.device:
    """'cpu' | 'cuda' | 'cuda:N' | 'auto' -> a usable torch.device, or a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise SystemExit(f"--device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: this torch build sees no CUDA device "
                         f"(torch {torch.__version__}); use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name}: only cpu, cuda[:N] and auto are supported")
    return dev


def cpu_state(module_or_state: torch.nn.Module | dict) -> dict:
    """A snapshot of a state dict with every tensor copied to the CPU (recursively, for
    optimiser states too)."""
    state = (module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module)
             else module_or_state)

    def move(x: object) -> object:
        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu", copy=True)  # a copy: never the live tensor
        if isinstance(x, dict):
            return {k: move(v) for k, v in x.items()}
        if isinstance(x, list):
            return [move(v) for v in x]
        return x

    return move(state)
