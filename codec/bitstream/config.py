"""The CONFIG packet payload: the stream parameters a decoder needs before anything else.

Layout (version 1), 11-15 bytes::

    layout version   1 byte   (1)
    canvas size      varint   (256)
    lowres size      1 byte   (8, 16, 32)
    lowres fps       1 byte
    quantiser        1 byte   in quarter grey levels (6.0 -> 24)
    chroma scale     1 byte   in 1/16 (1.0 -> 16)
    intra period     varint   frames
    audio codec      1 byte   0 none, 1 Opus
    audio rate       varint   Hz
    audio bitrate    varint   bit/s

Layout 2 (a stream with the motion code) is layout 1 followed by::

    code period      1 byte   ms between samples (40, 80, 200)
    code quantiser   1 byte   in 1/16 (1.0 -> 16)
    coefficients     1 byte   expression coefficients per sample
    refresh period   1 byte   groups between refresh groups
    basis id         4 bytes  little endian, first 4 bytes of the basis file's sha256

Layout 3 is layout 2 whose motion groups are in format 2 (no header byte, the timing
predicted; ``motion_codec.py``): what the sender writes since 2026-12-06. Layout 2 streams
(format 1 groups) still decode.

A stream without the code keeps layout 1, byte for byte. Unknown layout versions,
out-of-range values and trailing bytes are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from codec import AUDIO_RATE, CANVAS_SIZE
from codec.bitstream.lowres_codec import LowResParams
from codec.bitstream.motion_codec import MotionParams
from codec.bitstream.packet import decode_varint, encode_varint
from codec.errors import CorruptError, TruncatedError, UnsupportedVersionError

CONFIG_LAYOUT = 1
CONFIG_LAYOUT_MOTION = 2  # motion groups in format 1
CONFIG_LAYOUT_MOTION_2 = 3  # motion groups in format 2 (the sender's since 2026-12-06)


class AudioCodec(IntEnum):
    NONE = 0
    OPUS = 1


@dataclass(frozen=True)
class StreamConfig:
    lowres: LowResParams = field(default_factory=LowResParams)
    canvas_size: int = CANVAS_SIZE
    audio_codec: AudioCodec = AudioCodec.OPUS
    audio_rate: int = AUDIO_RATE
    audio_bitrate: int = 8000
    motion: MotionParams | None = None  # None: no motion code in the stream


def encode_config(config: StreamConfig) -> bytes:
    lr = config.lowres
    quant_q = int(round(lr.quant * 4))
    chroma_q = int(round(lr.chroma_scale * 16))
    if quant_q / 4 != lr.quant or chroma_q / 16 != lr.chroma_scale:
        raise ValueError("quantiser must be a multiple of 1/4 and chroma scale of 1/16")
    mo = config.motion
    head = bytes([CONFIG_LAYOUT if mo is None else
                  CONFIG_LAYOUT_MOTION if mo.group_format == 1 else CONFIG_LAYOUT_MOTION_2])
    tail = b"" if mo is None else (
        bytes([mo.period_ms, int(round(mo.quant * 16)), mo.n_coeffs, mo.refresh_period])
        + mo.basis_id.to_bytes(4, "little"))
    return (
        head
        + encode_varint(config.canvas_size)
        + bytes([lr.size, lr.fps, quant_q, chroma_q])
        + encode_varint(lr.intra_period)
        + bytes([int(config.audio_codec)])
        + encode_varint(config.audio_rate)
        + encode_varint(config.audio_bitrate)
        + tail
    )


def decode_config(payload: bytes) -> StreamConfig:
    if not payload:
        raise TruncatedError("empty CONFIG payload")
    if payload[0] not in (CONFIG_LAYOUT, CONFIG_LAYOUT_MOTION, CONFIG_LAYOUT_MOTION_2):
        raise UnsupportedVersionError(f"CONFIG layout {payload[0]} (this decoder: {CONFIG_LAYOUT})")
    canvas, p = decode_varint(payload, 1, max_bytes=2)
    if p + 4 > len(payload):
        raise TruncatedError("CONFIG payload ends early")
    size, fps, quant_q, chroma_q = payload[p : p + 4]
    intra_period, p = decode_varint(payload, p + 4, max_bytes=2)
    if p >= len(payload):
        raise TruncatedError("CONFIG payload ends early")
    codec_id = payload[p]
    rate, p = decode_varint(payload, p + 1, max_bytes=3)
    bitrate, p = decode_varint(payload, p, max_bytes=3)
    motion = None
    if payload[0] in (CONFIG_LAYOUT_MOTION, CONFIG_LAYOUT_MOTION_2):
        if p + 8 > len(payload):
            raise TruncatedError("CONFIG payload ends inside the motion section")
        period, quant_m, n_coeffs, refresh = payload[p : p + 4]
        basis_id = int.from_bytes(payload[p + 4 : p + 8], "little")
        p += 8
        try:
            motion = MotionParams(period, quant_m / 16, n_coeffs, refresh, basis_id,
                                  group_format=1 if payload[0] == CONFIG_LAYOUT_MOTION else 2)
        except ValueError as exc:
            raise CorruptError(f"bad CONFIG motion value: {exc}") from None
    if p != len(payload):
        raise CorruptError(f"{len(payload) - p} trailing bytes in CONFIG payload")
    if canvas != CANVAS_SIZE:
        raise CorruptError(f"canvas size {canvas} (supported: {CANVAS_SIZE})")
    try:
        lowres = LowResParams(size, fps, quant_q / 4, chroma_q / 16, intra_period)
        audio_codec = AudioCodec(codec_id)
    except ValueError as exc:
        raise CorruptError(f"bad CONFIG value: {exc}") from None
    if audio_codec is AudioCodec.OPUS and rate not in (8000, 12000, 16000, 24000, 48000):
        raise CorruptError(f"audio rate {rate} Hz")
    if not 0 <= bitrate <= 512_000:
        raise CorruptError(f"audio bitrate {bitrate}")
    return StreamConfig(lowres, canvas, audio_codec, rate, bitrate, motion)
