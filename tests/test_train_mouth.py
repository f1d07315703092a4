"""training/train_mouth.py: the 8x8 features of the ``--probe-8x8`` comparison."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from training.train_mouth import lowres_features


def test_lowres_features_interpolate_the_lower_rows_and_drop_the_lighting() -> None:
    t = 11
    lowres = np.full((t, 8, 8, 3), 100.0, np.float32)
    lowres[5, 6, 3] = 20.0  # a dark (open) mouth on the second received frame
    lowres[10] += 50.0  # brighter light on the third, nothing else changes
    clip = SimpleNamespace(n_frames=t, lowres=lowres)
    x = lowres_features(clip)  # type: ignore[arg-type]
    assert x.shape == (t, 40)
    np.testing.assert_allclose(x[0], 0.0, atol=1e-9)
    np.testing.assert_allclose(x[10], 0.0, atol=1e-9)  # lighting alone is no feature
    pixel = (6 - 3) * 8 + 3
    assert x[5, pixel] < -70  # the dark pixel, less the frame's mean
    # Frames between received ones are the linear blend of the two around them.
    np.testing.assert_allclose(x[7], 0.6 * x[5] + 0.4 * x[10])
    np.testing.assert_allclose(x[3], 0.4 * x[0] + 0.6 * x[5])
