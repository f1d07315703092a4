"""The ``backproject`` baseline: the identity frame corrected to agree with each low-res frame.

    out = I + up(l - D(I))

with ``l`` the low-res frame interpolated to the output time, ``D`` the exact box
downsampler of the sender (``codec/sender/downsample.py``) and ``up`` a smooth upsampler
that is consistent with it (``D(up(r)) == r``), so ``D(out) == l`` exactly before the final
rounding / clipping to uint8. The default ``up`` is the consistent cubic; it scored above the
consistent linear on val (see ``benchmarks/bench_receivers.py`` and the project report).
"""

from __future__ import annotations

import numpy as np

from codec import CANVAS_SIZE
from codec.receiver.base import Receiver
from codec.receiver.bicubic import to_uint8
from codec.receiver.upsample import Upsampler, UpsampleKind, area_downsample


def back_project(image: np.ndarray, lowres: np.ndarray, upsampler: Upsampler) -> np.ndarray:
    """``image + up(lowres - D(image))`` as float32 (not clipped)."""
    x = np.asarray(image, dtype=np.float32)
    residual = np.asarray(lowres, dtype=np.float32) - area_downsample(x, lowres.shape[0])
    return x + upsampler(residual)


class BackprojectReceiver(Receiver):
    """Back-projects the identity frame onto each (time-interpolated) low-res frame."""

    name = "backproject"

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

    def render(self, t_ms: float) -> np.ndarray:
        assert self.identity is not None  # the base class guarantees it before rendering
        return to_uint8(back_project(self.identity.image, self.lowres_at(t_ms), self.upsampler))
