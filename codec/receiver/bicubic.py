"""The ``bicubic`` baseline: the low-res frames, interpolated in time, enlarged with a cubic.

By default the cubic is *consistent with box downsampling* (see ``upsample.py``): the cubic
kernel of ``cv2.resize(INTER_CUBIC)`` with its samples pre-filtered so that the exact box
downsampler of the output gives back the low-res frame. ``consistent=False`` is plain
``cv2.resize`` INTER_CUBIC. Both are measured by ``benchmarks/bench_receivers.py``.
"""

from __future__ import annotations

import numpy as np

from codec import CANVAS_SIZE
from codec.receiver.base import Receiver, to_uint8
from codec.receiver.upsample import UpsampleKind, Upsampler


class UpsamplingReceiver(Receiver):
    """A receiver that owns an upsampler consistent with the box downsampler
    (``bicubic``, ``backproject``)."""

    def __init__(
        self,
        *,
        low_latency: bool = False,
        canvas_size: int = CANVAS_SIZE,
        kind: UpsampleKind = "cubic",
        consistent: bool = True,
    ) -> None:
        super().__init__(low_latency=low_latency, canvas_size=canvas_size)
        self.upsampler = Upsampler(self.canvas_size, kind=kind, consistent=consistent)


class BicubicReceiver(UpsamplingReceiver):
    """Upsamples the (time-interpolated) low-res frame; uses neither identity nor audio."""

    name = "bicubic"

    def render(self, t_ms: float) -> np.ndarray:
        return to_uint8(self.upsampler(self.lowres_at(t_ms)))
