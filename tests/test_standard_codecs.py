import numpy as np
import pytest

from benchmarks.standard_codecs import CODECS, encode_decode, h264_user_data_sei_bytes
from codec.metrics import mean_psnr, psnr


def _moving_face_like(n: int = 12, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    frames = []
    for t in range(n):
        cx, cy = size / 2 + 2 * np.sin(t / 3), size / 2
        blob = 200 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (size / 5) ** 2))
        frames.append(np.stack([blob + 30, blob * 0.8 + 20, blob * 0.6 + 10], -1))
    return np.clip(frames, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list(CODECS))
def test_round_trip_decodes_every_frame_and_rate_falls_down_the_ladder(name):
    codec = CODECS[name]
    frames = _moving_face_like()
    best = encode_decode(frames, codec, codec.ladder[0])
    floor = encode_decode(frames, codec, codec.ladder[-1])
    assert best.frames.shape == frames.shape and best.frames.dtype == np.uint8
    assert mean_psnr([psnr(a, b) for a, b in zip(best.frames, frames)]) > 35.0
    assert 0 < floor.bits < best.bits
    assert best.bits == 8 * (sum(best.packet_sizes) + best.header_bytes)


def test_rejects_bad_frames():
    with pytest.raises(ValueError):
        encode_decode(np.zeros((0, 64, 64, 3), np.uint8), CODECS["H.264"], 30)
    with pytest.raises(ValueError):
        encode_decode(np.zeros((3, 64, 64), np.uint8), CODECS["H.264"], 30)


def test_h264_sei_bytes_are_found_between_other_nal_units():
    sps = b"\x00\x00\x00\x01\x67" + b"\x11" * 9  # 4-byte start code, SPS (type 7)
    sei = b"\x00\x00\x01\x06" + b"\x05\x20" + b"x" * 30  # SEI (type 6): 36 bytes
    idr = b"\x00\x00\x01\x65" + b"\x22" * 50  # IDR slice (type 5)
    assert h264_user_data_sei_bytes(sps + sei + idr) == len(sei)
    assert h264_user_data_sei_bytes(sps + idr) == 0


def test_x264_banner_is_not_counted():
    frames = _moving_face_like(4)
    stream = encode_decode(frames, CODECS["H.264"], 51)
    assert sum(stream.packet_sizes) < 400  # the banner alone is ~600 bytes
