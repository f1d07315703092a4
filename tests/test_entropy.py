"""The range coder: exact round trips, compact termination, bounded decoding of any bytes."""

from __future__ import annotations

import random

import pytest

from codec.bitstream.entropy import BitModel, RangeDecoder, RangeEncoder
from codec.errors import CorruptError


@pytest.mark.parametrize("seed", range(40))
def test_round_trip_mixed_symbols(seed: int) -> None:
    rng = random.Random(seed)
    p = rng.random()
    bits = [int(rng.random() < p) for _ in range(rng.randint(0, 600))]
    values = [rng.randint(0, 70000) for _ in range(rng.randint(0, 8))]
    enc, models = RangeEncoder(), [BitModel() for _ in range(4)]
    for i, b in enumerate(bits):
        enc.encode_bit(models[i % 4], b)
    for v in values:
        enc.encode_golomb(v, 1, [BitModel() for _ in range(3)])
    enc.encode_bits(0b1011, 4)
    data = enc.finish()
    dec, models = RangeDecoder(data), [BitModel() for _ in range(4)]
    assert [dec.decode_bit(models[i % 4]) for i in range(len(bits))] == bits
    assert [dec.decode_golomb(1, [BitModel() for _ in range(3)]) for _ in values] == values
    assert dec.decode_bits(4) == 0b1011


def test_predictable_bits_cost_almost_nothing() -> None:
    enc, m = RangeEncoder(), BitModel(0.5)
    for _ in range(200):
        enc.encode_bit(m, 0)
    assert len(enc.finish()) <= 1
    enc = RangeEncoder()
    for _ in range(64):
        enc.encode_bypass(1)
    assert 8 <= len(enc.finish()) <= 9  # 64 raw bits + at most one byte of termination


def test_skewed_source_approaches_its_entropy() -> None:
    rng = random.Random(7)
    bits = [int(rng.random() < 0.05) for _ in range(4000)]
    enc, m = RangeEncoder(), BitModel()
    for b in bits:
        enc.encode_bit(m, b)
    # entropy of p=0.05 is 0.286 bit/symbol -> 143 bytes; adaptive coding within 20%
    assert len(enc.finish()) < 1.2 * 143


def test_any_bytes_decode_boundedly() -> None:
    rng = random.Random(3)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 12)))
        dec = RangeDecoder(data)
        m = BitModel()
        for _ in range(100):
            dec.decode_bit(m)
        try:
            dec.decode_golomb(0)
        except CorruptError:
            pass
    with pytest.raises(CorruptError):
        RangeDecoder(b"\xff" * 16).decode_golomb(0)
