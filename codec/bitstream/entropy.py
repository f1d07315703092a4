"""A small adaptive binary range coder (LZMA-style) with a compact termination.

The low-resolution stream sends a few dozen bytes per frame, so the coder is tuned for
tiny messages rather than throughput:

- the first byte of an LZMA-style stream is always zero and is not written;
- at the end the encoder picks, inside its final interval, the value with the most
  trailing zero bits, and every trailing zero byte of the message is dropped; the decoder
  reads zeros past the end of its input. An all-zero (empty) message therefore costs
  zero bytes.

Because reads past the end yield zeros, the decoder never fails on short input: callers
bound the number of symbols they decode (they know the frame size), and ``Golomb``
prefixes are capped, so decoding is deterministic and bounded on any bytes.

Probabilities are 12-bit integers; ``BitModel`` adapts by 1/2**shift per coded bit. All
arithmetic is integer, so encoder and decoder agree on every machine.
"""

from __future__ import annotations

from codec.errors import CorruptError

PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF
MAX_GOLOMB_PREFIX = 24


class BitModel:
    """Adaptive probability that the next bit is 0."""

    __slots__ = ("p", "shift")

    def __init__(self, p0: float = 0.5, shift: int = 4) -> None:
        self.p = min(PROB_ONE - 32, max(32, int(round(p0 * PROB_ONE))))
        self.shift = shift

    def update(self, bit: int) -> None:
        if bit:
            self.p -= self.p >> self.shift
        else:
            self.p += (PROB_ONE - self.p) >> self.shift


class RangeEncoder:
    def __init__(self) -> None:
        self._low = 0
        self._range = _MASK32
        self._cache = 0
        self._cache_size = 1
        self._out = bytearray()

    def _shift_low(self) -> None:
        if self._low < 0xFF000000 or self._low > _MASK32:
            carry = self._low >> 32
            temp = self._cache
            while True:
                self._out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self._cache_size -= 1
                if self._cache_size == 0:
                    break
            self._cache = (self._low >> 24) & 0xFF
        self._cache_size += 1
        self._low = (self._low & 0x00FFFFFF) << 8

    def _code(self, p: int, bit: int) -> None:
        bound = (self._range >> PROB_BITS) * p
        if bit:
            self._low += bound
            self._range -= bound
        else:
            self._range = bound
        while self._range < _TOP:
            self._range <<= 8
            self._shift_low()

    def encode_bit(self, model: BitModel, bit: int) -> None:
        bit = 1 if bit else 0
        self._code(model.p, bit)
        model.update(bit)

    def encode_bypass(self, bit: int) -> None:
        self._code(PROB_ONE >> 1, 1 if bit else 0)

    def encode_bits(self, value: int, n: int) -> None:
        """n raw bits of a non-negative value, most significant first."""
        for i in range(n - 1, -1, -1):
            self.encode_bypass((value >> i) & 1)

    def encode_golomb(self, value: int, k: int = 0, prefix: list[BitModel] | None = None) -> None:
        """Exp-Golomb code of order k for value >= 0; prefix bits may use adaptive models."""
        if value < 0:
            raise ValueError("Exp-Golomb value must be non-negative")
        v = value + (1 << k)
        n = v.bit_length() - 1 - k  # number of prefix ones
        if n > MAX_GOLOMB_PREFIX:
            raise ValueError(f"value {value} too large to code")
        for i in range(n + 1):
            bit = 1 if i < n else 0
            if prefix is not None:
                self.encode_bit(prefix[min(i, len(prefix) - 1)], bit)
            else:
                self.encode_bypass(bit)
        self.encode_bits(v - (1 << (n + k)), n + k)

    def finish(self) -> bytes:
        # Choose the value in [low, low + range) with the most trailing zero bits.
        hi = self._low + self._range - 1
        for k in range(32, -1, -1):
            mask = (1 << k) - 1
            v = (self._low + mask) & ~mask
            if v <= hi:
                self._low = v
                break
        for _ in range(5):
            self._shift_low()
        out = bytes(self._out[1:])  # the first byte is always zero
        return out.rstrip(b"\x00")


class RangeDecoder:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._range = _MASK32
        self._code = 0
        for _ in range(4):
            self._code = (self._code << 8) | self._next()

    def _next(self) -> int:
        if self._pos < len(self._data):
            b = self._data[self._pos]
            self._pos += 1
            return b
        self._pos += 1
        return 0

    @property
    def overrun(self) -> int:
        """How many bytes were read past the end of the input (zeros were used)."""
        return max(0, self._pos - len(self._data))

    def _decode(self, p: int) -> int:
        bound = (self._range >> PROB_BITS) * p
        if self._code < bound:
            self._range = bound
            bit = 0
        else:
            self._code -= bound
            self._range -= bound
            bit = 1
        while self._range < _TOP:
            self._range <<= 8
            self._code = ((self._code << 8) | self._next()) & _MASK32
        return bit

    def decode_bit(self, model: BitModel) -> int:
        bit = self._decode(model.p)
        model.update(bit)
        return bit

    def decode_bypass(self) -> int:
        return self._decode(PROB_ONE >> 1)

    def decode_bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self._decode(PROB_ONE >> 1)
        return v

    def decode_golomb(self, k: int = 0, prefix: list[BitModel] | None = None) -> int:
        n = 0
        while True:
            if prefix is not None:
                bit = self.decode_bit(prefix[min(n, len(prefix) - 1)])
            else:
                bit = self.decode_bypass()
            if not bit:
                break
            n += 1
            if n > MAX_GOLOMB_PREFIX:
                raise CorruptError("entropy-coded value out of range")
        return (1 << (n + k)) - (1 << k) + self.decode_bits(n + k)
