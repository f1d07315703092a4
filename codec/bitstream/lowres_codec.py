"""The low-resolution stream codec: 8x8 (16x16, 32x32) RGB frames at a few fps, in bytes.

Per frame: the residual against a prediction (mid-grey for intra frames, the previous
*decoded* frame for inter frames) goes through a YCoCg colour transform and a full-frame
orthonormal DCT per channel, dead-zone quantisation (chroma coarser), and adaptive binary
range coding of the levels (coded-block flag, significance / last flags by scan position,
greater-than-one/two flags, Exp-Golomb remainders, bypass signs).

The decoder is integer-only (fixed-point DCT, pixels kept as 1/16 units), so sender and
receiver reconstruct the same pixels on every machine and inter prediction never drifts.
The adaptive probabilities restart at every intra frame and carry over the inter frames
that follow it, which costs nothing extra in robustness: an inter frame already needs
every frame since the last intra. Loss handling lives in ``LowResStreamDecoder``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec.bitstream.entropy import BitModel, RangeDecoder, RangeEncoder
from codec.bitstream.lowres_priors import PRIORS, SHIFT
from codec.errors import CorruptError

PIX_SCALE = 16  # decoded pixels are integers in 1/16 of a grey level
_DCT_BITS = 14
MAX_LEVEL = 1 << 14
SUPPORTED_SIZES = (8, 16, 32)
_N_BUCKETS = 16


@dataclass(frozen=True)
class LowResParams:
    """What encoder and decoder must agree on (carried by the CONFIG packet)."""

    size: int = 8
    fps: int = 5
    quant: float = 6.0  # luma quantiser step in grey levels (DCT domain)
    chroma_scale: float = 1.0  # chroma step = quant * chroma_scale
    intra_period: int = 10  # frames between intra frames (2 s at 5 fps)

    def __post_init__(self) -> None:
        if self.size not in SUPPORTED_SIZES:
            raise ValueError(f"low-res size must be one of {SUPPORTED_SIZES}, not {self.size}")
        if not 1 <= self.fps <= 30:
            raise ValueError(f"low-res fps {self.fps} out of range 1..30")
        if not 0.25 <= self.quant <= 64:
            raise ValueError(f"quantiser {self.quant} out of range 0.25..64")
        if not 0.5 <= self.chroma_scale <= 8:
            raise ValueError(f"chroma scale {self.chroma_scale} out of range 0.5..8")
        if not 1 <= self.intra_period <= 1000:
            raise ValueError(f"intra period {self.intra_period} out of range 1..1000")

    def steps(self) -> np.ndarray:
        """Integer quantiser steps per YCoCg channel, in 1/16 grey levels."""
        y = max(1, int(round(self.quant * PIX_SCALE)))
        c = max(1, int(round(self.quant * self.chroma_scale * PIX_SCALE)))
        return np.array([y, c, c], dtype=np.int64)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def _scan_order(n: int) -> np.ndarray:
    """Diagonal (zig-zag-like) scan: flat indices sorted by frequency."""
    idx = sorted((i + j, i if (i + j) % 2 else j, i * n + j) for i in range(n) for j in range(n))
    return np.array([t[2] for t in idx], dtype=np.int64)


_TABLES: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _tables(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if n not in _TABLES:
        c = _dct_matrix(n)
        _TABLES[n] = (c, np.round(c * (1 << _DCT_BITS)).astype(np.int64), _scan_order(n))
    return _TABLES[n]


def _round_shift(x: np.ndarray, bits: int) -> np.ndarray:
    return (x + (1 << (bits - 1))) >> bits


def dequantise(levels: np.ndarray, params: LowResParams) -> np.ndarray:
    """Levels (3, s, s) in YCoCg DCT domain -> RGB residual (s, s, 3), int64, 1/16 units."""
    _, ci, _ = _tables(params.size)
    coef = levels.astype(np.int64) * params.steps()[:, None, None]
    spatial = _round_shift(np.einsum("ki,ckl->cil", ci, coef), _DCT_BITS)
    spatial = _round_shift(np.einsum("cil,lj->cij", spatial, ci), _DCT_BITS)
    y, co, cg = spatial
    return np.stack([y + co - cg, y + cg, y - co - cg], axis=-1)


def _reconstruct(pred: np.ndarray, levels: np.ndarray, params: LowResParams) -> np.ndarray:
    return np.clip(pred + dequantise(levels, params), 0, 255 * PIX_SCALE)


def _grey(size: int) -> np.ndarray:
    return np.full((size, size, 3), 128 * PIX_SCALE, dtype=np.int64)


class _Models:
    """Adaptive probabilities, one set for intra and one for inter frames, starting from
    the priors fitted on the train split (``lowres_priors.py``; part of the format)."""

    def __init__(self) -> None:
        self.sets = [self._new_set(intra) for intra in (False, True)]

    @staticmethod
    def _new_set(intra: bool) -> dict[str, list[list[BitModel]]]:
        priors = PRIORS["intra" if intra else "inter"]

        def grid(name: str, n: int) -> list[list[BitModel]]:
            rows = priors.get(name)
            return [[BitModel(rows[ch][i] if rows else 0.5, SHIFT) for i in range(n)]
                    for ch in range(3)]

        return {"cbf": grid("cbf", 1), "sig": grid("sig", _N_BUCKETS),
                "last": grid("last", _N_BUCKETS), "gt1": grid("gt1", 4), "gt2": grid("gt2", 4),
                "rem": grid("rem", 6)}


def _bucket(i: int) -> int:
    return min(i, _N_BUCKETS - 1)


def _encode_levels(enc: RangeEncoder, models: _Models, levels: np.ndarray, intra: bool) -> None:
    m = models.sets[intra]
    scan = _tables(levels.shape[1])[2]
    for ch in range(3):
        seq = levels[ch].reshape(-1)[scan]
        nz = np.flatnonzero(seq)
        enc.encode_bit(m["cbf"][ch][0], int(nz.size > 0))
        if nz.size == 0:
            continue
        last = int(nz[-1])
        for i in range(last + 1):
            v = int(seq[i])
            b = _bucket(i)
            enc.encode_bit(m["sig"][ch][b], int(v != 0))
            if v == 0:
                continue
            enc.encode_bit(m["last"][ch][b], int(i == last))
            _encode_magnitude(enc, m, ch, min(i, 3), abs(v))
            enc.encode_bypass(int(v < 0))
            if i == last:
                break


def _encode_magnitude(enc: RangeEncoder, m: dict, ch: int, ctx: int, a: int) -> None:
    enc.encode_bit(m["gt1"][ch][ctx], int(a > 1))
    if a > 1:
        enc.encode_bit(m["gt2"][ch][ctx], int(a > 2))
        if a > 2:
            enc.encode_golomb(a - 3, 0, m["rem"][ch])


def _decode_levels(dec: RangeDecoder, models: _Models, size: int, intra: bool) -> np.ndarray:
    m = models.sets[intra]
    scan = _tables(size)[2]
    n = size * size
    levels = np.zeros((3, n), dtype=np.int64)
    for ch in range(3):
        if not dec.decode_bit(m["cbf"][ch][0]):
            continue
        seq = np.zeros(n, dtype=np.int64)
        for i in range(n):
            b = _bucket(i)
            if not dec.decode_bit(m["sig"][ch][b]):
                continue
            is_last = dec.decode_bit(m["last"][ch][b])
            a = 1
            ctx = min(i, 3)
            if dec.decode_bit(m["gt1"][ch][ctx]):
                a = 2
                if dec.decode_bit(m["gt2"][ch][ctx]):
                    a = 3 + dec.decode_golomb(0, m["rem"][ch])
            if a > MAX_LEVEL:
                raise CorruptError("low-res level out of range")
            seq[i] = -a if dec.decode_bypass() else a
            if is_last:
                break
        levels[ch, scan] = seq
    return levels.reshape(3, size, size)


class LowResEncoder:
    """Stateful encoder: ``encode(pixels)`` -> (payload, is_intra)."""

    def __init__(self, params: LowResParams | None = None, *, deadzone: float = 0.3) -> None:
        self.params = params or LowResParams()
        self.deadzone = deadzone  # rounding offset (0.5 = plain rounding)
        self._recon: np.ndarray | None = None
        self._models = _Models()
        self._since_intra = 0

    def force_intra(self) -> None:
        self._recon = None

    def encode(self, pixels: np.ndarray) -> tuple[bytes, bool]:
        s = self.params.size
        x = np.asarray(pixels, dtype=np.float64)
        if x.shape != (s, s, 3):
            raise ValueError(f"low-res frame must be ({s}, {s}, 3), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("low-res frame has non-finite values")
        intra = self._recon is None or self._since_intra >= self.params.intra_period
        if intra:
            self._models = _Models()
            self._since_intra = 0
            pred = _grey(s)
        else:
            assert self._recon is not None
            pred = self._recon
        levels = self._quantise(np.clip(x, 0, 255) - pred / PIX_SCALE, intra)
        enc = RangeEncoder()
        _encode_levels(enc, self._models, levels, intra)
        self._recon = _reconstruct(pred, levels, self.params)
        self._since_intra += 1
        return enc.finish(), intra

    def reconstruction(self) -> np.ndarray:
        """The last decoded frame as the decoder sees it, float32 (s, s, 3)."""
        if self._recon is None:
            raise RuntimeError("nothing encoded yet")
        return (self._recon / PIX_SCALE).astype(np.float32)

    def _quantise(self, residual: np.ndarray, intra: bool) -> np.ndarray:
        c, _, _ = _tables(self.params.size)
        r, g, b = residual[..., 0], residual[..., 1], residual[..., 2]
        ycocg = np.stack([(r + 2 * g + b) / 4, (r - b) / 2, (-r + 2 * g - b) / 4])
        coef = np.einsum("ki,cij,lj->ckl", c, ycocg, c) * PIX_SCALE
        q = np.abs(coef) / self.params.steps()[:, None, None]
        offset = 0.5 if intra else self.deadzone
        levels = np.floor(q + offset).astype(np.int64)
        return np.sign(coef).astype(np.int64) * np.minimum(levels, MAX_LEVEL)


class LowResDecoder:
    """Strict in-order decoder of payloads; see ``LowResStreamDecoder`` for loss handling."""

    def __init__(self, params: LowResParams | None = None) -> None:
        self.params = params or LowResParams()
        self._recon: np.ndarray | None = None
        self._models = _Models()

    @property
    def has_reference(self) -> bool:
        return self._recon is not None

    def reset(self) -> None:
        self._recon = None

    def decode(self, payload: bytes, intra: bool) -> np.ndarray:
        """Decode one frame; returns float32 (s, s, 3) in [0, 255]."""
        if intra:
            models = _Models()
            pred = _grey(self.params.size)
        else:
            if self._recon is None:
                raise CorruptError("inter frame without a reference frame")
            models = self._models
            pred = self._recon
        dec = RangeDecoder(payload)
        levels = _decode_levels(dec, models, self.params.size, intra)
        self._models = models
        self._recon = _reconstruct(pred, levels, self.params)
        return (self._recon / PIX_SCALE).astype(np.float32)
