"""The 5 -> 25 fps interpolator network: what it computes before and around training."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from training.networks.interpolator import N_BETWEEN, Interpolator  # noqa: E402 - after the skip


def _keys(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 4, 8, 8, generator=g) * 255


def test_untrained_interpolator_is_linear_interpolation() -> None:
    keys = _keys()
    with torch.no_grad():
        out = Interpolator()(keys)
    a, b = keys[:, :, 2], keys[:, :, 3]
    for i in range(N_BETWEEN):
        w = (i + 1) / (N_BETWEEN + 1)
        torch.testing.assert_close(out[:, :, i], a + (b - a) * w, atol=1e-3, rtol=0)

