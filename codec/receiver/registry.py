"""Receivers by name: the baselines and, when its module and weights are there, ``neural``.

``RECEIVERS`` maps each name to ``"module:Class"``; classes are imported on first use, so
importing the registry loads no model and no ONNX Runtime. A new receiver registers by
adding its entry (or calling ``register_receiver``).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from codec.receiver.base import Receiver

RECEIVERS: dict[str, str] = {
    "identity": "codec.receiver.identity:IdentityReceiver",
    "bicubic": "codec.receiver.bicubic:BicubicReceiver",
    "backproject": "codec.receiver.backproject:BackprojectReceiver",
    "align": "codec.receiver.align:AlignReceiver",
    # The trained receiver: its module provides NeuralReceiver and weights_available().
    "neural": "codec.receiver.neural:NeuralReceiver",
    # No identity frame: the 8x8 stream and the speaker's voice (issue 14).
    "voice": "codec.receiver.voice:VoiceReceiver",
}

FALLBACK_RECEIVER = "align"
log = logging.getLogger(__name__)
_fallback_reported = False


def register_receiver(name: str, target: str) -> None:
    """Add (or replace) a receiver: ``target`` is ``"package.module:ClassName"``."""
    if ":" not in target:
        raise ValueError(f"receiver target must be 'module:Class', got {target!r}")
    RECEIVERS[name] = target


def receiver_class(name: str) -> type[Receiver]:
    if name not in RECEIVERS:
        raise ValueError(f"unknown receiver {name!r}; known: {', '.join(sorted(RECEIVERS))}")
    module_name, cls_name = RECEIVERS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, Receiver)):
        raise TypeError(f"{RECEIVERS[name]} is not a Receiver subclass")
    return cls


def get_receiver(name: str, **kw: Any) -> Receiver:
    """A new receiver by name; keyword arguments go to its constructor
    (``low_latency=True`` for every receiver, plus receiver-specific options)."""
    return receiver_class(name)(**kw)


def neural_problem() -> str | None:
    """Why the neural receiver cannot run here (None when its module imports and its
    weights are present)."""
    module_name = RECEIVERS.get("neural", "").split(":")[0]
    if not module_name:
        return "no 'neural' receiver is registered"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - a broken optional receiver must not break decoding
        return f"{module_name} does not import ({type(exc).__name__}: {exc})"
    problem = getattr(module, "weights_problem", None)
    check = getattr(module, "weights_available", None)
    try:
        if callable(problem):
            return problem()
        if callable(check):
            return None if check() else "its weights are missing"
    except Exception as exc:  # noqa: BLE001
        return f"its weights cannot be checked ({type(exc).__name__}: {exc})"
    return f"{module_name} has no weights_available()"


def neural_available() -> bool:
    """True when the neural receiver's module imports and says its weights are present."""
    return neural_problem() is None


def default_receiver_name() -> str:
    """``"neural"`` if it can run here, else ``"align"`` (cheap, no weights). The fallback
    is logged once per process as a warning, with the reason (the CLI and the receiver
    worker both show it)."""
    global _fallback_reported
    problem = neural_problem()
    if problem is None:
        return "neural"
    if not _fallback_reported:
        _fallback_reported = True
        log.warning("NEURAL RECEIVER UNAVAILABLE: %s. Falling back to the %r receiver, "
                    "which needs no weights but looks much worse.", problem, FALLBACK_RECEIVER)
    return FALLBACK_RECEIVER
