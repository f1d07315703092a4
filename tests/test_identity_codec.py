"""Identity frame coding: round trips per format, bounded and strict decoding."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from codec.bitstream.identity_codec import (
    MAX_IMAGE_BYTES,
    ImageFormat,
    decode_identity,
    decode_image,
    encode_identity,
    encode_image,
    parse_format,
)
from codec.errors import BitstreamError, CorruptError, LimitExceededError, TruncatedError
from codec.types import IdentityFrame


def face_like() -> np.ndarray:
    yy, xx = np.mgrid[0:256, 0:256] / 256
    blob = np.exp(-((xx - 0.5) ** 2 + (yy - 0.45) ** 2) / 0.05)
    img = np.stack([40 + 180 * blob, 30 + 140 * blob, 30 + 110 * blob], axis=-1)
    img[150:160, 100:156] *= 0.5  # a mouth-like edge
    return img.astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


@pytest.mark.parametrize("fmt", list(ImageFormat))
def test_round_trip_each_format(fmt: ImageFormat) -> None:
    img = face_like()
    payload = encode_identity(IdentityFrame(img, 0, 7), fmt)
    frame = decode_identity(payload, timestamp_ms=1234)
    assert frame.refresh_id == 7 and frame.timestamp_ms == 1234
    assert frame.image.shape == (256, 256, 3) and frame.image.dtype == np.uint8
    assert psnr(frame.image, img) > 36
    assert len(payload) < 12_000


def test_default_is_avif_and_smaller_than_jpeg_at_similar_quality() -> None:
    img = face_like()
    avif = encode_image(img, ImageFormat.AVIF)
    jpeg = encode_image(img, ImageFormat.JPEG, 80)
    assert decode_identity(encode_identity(IdentityFrame(img)))  # default format decodes
    assert encode_identity(IdentityFrame(img))[1] == ImageFormat.AVIF
    assert len(avif) < len(jpeg)


def png_bytes(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def test_wrong_size_is_rejected_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (512, 256)).save(buf, format="WEBP")
    with pytest.raises(CorruptError, match="512x256"):
        decode_image(buf.getvalue(), ImageFormat.WEBP)


def test_declared_huge_jpeg_is_refused_without_allocating() -> None:
    data = bytearray(encode_image(face_like(), ImageFormat.JPEG))
    sof = data.index(b"\xff\xc0")  # baseline start-of-frame: height, width at +5
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(CorruptError):
        decode_image(bytes(data), ImageFormat.JPEG)


def test_limits_signatures_and_truncation() -> None:
    good = encode_image(face_like(), ImageFormat.WEBP)
    with pytest.raises(LimitExceededError):
        decode_image(good + b"\x00" * MAX_IMAGE_BYTES, ImageFormat.WEBP)
    with pytest.raises(CorruptError):
        decode_image(png_bytes(256, 256), ImageFormat.WEBP)  # not the declared format
    with pytest.raises(TruncatedError):
        decode_identity(b"\x00")
    with pytest.raises(CorruptError):
        decode_identity(b"\x00\x09" + good)  # unknown format id
    for n in (12, len(good) // 2, len(good) - 1):
        with pytest.raises(BitstreamError):
            decode_image(good[:n], ImageFormat.WEBP)


def test_encoder_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        encode_image(np.zeros((3840, 2160, 3), np.uint8), ImageFormat.WEBP)
    with pytest.raises(ValueError):
        parse_format("gif")
