"""The ``align`` baseline: analysis by synthesis with a similarity warp, then back-projection.

For each low-res frame (5 fps) fit the similarity warp of the identity frame whose exact box
downsampling best matches it (``warp.WarpFitter``, started from the previous frame's fit).
For each output frame (25 fps) interpolate the warp parameters in time between the
bracketing fits (hold the latest in low-latency mode), warp the identity frame at full
resolution (bilinear, border replicate; by default only its head layer over the static
background, see ``warp.py``) and back-project it onto the time-interpolated
low-res frame (``backproject.back_project``). No training, a few ms per frame on one core:
this is also the receiver for devices too weak for the neural one.
"""

from __future__ import annotations

import numpy as np

from codec import CANVAS_SIZE
from codec.receiver.backproject import back_project
from codec.receiver.base import Receiver, to_uint8
from codec.receiver.upsample import UpsampleKind, Upsampler
from codec.receiver.warp import LayeredImage, SimilarityWarp, WarpFit, WarpFitter, head_mask
from codec.types import IdentityFrame


class AlignReceiver(Receiver):
    """Warps the identity frame to follow the low-res stream, then back-projects."""

    name = "align"

    def __init__(
        self,
        *,
        low_latency: bool = False,
        canvas_size: int = CANVAS_SIZE,
        kind: UpsampleKind = "cubic",
        model_size: int = 64,
        iterations: int = 12,
        layered: bool = True,
        prior_weight: float = 2.0,
    ) -> None:
        super().__init__(low_latency=low_latency, canvas_size=canvas_size)
        self.upsampler = Upsampler(canvas_size, kind=kind, consistent=True)
        self.model_size = model_size
        self.iterations = iterations
        self.layered = layered
        self.prior_weight = prior_weight
        self.fitter: WarpFitter | None = None
        self.layers: LayeredImage | None = None
        self.fits: dict[int, WarpFit] = {}  # by low-res timestamp

    def on_identity(self, identity: IdentityFrame) -> None:
        self.fitter = WarpFitter(
            identity.image,
            canvas_size=self.canvas_size,
            model_size=self.model_size,
            iterations=self.iterations,
            layered=self.layered,
            prior_weight=self.prior_weight,
        )
        mask = head_mask(self.canvas_size) if self.layered else None
        self.layers = LayeredImage(identity.image, mask)
        self.fits.clear()

    def warp_at(self, t_ms: float) -> SimilarityWarp:
        """The identity frame's warp at output time t (interpolated between fits)."""
        i, j, w = self.bracket(t_ms)
        a = self._fit(i).warp
        if i == j or w == 0.0:
            return a
        return a.lerp(self._fit(j).warp, w)

    def render(self, t_ms: float) -> np.ndarray:
        assert self.layers is not None  # set with the identity frame, before any rendering
        warped = self.layers.compose(self.warp_at(t_ms), self.canvas_size)
        return to_uint8(back_project(warped, self.lowres_at(t_ms), self.upsampler))

    def _fit(self, index: int) -> WarpFit:
        """Fit of low-res frame ``index``, fitting any unfitted predecessors in order."""
        assert self.fitter is not None
        times = self._times
        if len(self.fits) > 2 * len(times) + 8:
            first = times[0]
            self.fits = {ts: f for ts, f in self.fits.items() if ts >= first}
        k = index
        while k >= 0 and times[k] not in self.fits:
            k -= 1
        start = self.fits[times[k]].warp if k >= 0 else SimilarityWarp()
        for m in range(k + 1, index + 1):
            fit = self.fitter.fit(self.lowres[m].pixels, start)
            self.fits[times[m]] = fit
            start = fit.warp
        return self.fits[times[index]]
