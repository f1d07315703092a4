"""The neural receiver's shipped ONNX weights: one file ``models/<role>-<sha256[:12]>.onnx``
for each role of ``contract.ROLES`` (``interpolator``, ``identity_encoder``, ``animator``,
``mouth``).

Finding, verifying and running a file is ``codec.models``' (below the receiver and the
metrics, which both load shipped networks); its names are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from codec.models import (
    DEVICES,
    HASH_LEN,
    MAX_MODEL_BYTES,
    PACKAGED_MODELS,
    SOURCE_MODELS,
    ModelError,
    ModelIntegrityError,
    content_hash,
    find_model,
    hashed_name,
    load_verified,
    models_dir,
    onnx_session,
)
from codec.receiver.neural.contract import ROLES

__all__ = ["DEVICES", "HASH_LEN", "MAX_MODEL_BYTES", "PACKAGED_MODELS", "ROLES", "SOURCE_MODELS",
           "ModelError", "ModelIntegrityError", "content_hash", "find_model", "hashed_name",
           "load_verified", "models_dir", "onnx_session", "weights_available",
           "weights_problem"]


def weights_problem(directory: Path | None = None) -> str | None:
    """Why the neural receiver's weights cannot be found (None when they all are)."""
    try:
        for role in ROLES:
            find_model(role, directory)
    except ModelError as exc:
        return f"{exc} (set TALKCODEC_MODELS to the folder that holds them)"
    return None


def weights_available(directory: Path | None = None) -> bool:
    return weights_problem(directory) is None
