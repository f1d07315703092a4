"""Similarity-warp fitting (analysis by synthesis) on a real face canvas frame."""

from __future__ import annotations

import numpy as np
import pytest

from codec.receiver.align import AlignReceiver
from codec.receiver.warp import LayeredImage, SimilarityWarp, WarpFitter, head_mask, warp_image
from codec.sender.downsample import box_downsample
from codec.types import IdentityFrame, LowResFrame
from tests._canvas_clip import canvas_frames

TRUE_WARPS = [
    SimilarityWarp(tx=6.0, ty=-4.0, log_scale=0.0, angle=0.0),
    SimilarityWarp(tx=-3.0, ty=5.0, log_scale=np.log(1.08), angle=0.0),
    SimilarityWarp(tx=4.0, ty=3.0, log_scale=np.log(0.94), angle=np.deg2rad(6.0)),
]


def test_warp_matrix_moves_the_canvas_as_described() -> None:
    m = SimilarityWarp(tx=10.0, ty=-5.0, log_scale=np.log(2.0), angle=0.0).matrix(256, 256)
    centre = np.array([127.5, 127.5, 1.0])
    assert np.allclose(m @ centre, [137.5, 122.5])  # the centre only shifts
    assert np.allclose(m @ (centre + [1, 0, 0]) - m @ centre, [2.0, 0.0])  # scale 2
    # parameters are in canvas pixels: half the shift on a half-size image
    assert np.allclose(SimilarityWarp(tx=10.0).matrix(128, 256)[:, 2], [5.0, 0.0])


def _moved(identity: np.ndarray, warp: SimilarityWarp, layered: bool) -> np.ndarray:
    """The canvas with the head (layered) or the whole frame moved by ``warp``."""
    if not layered:
        return warp_image(identity, warp, 256)
    moved = LayeredImage(identity, head_mask(256)).compose(warp, 256)
    return np.clip(np.rint(moved), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("layered", [False, True])
@pytest.mark.parametrize("truth", TRUE_WARPS)
def test_fit_recovers_a_known_similarity_warp(truth: SimilarityWarp, layered: bool) -> None:
    identity = np.array(canvas_frames(1)[0])
    lowres = box_downsample(_moved(identity, truth, layered), 32)
    fit = WarpFitter(identity, layered=layered).fit(lowres)
    got = fit.warp
    assert not fit.fell_back
    assert abs(got.tx - truth.tx) < 1.5 and abs(got.ty - truth.ty) < 1.5
    assert abs(np.exp(got.log_scale) - np.exp(truth.log_scale)) < 0.025
    assert abs(np.rad2deg(got.angle - truth.angle)) < 2.0
    assert fit.cost < 0.25 * fit.identity_cost


def test_head_mask_covers_the_head_not_the_corners() -> None:
    m = head_mask(256)[..., 0]
    assert m.shape == (256, 256) and m[150, 128] == 1.0 and m[100, 128] == 1.0
    assert m[0, 0] == 0.0 and m[0, 255] == 0.0 and m[128, 0] < 0.5
    moved = LayeredImage(np.zeros((256, 256, 3)), head_mask(256))
    assert np.all(moved.compose(SimilarityWarp(tx=20.0), 256) == 0.0)


def test_fit_falls_back_on_nonsense() -> None:
    identity = np.array(canvas_frames(1)[0])
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
    fit = WarpFitter(identity).fit(noise, SimilarityWarp(tx=500.0, angle=3.0))
    p = fit.warp.as_array()
    assert np.all(np.isfinite(p))
    assert abs(fit.warp.tx) <= 80 and abs(fit.warp.angle) <= np.deg2rad(35) + 1e-9
    assert fit.cost <= fit.identity_cost + 1e-9


def test_align_receiver_follows_a_moving_head() -> None:
    identity = np.array(canvas_frames(1)[0])
    truths = [SimilarityWarp(tx=1.5 * k, ty=-1.0 * k, angle=np.deg2rad(0.8 * k)) for k in range(6)]
    frames = [_moved(identity, w, True) for w in truths]
    lowres = [LowResFrame(box_downsample(f, 32), 200 * k) for k, f in enumerate(frames)]
    r = AlignReceiver()
    out = {f.timestamp_ms: f.image for f in r.run(IdentityFrame(identity), lowres)}
    for k, w in enumerate(truths):
        got = r.warp_at(200 * k)
        assert abs(got.tx - w.tx) < 1.5 and abs(got.ty - w.ty) < 1.5
        err = np.abs(out[200 * k].astype(float) - frames[k]).mean()
        assert err < 4.0
    mid = r.warp_at(500)  # halfway between the fits of 400 and 600 ms
    assert abs(mid.tx - 3.75) < 1.5


def test_align_state_stays_bounded_over_a_long_call() -> None:
    rng = np.random.default_rng(0)
    identity = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # a small canvas: cheap
    r = AlignReceiver(canvas_size=64, low_latency=True)
    r.set_identity(IdentityFrame(identity))
    n_out = 0
    for i in range(2 * 60 * 5):  # 2 minutes of 8x8 frames
        shift = SimilarityWarp(tx=4.0 * np.sin(i / 10))
        r.push_lowres(LowResFrame(box_downsample(warp_image(identity, shift, 64), 8), 200 * i))
        n_out += len(r.pull())
        assert len(r.fits) <= 60  # fits are trimmed with the low-res buffer
    assert n_out == 2 * 60 * 25 and len(r.lowres) <= 20
