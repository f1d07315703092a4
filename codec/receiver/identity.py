"""The ``identity`` baseline: the identity frame, repeated. The floor any receiver must beat."""

from __future__ import annotations

import numpy as np

from codec.receiver.base import Receiver


class IdentityReceiver(Receiver):
    """Shows the identity frame at every output time; ignores the low-res stream's content
    (it still drives the output clock)."""

    name = "identity"

    def render(self, t_ms: float) -> np.ndarray:
        assert self.identity is not None  # the base class guarantees it before rendering
        return self.identity.image.copy()
