"""The identity frame: one 256x256 canvas frame, image-coded, sent at call start (and on
refresh).

IDENTITY payload: ``refresh_id`` (1 byte), image format (1 byte), then the image file bytes.

Format choice (``benchmarks/bench_identity_codec.py``, first canvas frame of the 11 val
clips, 2-core CPU dev box; numbers in docs/BITSTREAM.md): at equal PSNR AVIF is the
smallest (q65: 4.3 kB at 41.2 dB, SSIM 0.986), WebP needs ~15-20% more bytes at 41 dB and
~1 dB less at 3 kB, JPEG ~70% more (q80: 7.3 kB at 41.4 dB). AVIF encodes in ~135 ms and
decodes in ~3 ms, paid once per call, so AVIF at quality 65 is the default; WebP (35 ms)
and JPEG (2 ms) stay selectable.

Decoding is bounded: payloads over ``MAX_IMAGE_BYTES`` are refused, the file signature must
match the declared format, and the image size is checked before any pixel is decoded, so a
decompression bomb never allocates.
"""

from __future__ import annotations

import io
from enum import IntEnum

import numpy as np
from PIL import Image

from codec import CANVAS_SIZE
from codec.errors import CorruptError, LimitExceededError, TruncatedError
from codec.types import IdentityFrame

MAX_IMAGE_BYTES = 256 * 1024


class ImageFormat(IntEnum):
    WEBP = 0
    JPEG = 1
    AVIF = 2


_PIL_NAME = {ImageFormat.WEBP: "WEBP", ImageFormat.JPEG: "JPEG", ImageFormat.AVIF: "AVIF"}
DEFAULT_QUALITY = {ImageFormat.WEBP: 85, ImageFormat.JPEG: 85, ImageFormat.AVIF: 65}
DEFAULT_FORMAT = ImageFormat.AVIF


def parse_format(name: str) -> ImageFormat:
    try:
        return ImageFormat[name.upper()]
    except KeyError:
        raise ValueError(f"unknown identity image format {name!r} (webp, jpeg, avif)") from None


def encode_image(image: np.ndarray, fmt: ImageFormat, quality: int | None = None) -> bytes:
    img = np.ascontiguousarray(image)
    if img.shape != (CANVAS_SIZE, CANVAS_SIZE, 3) or img.dtype != np.uint8:
        raise ValueError(f"identity frame must be ({CANVAS_SIZE}, {CANVAS_SIZE}, 3) uint8")
    q = DEFAULT_QUALITY[fmt] if quality is None else int(quality)
    buf = io.BytesIO()
    kwargs: dict = {"quality": q}
    if fmt is ImageFormat.WEBP:
        kwargs["method"] = 6
    elif fmt is ImageFormat.JPEG:
        kwargs.update(optimize=True, subsampling=0 if q >= 90 else 2)
    elif fmt is ImageFormat.AVIF:
        kwargs["speed"] = 6
    Image.fromarray(img, "RGB").save(buf, format=_PIL_NAME[fmt], **kwargs)
    return buf.getvalue()


def _signature_ok(data: bytes, fmt: ImageFormat) -> bool:
    if fmt is ImageFormat.WEBP:
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if fmt is ImageFormat.JPEG:
        return data[:3] == b"\xff\xd8\xff"
    return data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis")


def decode_image(data: bytes, fmt: ImageFormat) -> np.ndarray:
    if len(data) > MAX_IMAGE_BYTES:
        raise LimitExceededError(f"identity image of {len(data)} bytes > {MAX_IMAGE_BYTES}")
    if len(data) < 12:
        raise TruncatedError("identity image too short")
    if not _signature_ok(data, fmt):
        raise CorruptError(f"identity image is not {fmt.name}")
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_NAME[fmt]]) as im:
            if im.size != (CANVAS_SIZE, CANVAS_SIZE):
                raise CorruptError(f"identity image is {im.size[0]}x{im.size[1]}, not 256x256")
            im.load()
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except CorruptError:
        raise
    except Exception as exc:  # Pillow reports bad files through many exception types
        raise CorruptError(f"identity image does not decode: {type(exc).__name__}") from None
    if rgb.shape != (CANVAS_SIZE, CANVAS_SIZE, 3):
        raise CorruptError("identity image has the wrong shape")
    return np.ascontiguousarray(rgb)


def encode_identity(
    identity: IdentityFrame, fmt: ImageFormat = DEFAULT_FORMAT, quality: int | None = None
) -> bytes:
    """IdentityFrame -> IDENTITY packet payload."""
    if not 0 <= identity.refresh_id < 256:
        raise ValueError("refresh_id must fit one byte")
    return bytes([identity.refresh_id, int(fmt)]) + encode_image(identity.image, fmt, quality)


def decode_identity(payload: bytes, timestamp_ms: int = 0) -> IdentityFrame:
    """IDENTITY packet payload -> IdentityFrame."""
    if len(payload) < 2:
        raise TruncatedError("IDENTITY payload too short")
    try:
        fmt = ImageFormat(payload[1])
    except ValueError:
        raise CorruptError(f"unknown identity image format {payload[1]}") from None
    image = decode_image(bytes(payload[2:]), fmt)
    return IdentityFrame(image=image, timestamp_ms=timestamp_ms, refresh_id=payload[0])
