"""The receiver interface (base.py), the baselines and the registry."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.errors import InputError
from codec.receiver import registry
from codec.receiver.base import Receiver
from codec.receiver.bicubic import BicubicReceiver
from codec.receiver.identity import IdentityReceiver
from codec.receiver.registry import default_receiver_name, get_receiver
from codec.receiver.upsample import Upsampler
from codec.sender.downsample import box_downsample
from codec.types import AudioChunk, IdentityFrame, LowResFrame
from tests._canvas_clip import canvas_frames, stream

BASELINES = ["identity", "bicubic", "backproject", "align"]


def _flat_stream(n_lowres: int, step_ms: int = 200) -> tuple[IdentityFrame, list[LowResFrame]]:
    rng = np.random.default_rng(0)
    identity = IdentityFrame(image=rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    lowres = [
        LowResFrame(np.full((8, 8, 3), 10.0 * (i % 20), np.float32), i * step_ms)
        for i in range(n_lowres)
    ]
    return identity, lowres


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("low_latency", [False, True])
def test_frames_on_the_25fps_grid(name: str, low_latency: bool) -> None:
    identity, lowres = stream(38)  # key frames 0..35 -> 0, 200, ..., 1400 ms
    out = get_receiver(name, low_latency=low_latency).run(identity, lowres, end_ms=38 * 40)
    assert [f.timestamp_ms for f in out] == [40 * k for k in range(38)]
    for f in out:
        assert f.image.shape == (256, 256, 3) and f.image.dtype == np.uint8
    # Without a known end the stream lasts until the next expected low-res frame.
    out = get_receiver(name, low_latency=low_latency).run(identity, lowres)
    assert len(out) == 1400 // 40 + 5


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("size", [16, 32, 128])
def test_other_lowres_sizes(name: str, size: int) -> None:
    canvas = canvas_frames(11)
    lowres = [LowResFrame(box_downsample(canvas[k], 256 // size), 40 * k) for k in (0, 5, 10)]
    out = get_receiver(name).run(IdentityFrame(np.array(canvas[0])), lowres, end_ms=440)
    assert len(out) == 11 and all(f.image.shape == (256, 256, 3) for f in out)
    if name != "identity":  # finer streams give frames closer to the truth
        err = np.abs(out[10].image.astype(float) - canvas[10]).mean()
        assert err < 12.0


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["lowres", "audio", "pull", "clock", "identity"]),
            st.integers(min_value=0, max_value=30_000),
        ),
        max_size=60,
    ),
    st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_any_interleaving_keeps_the_output_on_the_grid(
    ops: list[tuple[str, int]], low_latency: bool
) -> None:
    identity, _ = _flat_stream(1)
    r = BicubicReceiver(low_latency=low_latency)
    out = []
    for op, ts in ops:
        if op == "lowres":
            r.push_lowres(LowResFrame(np.full((8, 8, 3), ts % 256, np.float32), ts))
        elif op == "audio":
            r.push_audio(AudioChunk(np.zeros(320, np.float32), ts))
        elif op == "pull":
            out += r.pull()
        elif op == "clock":
            out += r.pull(now_ms=float(ts))
        else:
            r.set_identity(identity)
    out += r.flush()
    times = [f.timestamp_ms for f in out]
    assert times == sorted(set(times))
    assert all(t % 40 == 0 for t in times)
    assert len(out) <= 31_000 // 40 + 2
    assert len(r.lowres) <= Receiver.max_buffered_lowres


@pytest.mark.parametrize("name", ["bicubic", "backproject", "align"])
def test_receivers_beat_nothing_and_follow_the_stream(name: str) -> None:
    canvas = canvas_frames(40)
    identity, lowres = stream(40)
    out = get_receiver(name).run(identity, lowres, end_ms=40 * 40)
    for f, truth in zip(out[1:], canvas[1:], strict=True):
        # each frame must agree with its own canvas frame far better than with a flat grey
        err = np.abs(f.image.astype(float) - truth).mean()
        assert err < 0.5 * np.abs(truth.astype(float) - 128).mean()


def test_backproject_is_consistent_with_the_lowres_frames() -> None:
    identity, lowres = stream(40)
    receiver = get_receiver("backproject")
    out = {f.timestamp_ms: f.image for f in receiver.run(identity, lowres)}
    for lr in lowres:
        image = out[lr.timestamp_ms]
        got = box_downsample(image, 32)
        blocks = image.reshape(8, 32, 8, 32, 3)
        clipped = ((blocks == 0) | (blocks == 255)).any(axis=(1, 3))
        assert clipped.mean() < 0.5
        # rounding to uint8 moves a block mean by at most 0.5
        assert np.abs(got - lr.pixels)[~clipped].max() <= 0.5 + 1e-3
    # the plain identity frame is not consistent: the test can fail
    assert np.abs(box_downsample(identity.image, 32) - lowres[-1].pixels).max() > 2.0


def test_receiver_keeps_a_lowres_frame_s_quantiser_and_drops_a_hostile_one() -> None:
    identity, lowres = stream(40)
    assert len(lowres) >= 3
    r = get_receiver("backproject")
    r.set_identity(identity)
    for lr, q in zip(lowres, (6.0, float("nan"), 1e9)):
        r.push_lowres(LowResFrame(lr.pixels, lr.timestamp_ms, quant=q))
    assert [f.quant for f in r.lowres] == [6.0, 0.0, 0.0]


def test_back_projection_with_noise_leaves_small_residuals_and_shrinks_large_ones() -> None:
    from codec.receiver.backproject import back_project
    from codec.receiver.upsample import area_downsample

    rng = np.random.default_rng(0)
    image = rng.uniform(60, 200, (256, 256, 3)).astype(np.float32)
    residual = rng.uniform(-8, 8, (8, 8, 3)).astype(np.float32)
    lowres = area_downsample(image, 8) + residual
    up = Upsampler(256)
    plain = back_project(image, lowres, up)
    assert np.abs(area_downsample(plain, 8) - lowres).max() < 1e-2
    soft = back_project(image, lowres, up, noise=3.0)
    got = area_downsample(soft, 8) - area_downsample(image, 8)  # the residual applied
    small = np.abs(residual) <= 3.0
    assert small.any() and (~small).any()
    assert np.abs(got[small]).max() < 1e-2  # within the noise: the image is kept
    want = np.sign(residual) * (np.abs(residual) - 3.0)
    assert np.abs(got - want)[~small].max() < 1e-2  # beyond it: corrected, less the noise

def test_bicubic_interpolates_in_time_between_key_frames() -> None:
    identity, lowres = _flat_stream(3)
    out = BicubicReceiver().run(identity, lowres)
    by_t = {f.timestamp_ms: f.image for f in out}
    assert np.all(by_t[0] == 0) and np.all(by_t[200] == 10)
    assert np.all(by_t[80] == 4)  # 0.4 of the way from 0 to 10
    assert np.all(by_t[320] == 16)


def test_identity_receiver_repeats_the_identity_frame() -> None:
    identity, lowres = _flat_stream(4)
    out = IdentityReceiver().run(identity, lowres)
    assert all(np.array_equal(f.image, identity.image) for f in out)


def test_duplicates_and_reordering_change_nothing() -> None:
    identity, lowres = stream(40)
    ref = [f.image for f in BicubicReceiver().run(identity, lowres)]
    # reordered and duplicated within what arrives between two pulls (a jitter buffer)
    batches = [[lowres[0]], [lowres[2], lowres[1], lowres[1]], [lowres[4], lowres[3]]]
    batches += [[lowres[5], lowres[0], lowres[4]], lowres[6:], [lowres[-1]]]
    r = BicubicReceiver()
    r.set_identity(identity)
    got = []
    for batch in batches:
        for f in batch:
            r.push_lowres(f)
        got += [f.image for f in r.pull()]
    got += [f.image for f in r.flush()]
    assert len(got) == len(ref)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))
    # a frame arriving after its time was rendered is still used for later frames
    r = BicubicReceiver()
    out = r.run(identity, [lowres[0], lowres[2], lowres[1], *lowres[3:]])
    assert [f.timestamp_ms for f in out] == [40 * k for k in range(40)]


def test_missing_lowres_frames_widen_the_interpolation_gap() -> None:
    identity, lowres = _flat_stream(6)
    kept = [lowres[0], lowres[1], lowres[4], lowres[5]]  # 400 and 600 ms lost
    out = BicubicReceiver().run(identity, kept)
    assert [f.timestamp_ms for f in out] == [40 * k for k in range(30)]
    by_t = {f.timestamp_ms: f.image for f in out}
    assert np.all(by_t[400] == 20)  # a third of the way from 10 (200 ms) to 40 (800 ms)


def test_low_latency_emits_without_waiting() -> None:
    identity, lowres = _flat_stream(3)
    for low_latency, expected in [(False, [0]), (True, [0, 40, 80, 120, 160])]:
        r = BicubicReceiver(low_latency=low_latency)
        r.set_identity(identity)
        r.push_lowres(lowres[0])
        assert [f.timestamp_ms for f in r.pull()] == expected
    # with the presentation clock, low-latency holds the last frame through loss
    r = BicubicReceiver(low_latency=True)
    r.set_identity(identity)
    r.push_lowres(lowres[1])
    held = r.pull(now_ms=1000.0)
    assert [f.timestamp_ms for f in held] == [40 * k for k in range(26)]
    assert all(np.all(f.image == 10) for f in held)
    # interpolate mode waits at most one interval for the next frame when given a clock
    r = BicubicReceiver()
    r.set_identity(identity)
    r.push_lowres(lowres[0])
    assert [f.timestamp_ms for f in r.pull(now_ms=300.0)] == [0, 40, 80]


def test_ten_minute_call_keeps_buffers_bounded() -> None:
    identity, _ = _flat_stream(1)
    r = IdentityReceiver(low_latency=True)
    r.set_identity(identity)
    n_out = 0
    biggest = 0
    for i in range(10 * 60 * 5):  # 10 minutes of 8x8 frames at 5 fps
        r.push_lowres(LowResFrame(np.full((8, 8, 3), 100.0, np.float32), i * 200))
        for j in range(10):  # and of 20 ms audio chunks
            r.push_audio(AudioChunk(np.zeros(320, np.float32), i * 200 + 20 * j))
        n_out += len(r.pull())
        biggest = max(biggest, len(r.lowres), len(r.audio) // 10)
    assert n_out == 10 * 60 * 25
    assert biggest <= 20
    # nobody pulling: the caps still hold
    r = IdentityReceiver()
    for i in range(2000):
        r.push_lowres(LowResFrame(np.zeros((8, 8, 3), np.float32), i * 200))
        r.push_audio(AudioChunk(np.zeros(3200, np.float32), i * 200))
    assert len(r.lowres) <= Receiver.max_buffered_lowres
    assert sum(len(c.samples) for c in r.audio) <= Receiver.max_buffered_audio_s * 16000


def test_bad_input_is_a_named_error_or_degrades() -> None:
    identity, lowres = _flat_stream(3)
    r = BicubicReceiver()
    with pytest.raises(InputError):
        r.push_lowres(LowResFrame(np.zeros((8, 7, 3), np.float32), 0))
    with pytest.raises(InputError):
        r.push_lowres(LowResFrame(np.zeros((7, 7, 3), np.float32), 0))  # 7 does not divide 256
    with pytest.raises(InputError):
        r.push_lowres(LowResFrame(np.zeros((8, 8, 3), np.float32), -40))
    with pytest.raises(InputError):
        r.set_identity(IdentityFrame(image=np.zeros((3840, 2160, 3), np.uint8)))
    with pytest.raises(InputError):
        r.push_audio(AudioChunk(np.zeros((2, 100), np.float32), 0))
    # non-finite pixels are repaired, not propagated
    r.set_identity(identity)
    bad = np.full((8, 8, 3), np.nan, np.float32)
    bad[0, 0] = np.inf
    r.push_lowres(LowResFrame(bad, 0))
    (frame,) = r.pull()
    assert frame.image.dtype == np.uint8


def test_a_bogus_timestamp_does_not_hang_or_blow_up() -> None:
    identity, lowres = _flat_stream(3)
    for low_latency in (False, True):
        r = BicubicReceiver(low_latency=low_latency)
        t0 = time.monotonic()
        out = r.run(identity, [*lowres, LowResFrame(lowres[0].pixels, 2**40)])
        assert time.monotonic() - t0 < 10
        assert len(out) < 50
        assert out[-1].timestamp_ms >= 2**40 - 40  # the clock jumped over the gap


def test_missing_identity_frame_degrades_to_a_placeholder() -> None:
    _, lowres = _flat_stream(8)
    r = get_receiver("backproject")
    frames = []
    for f in lowres:
        r.push_lowres(f)
        frames += r.pull()
    frames += r.flush()
    assert len(frames) == 8 * 5
    assert all(f.meta.get("identity") == "placeholder" for f in frames)
    # the real identity frame replaces the placeholder when it comes
    identity, _ = _flat_stream(1)
    r.set_identity(identity)
    r.push_lowres(LowResFrame(lowres[0].pixels, 8 * 200))
    assert all("identity" not in f.meta for f in r.pull())


def test_upsampler_is_consistent_with_box_downsampling() -> None:
    rng = np.random.default_rng(1)
    for size in (8, 16, 32):
        low = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
        for kind in ("cubic", "linear"):
            up = Upsampler(256, kind=kind)(low)
            assert up.shape == (256, 256, 3)
            assert np.abs(box_downsample(up, 256 // size) - low).max() < 1e-2
        plain = Upsampler(256, consistent=False)(low)
        assert np.abs(box_downsample(plain, 256 // size) - low).max() > 1.0


def test_registry() -> None:
    for name in BASELINES:
        r = get_receiver(name, low_latency=True)
        assert r.name == name and r.low_latency
    with pytest.raises(ValueError):
        get_receiver("no-such-receiver")
    expected = "neural" if registry.neural_available() else "align"
    assert default_receiver_name() == expected


def test_default_receiver_falls_back_to_align(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.RECEIVERS, "neural", "codec.receiver.no_such_module:X")
    assert default_receiver_name() == "align"
