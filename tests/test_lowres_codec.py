"""The low-res stream codec: exact sender/receiver agreement, rate and quality, robustness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codec.bitstream.lowres_codec import LowResDecoder, LowResEncoder, LowResParams
from codec.data import data_dir
from codec.errors import BitstreamError, CorruptError
from codec.sender.downsample import box_downsample

REPO = Path(__file__).resolve().parents[1]
DATA = data_dir()
VAL_CLIP = DATA / "clips" / "rizkiarm__LipNet__evaluation__samples__GRID__bbaf2n.mpg"
HEADER_BYTES = 11


def moving_face(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    """A smooth blob that moves and changes colour: a stand-in for a face at 8x8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    frames = []
    for t in range(n):
        cx, cy = 0.5 + 0.1 * np.sin(t / 5), 0.5 + 0.08 * np.cos(t / 7)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.08)
        img = np.stack([60 + 150 * blob, 50 + 110 * blob, 40 + 90 * blob * (1 + 0.1 * np.sin(t))],
                       axis=-1)
        frames.append(img + rng.normal(0, 1.0, img.shape))
    return np.clip(np.array(frames), 0, 255).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def code(frames: np.ndarray, params: LowResParams) -> tuple[list[tuple[bytes, bool]], np.ndarray]:
    enc, dec = LowResEncoder(params), LowResDecoder(params)
    payloads, out = [], []
    for f in frames:
        payload, intra = enc.encode(f)
        payloads.append((payload, intra))
        decoded = dec.decode(payload, intra)
        assert np.array_equal(decoded, enc.reconstruction())  # no drift, bit-exact
        out.append(decoded)
    return payloads, np.array(out)


def test_round_trip_quality_and_intra_period() -> None:
    frames = moving_face(40)
    params = LowResParams()
    payloads, decoded = code(frames, params)
    assert [i for i, (_, intra) in enumerate(payloads) if intra] == [0, 10, 20, 30]
    assert psnr(decoded, frames) >= 38.0
    assert decoded.dtype == np.float32 and decoded.min() >= 0 and decoded.max() <= 255


@pytest.mark.parametrize("size", [16, 32])
def test_larger_sizes(size: int) -> None:
    frames = moving_face(12, size)
    _, decoded = code(frames, LowResParams(size=size))
    assert decoded.shape == (12, size, size, 3)
    assert psnr(decoded, frames) >= 38.0


def test_finer_quantiser_costs_more_and_is_closer() -> None:
    frames = moving_face(20)
    coarse, dc = code(frames, LowResParams(quant=10.0))
    fine, df = code(frames, LowResParams(quant=3.0))
    assert sum(len(p) for p, _ in fine) > sum(len(p) for p, _ in coarse)
    assert psnr(df, frames) > psnr(dc, frames) + 3


def test_still_frames_cost_nothing_after_the_intra() -> None:
    frames = np.repeat(moving_face(1), 9, axis=0)
    payloads, _ = code(frames, LowResParams())
    assert all(len(p) == 0 for p, intra in payloads[2:])


def test_inter_frame_needs_a_reference() -> None:
    with pytest.raises(CorruptError):
        LowResDecoder().decode(b"\x12\x34", intra=False)


def test_garbage_payloads_never_escape_bitstream_errors() -> None:
    rng = np.random.default_rng(1)
    dec = LowResDecoder()
    for i in range(300):
        data = rng.integers(0, 256, rng.integers(0, 60)).astype(np.uint8).tobytes()
        try:
            out = dec.decode(data, intra=(i % 3 == 0) or not dec.has_reference)
        except BitstreamError:
            dec.reset()
            continue
        assert out.shape == (8, 8, 3) and np.all((out >= 0) & (out <= 255))


def test_bad_frames_and_params_are_refused() -> None:
    with pytest.raises(ValueError):
        LowResEncoder().encode(np.zeros((16, 16, 3)))
    with pytest.raises(ValueError):
        LowResEncoder().encode(np.full((8, 8, 3), np.nan))
    with pytest.raises(ValueError):
        LowResParams(size=12)


@pytest.mark.skipif(not VAL_CLIP.exists(), reason="shared data not present")
def test_real_val_clip_meets_rate_and_quality_target() -> None:
    from codec.sender.canvas import load_face_clip

    clip = load_face_clip(VAL_CLIP, max_seconds=3)
    lowres = box_downsample(clip.frames[::5], 32)  # 5 fps, exact box means
    payloads, decoded = code(lowres, LowResParams())
    seconds = len(lowres) / 5
    kbps = sum(len(p) + HEADER_BYTES for p, _ in payloads) * 8 / seconds / 1000
    assert kbps <= 1.5
    assert psnr(decoded, lowres) >= 38.0
