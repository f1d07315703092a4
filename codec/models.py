"""The shipped model files: where they live, how they are named and verified, how they run.

Every layer that loads a shipped file finds it here: the neural receiver's networks, the
sync expert (``codec.metrics.sync``), the motion basis. Files are
``<role>-<sha256[:12]>.<ext>``; a file whose content hash does not match its name is
refused with ``ModelIntegrityError``; nothing is ever downloaded.

``models_dir()``: ``TALKCODEC_MODELS`` when set; else the files an installed wheel carries
(``codec/_models/``, see setup.py), else ``models/`` at the repository root (source tree,
editable install). ``onnx_session`` is how every shipped network is run.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from codec.errors import ConfigError, TalkcodecError

PACKAGED_MODELS = Path(__file__).resolve().parent / "_models"
SOURCE_MODELS = Path(__file__).resolve().parents[1] / "models"
HASH_LEN = 12
_NAME = re.compile(r"^(?P<role>[a-z_]+)-(?P<hash>[0-9a-f]{12})\.onnx$")
MAX_MODEL_BYTES = 64 << 20
DEVICES = ("auto", "cpu", "cuda")


class ModelError(TalkcodecError):
    """A shipped network's weights are missing or unusable."""


class ModelIntegrityError(ModelError):
    """A weights file's content does not match the hash in its name."""


def models_dir() -> Path:
    env = os.environ.get("TALKCODEC_MODELS")
    if env:
        return Path(env)
    return PACKAGED_MODELS if PACKAGED_MODELS.is_dir() else SOURCE_MODELS


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_LEN]


def hashed_name(role: str, data: bytes) -> str:
    return f"{role}-{content_hash(data)}.onnx"


def find_model(role: str, directory: Path | None = None) -> Path:
    """The one weights file of ``role`` in the models directory."""
    d = directory or models_dir()
    found = sorted(p for p in d.glob(f"{role}-*.onnx")
                   if (m := _NAME.match(p.name)) and m["role"] == role)
    if not found:
        raise ModelError(f"no {role} weights in {d}")
    if len(found) > 1:
        raise ModelError(f"several {role} weights in {d}: {[p.name for p in found]}")
    return found[0]


def load_verified(path: Path) -> bytes:
    """The file's bytes, after checking them against the hash in its name."""
    m = _NAME.match(path.name)
    if m is None:
        raise ModelError(f"{path.name} is not named <role>-<sha256[:12]>.onnx")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise ModelError(f"{path.name} is larger than {MAX_MODEL_BYTES} bytes")
    data = path.read_bytes()
    if content_hash(data) != m["hash"]:
        raise ModelIntegrityError(f"{path.name}: content hash {content_hash(data)} does not "
                                  f"match its name (tampered or corrupt file)")
    return data


def onnx_session(data: bytes, threads: int = 1, device: str = "auto") -> Any:
    """An ONNX Runtime session for verified model bytes. ``auto`` takes the CUDA provider
    when the installed ONNX Runtime has one (onnxruntime-gpu), ``cpu`` never does, ``cuda``
    insists on it (``ConfigError`` when it cannot be had)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ConfigError(f"device (TALKCODEC_DEVICE) must be one of {DEVICES}, got {device!r}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Spinning pool threads fight OpenCV's and the other receivers' threads for the cores:
    # at 2 threads on the 2-core box the receiver ran at 64 fps spinning, 238 fps not.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ConfigError("device 'cuda' asked for, but this ONNX Runtime has no CUDA "
                          f"provider (it has {available}); install onnxruntime-gpu")
    wanted = ("CPUExecutionProvider",) if device == "cpu" else (
        "CUDAExecutionProvider", "CPUExecutionProvider")
    sess = ort.InferenceSession(data, sess_options=opts,
                                providers=[p for p in wanted if p in available])
    if device == "cuda" and "CUDAExecutionProvider" not in sess.get_providers():
        raise ConfigError("device 'cuda' asked for, but ONNX Runtime's CUDA provider did not "
                          "load (CUDA 13 / cuDNN 9 libraries missing?)")
    return sess
