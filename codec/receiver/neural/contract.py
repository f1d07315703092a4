"""The neural receiver's networks as ONNX Runtime sees them: the one home of their contract.

Each shipped network (``models/<role>-<sha256[:12]>.onnx``) has a role, named inputs and
named outputs of fixed shapes (batch 1), and the constants those shapes come from. Training
(``training/``), the export (``training/export_onnx.py``), the receiver (``receiver.py``) and
the benchmarks import them from here, so a network and its caller cannot drift apart.

- ``interpolator``: the key frames k-2..k+1 of the 8x8 stream (``N_CONTEXT``) -> the
  ``N_BETWEEN`` frames between k and k+1 (5 -> 25 fps);
- ``identity_encoder``: the 256x256 identity frame -> its 8x8 box means and feature maps at
  32 and 16 px, run once per identity frame;
- ``animator``: the ``WINDOW`` frames of the 25 fps 8x8 stream around t (``FRAME_MS``
  apart), the ``MEL_FRAMES`` log-mel frames of speech around t and the identity encoding ->
  affine motion, dense flow, occlusion mask and colour at ``HEAD_SIZE`` px (the warp, blend
  and back-projection run in numpy: ``compose.py``);
- ``mouth``: the ``N_FEATURES`` speech band means of ``mouth.block_features`` -> the lip
  opening (inner-lip gap / mouth width) in [0, ``MAX_OPENING``].

Pixel values are in [0, 255] throughout; images are (B, 3, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec import CANVAS_SIZE, FRAME_MS
from codec.audio.features import N_MELS, WINDOW_FRAMES
from codec.receiver.neural.mouth import MAX_OPENING, N_FEATURES

NET_LOWRES = 8  # the networks see 8x8 frames (a finer stream is box-averaged down to 8x8)
CANVAS = CANVAS_SIZE  # the identity frame in, the frame out: 256x256
WINDOW = 5  # animator: 25 fps stream frames around t (t-80, -40, 0, +40, +80 ms)
N_CONTEXT = 4  # interpolator: key frames in (k-2, k-1, k, k+1)
N_BETWEEN = 4  # interpolator: frames out between k and k+1 (5 -> 25 fps)
MEL_FRAMES = WINDOW_FRAMES  # animator: 200 ms of 10 ms log-mel frames
ID_FEATURES = ((24, 32), (48, 16))  # identity encoder: (channels, size) of f32 and f16
HEAD_SIZE = 32  # animator: resolution of its flow, mask and colour

__all__ = ["ANIMATOR", "CANVAS", "FEATURES", "FRAME_MS", "HEAD_SIZE", "IDENTITY_ENCODER", "ID_FEATURES",
           "INTERPOLATOR", "LOG_MEL", "MAX_OPENING", "MEL_FRAMES", "MOUTH", "NETWORKS", "NET_LOWRES",
           "N_BETWEEN", "N_CONTEXT", "N_FEATURES", "N_MELS", "PIXELS", "ROLES", "WINDOW", "Network",
           "Tensor"]


PIXELS = "pixels"  # [0, 255]
LOG_MEL = "log_mel"  # natural-log mel power (about -6 +- 4), or band means of it
FEATURES = "features"  # network features of order 1 (and motion, mask, opening)


@dataclass(frozen=True)
class Tensor:
    """One named input or output of a network, float32, batch 1; ``kind`` says what its
    values are (the export draws its example inputs from it)."""

    name: str
    shape: tuple[int, ...]
    kind: str = FEATURES


@dataclass(frozen=True)
class Network:
    """A network's role (its weights file's name) and its inputs and outputs, in order."""

    role: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def feeds(self, *arrays: np.ndarray, **named: np.ndarray) -> dict[str, np.ndarray]:
        """The session's input dict: ``arrays`` in the order of ``inputs``, then ``named``
        for the rest (e.g. the identity encoder's outputs, which the animator takes)."""
        names = self.input_names
        if len(arrays) > len(names):
            raise ValueError(f"{self.role} takes {len(names)} inputs, got {len(arrays)}")
        given = dict(zip(names, arrays))
        given.update(named)
        if set(given) != set(names):
            raise ValueError(f"{self.role} takes {names}, got {sorted(given)}")
        return {name: given[name] for name in names}


_LOW = (NET_LOWRES, NET_LOWRES)
_ID_LR = Tensor("id_lr", (1, 3, *_LOW), PIXELS)
_F32, _F16 = (Tensor(name, (1, ch, size, size))
              for name, (ch, size) in zip(("f32", "f16"), ID_FEATURES))

INTERPOLATOR = Network(
    "interpolator",
    inputs=(Tensor("keys", (1, 3, N_CONTEXT, *_LOW), PIXELS),),
    outputs=(Tensor("between", (1, 3, N_BETWEEN, *_LOW), PIXELS),))
IDENTITY_ENCODER = Network(
    "identity_encoder",
    inputs=(Tensor("identity", (1, 3, CANVAS, CANVAS), PIXELS),),
    outputs=(_ID_LR, _F32, _F16))
ANIMATOR = Network(
    "animator",
    inputs=(Tensor("window", (1, WINDOW, 3, *_LOW), PIXELS),
            Tensor("mel", (1, MEL_FRAMES, N_MELS), LOG_MEL), _ID_LR, _F32, _F16),
    outputs=(Tensor("theta", (1, 6)), Tensor("flow", (1, 2, HEAD_SIZE, HEAD_SIZE)),
             Tensor("mask", (1, 1, HEAD_SIZE, HEAD_SIZE)),
             Tensor("colour", (1, 3, HEAD_SIZE, HEAD_SIZE), PIXELS)))
MOUTH = Network(
    "mouth",
    inputs=(Tensor("feats", (1, N_FEATURES), LOG_MEL),),
    outputs=(Tensor("opening", (1, 1)),))

NETWORKS = {n.role: n for n in (INTERPOLATOR, IDENTITY_ENCODER, ANIMATOR, MOUTH)}
ROLES = tuple(NETWORKS)  # every role the neural receiver loads
