"""The motion code on the wire: anchors, and groups of quantised, predicted samples.

One **sample** per code period (40 ms at 25 fps by default; 80 and 200 ms are settings)
says where the face's 68 landmarks are, as a pose and K expression coefficients
(``motion_basis.py``), or that the sender could not measure the face (``confident`` off;
the receiver then falls back to the 8x8 frames and the speech).

Samples travel in **groups**, one per 8x8 frame: the samples whose time falls after the
previous group's and at or before the 8x8 frame's, bundled into that frame's LOWRES packet
(``PacketFlag.MOTION``; ``docs/BITSTREAM.md``), so the code pays no packet header of its own.

Group payload, format 2 (CONFIG layout 3, the default since 2026-12-06)::

    range coded (``entropy.py``), models reset per group:
               refresh bit (predicted from the anchor only),
               timing: in a group that continues the one before (it rides the LOWRES
               packet whose sequence number follows that group's packet's), one bit "as
               the grid predicts" (the samples continue every ``period_ms`` from the
               previous group's last sample, up to the group's time); otherwise, and in
               every refresh group, n samples and the offset of the last sample before
               the group's time (ms) as below,
               then as in format 1 from the confidence bits on.

Format 1 (CONFIG layout 2; still decoded)::

    byte 0     bit 7: refresh (predicted from the anchor only); bits 0-6: group counter
    the rest   range coded (``entropy.py``), models reset per group:
               n samples, offset of the last sample before the group's time (ms),
               a confidence bit per sample,
               the key sample (the last confident one): residual against the previous
               group's key (or, in a refresh group, against the anchor's pose with a
               neutral expression),
               every other confident sample: residual against the linear interpolation
               between the previous key and this one.

Values are quantised with uniform steps (pose scale terms, pose shifts in pixels,
coefficients in template units; all times ``quant``), and each residual is a zero flag,
a sign and an Exp-Golomb magnitude with adaptive prefix bits, in contexts per value kind.
Format 2 drops format 1's header byte: the group counter repeated the LOWRES packet's
sequence number, and the timing it coded explicitly is the grid's in all but refresh
groups (together ~0.05 kbit/s of the code's ~0.6 at 12.5 samples/s; BENCHMARKS.md).
A decoder that misses a group (the counter, or the LOWRES sequence number, skips) or meets
a corrupt one outputs nothing until the next refresh group, which the sender sends every ``refresh_period`` groups and
after a receiver's loss report.

The **anchor** (``MOTION`` packet, sub-type 0) is the identity frame's 68 landmarks to 1/8
pixel, sent with each identity frame through the reliable path; groups are decoded relative
to it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from codec.bitstream.entropy import BitModel, RangeDecoder, RangeEncoder
from codec.bitstream.motion_basis import MotionBasis, Pose
from codec.bitstream.packet import decode_varint, encode_varint
from codec.errors import CorruptError, TruncatedError

ANCHOR_TYPE = 0
GROUP_TYPE = 1
ANCHOR_SCALE = 8.0  # anchor points in 1/8 pixel
MAX_SAMPLES = 15  # per group
MAX_LEVEL = 1 << 16
_N_POSE = 8  # the face's pose (4) and the background's similarity (4)
# Base quantiser steps: pose scale terms (a, b: template unit -> pixels), shifts (pixels),
# expression coefficients (template units, ~1/50 of the eye distance per 0.02).
POSE_SCALE_STEP = 0.04
POSE_SHIFT_STEP = 0.25
BG_SCALE_STEP = 0.0008  # background similarity: a - 1 and b (0.1 px at the canvas edge)
BG_SHIFT_STEP = 0.125
COEFF_STEP = 0.006
PERIODS_MS = (40, 80, 200)
GROUP_FORMATS = (1, 2)
SEQ_MODULO = 1 << 16  # the packet header's sequence numbers (packet.py)


@dataclass(frozen=True)
class MotionParams:
    period_ms: int = 80  # 12.5 samples/s; 40 (25/s) and 200 (5/s) are settings
    quant: float = 6.0  # multiplies every step; a multiple of 1/16
    n_coeffs: int = 16
    refresh_period: int = 10  # groups between refresh groups (2 s at 5 groups/s)
    basis_id: int = 0
    group_format: int = 2  # 2: compact (CONFIG layout 3); 1: header byte (layout 2)

    def __post_init__(self) -> None:
        if self.period_ms not in PERIODS_MS:
            raise ValueError(f"code period {self.period_ms} ms (supported: {PERIODS_MS})")
        if not 1 / 16 <= self.quant <= 15.9375 or round(self.quant * 16) != self.quant * 16:
            raise ValueError(f"code quantiser {self.quant}: a multiple of 1/16 in [1/16, 16)")
        if not 1 <= self.n_coeffs <= 64:
            raise ValueError(f"{self.n_coeffs} expression coefficients (1-64)")
        if not 1 <= self.refresh_period <= 255:
            raise ValueError("refresh period must be 1-255 groups")
        if not 0 <= self.basis_id < 1 << 32:
            raise ValueError("basis id must fit 32 bits")
        if self.group_format not in GROUP_FORMATS:
            raise ValueError(f"motion group format {self.group_format} "
                             f"(supported: {GROUP_FORMATS})")

    @property
    def fps(self) -> float:
        return 1000.0 / self.period_ms

    def steps(self) -> np.ndarray:
        s = np.full(_N_POSE + self.n_coeffs, COEFF_STEP)
        s[:2] = POSE_SCALE_STEP
        s[2:4] = POSE_SHIFT_STEP
        s[4:6] = BG_SCALE_STEP
        s[6:8] = BG_SHIFT_STEP
        return s * self.quant


@dataclass(frozen=True)
class MotionSample:
    """Decoded motion at one time: the face's (68, 2) landmarks in canvas pixels, or None
    (not confident), and the background's 2x3 similarity from the identity frame's pixels
    to this frame's (None: held still)."""

    timestamp_ms: int
    points: np.ndarray | None
    background: np.ndarray | None = None


def _bg_values(m: np.ndarray | None) -> np.ndarray:
    if m is None:
        return np.zeros(4)
    m = np.asarray(m, np.float64)
    return np.array([0.5 * (m[0, 0] + m[1, 1]) - 1.0, 0.5 * (m[1, 0] - m[0, 1]), m[0, 2], m[1, 2]])


def _bg_matrix(v: np.ndarray) -> np.ndarray:
    a, b, tx, ty = 1.0 + v[0], v[1], v[2], v[3]
    return np.array([[a, -b, tx], [b, a, ty]])


Sample = tuple  # (time ms, points or None) or (time ms, points or None, background or None)


# ---- anchor --------------------------------------------------------------------------------
def quantise_anchor(points: np.ndarray) -> np.ndarray:
    q = np.rint(np.asarray(points, np.float64) * ANCHOR_SCALE)
    return np.clip(q, -32768, 32767) / ANCHOR_SCALE


def encode_anchor(refresh_id: int, basis_id: int, points: np.ndarray) -> bytes:
    q = np.clip(np.rint(np.asarray(points, np.float64) * ANCHOR_SCALE), -32768, 32767)
    return (bytes([ANCHOR_TYPE, refresh_id & 0xFF]) + struct.pack("<I", basis_id)
            + q.astype("<i2").tobytes())


def decode_anchor(payload: bytes) -> tuple[int, int, np.ndarray]:
    """(refresh id, basis id, (68, 2) points) of an anchor payload."""
    if len(payload) < 6:
        raise TruncatedError("anchor payload ends early")
    if payload[0] != ANCHOR_TYPE:
        raise CorruptError(f"motion payload type {payload[0]} is not an anchor")
    body = payload[6:]
    if len(body) != 68 * 2 * 2:
        raise CorruptError(f"anchor has {len(body)} bytes of points, not {68 * 4}")
    pts = np.frombuffer(body, "<i2").astype(np.float64).reshape(68, 2) / ANCHOR_SCALE
    eyes = float(np.linalg.norm(pts[45] - pts[36]))
    if not 4.0 <= eyes <= 2048.0 or float(np.ptp(pts[:, 1])) < 4.0:
        raise CorruptError("anchor is not a face (degenerate landmarks)")
    return payload[1], struct.unpack("<I", payload[2:6])[0], pts


# ---- shared state of both ends ----------------------------------------------------------
class _Models:
    """The adaptive bit models of one group, starting from the priors the basis file
    carries (fitted on train by ``training/fit_motion_basis.py``; 0.5 without them)."""

    def __init__(self, n_values: int, priors: dict[str, np.ndarray] | None = None) -> None:
        pr = priors or {}

        def models(name: str, shape: tuple[int, ...], default: float) -> list:
            table = pr.get(name)
            flat = [BitModel(float(table.flat[i]) if table is not None and table.size > i
                             else default, SHIFT) for i in range(int(np.prod(shape)))]
            if len(shape) == 1:
                return flat
            return [flat[i * shape[1] : (i + 1) * shape[1]] for i in range(shape[0])]

        self.zero = [models(f"zero{k}", (n_values,), 0.7) for k in (0, 1)]
        self.mag = [models(f"mag{k}", (n_values, N_PREFIX), 0.5) for k in (0, 1)]
        self.empty = models("empty", (2,), 0.7)  # kind: all residuals of a sample zero
        self.conf = BitModel(float(pr["conf"][0]) if "conf" in pr else 0.95, SHIFT)
        self.count = models("count", (N_PREFIX,), 0.5)
        self.offset = models("offset", (N_PREFIX,), 0.9)
        # Format 2: refresh (1 group in ``refresh_period``), timing as the grid predicts.
        self.refresh = BitModel(0.9, SHIFT)
        self.timing = BitModel(0.95, SHIFT)


SHIFT = 5
N_PREFIX = 6


def _deadzone(r: np.ndarray, rounding: float) -> np.ndarray:
    """Quantise residuals (in steps) toward zero: |level| = floor(|r| + rounding)."""
    return (np.sign(r) * np.floor(np.abs(r) + rounding)).astype(np.int64)


def _encode_residual(enc: RangeEncoder, m: _Models, kind: int, r: np.ndarray) -> None:
    nonzero = bool(np.any(r))
    enc.encode_bit(m.empty[kind], int(nonzero))
    if not nonzero:
        return
    for i, v in enumerate(r.tolist()):
        enc.encode_bit(m.zero[kind][i], int(v != 0))
        if v:
            enc.encode_golomb(abs(v) - 1, 0, m.mag[kind][i])
            enc.encode_bypass(int(v < 0))


def _decode_residual(dec: RangeDecoder, m: _Models, kind: int, n: int) -> np.ndarray:
    out = np.zeros(n, np.int64)
    if not dec.decode_bit(m.empty[kind]):
        return out
    for i in range(n):
        if dec.decode_bit(m.zero[kind][i]):
            a = 1 + dec.decode_golomb(0, m.mag[kind][i])
            if a > MAX_LEVEL:
                raise CorruptError("motion residual out of range")
            out[i] = -a if dec.decode_bypass() else a
    return out


class _Coder:
    """What encoder and decoder share: the anchor, the basis and the last key sample."""

    def __init__(self, params: MotionParams, basis: MotionBasis) -> None:
        if basis.n_coeffs < params.n_coeffs:
            raise ValueError(f"basis has {basis.n_coeffs} coefficients, code wants "
                             f"{params.n_coeffs}")
        self.params = params
        self.basis = basis
        self.steps = params.steps()
        # Samples between two keys code the pose and the strongest half of the expression
        # (jaw and lips); the finer coefficients are interpolated between the keys.
        self.n_between = _N_POSE + (params.n_coeffs + 1) // 2
        self.anchor: np.ndarray | None = None
        self.anchor_norm: np.ndarray | None = None
        self.anchor_levels: np.ndarray | None = None
        self.ref: tuple[int, np.ndarray] | None = None  # (time ms, levels) of the last key
        self.counter = 0
        # Format 2: the LOWRES sequence number of the last group coded, and the time of
        # its last sample (the grid the next group's timing is predicted from).
        self.last_seq: int | None = None
        self.last_t: int | None = None

    def new_models(self) -> _Models:
        return _Models(len(self.steps), self.basis.priors)

    def set_anchor(self, points: np.ndarray) -> None:
        self.anchor = quantise_anchor(points)
        self.anchor_norm = self.basis.normalise(self.anchor)
        pose = self.basis.pose_of(self.anchor)
        vals = np.concatenate([pose.as_array(), np.zeros(4 + self.params.n_coeffs)])
        self.anchor_levels = np.rint(vals / self.steps).astype(np.int64)
        self.ref = None
        self.last_seq = self.last_t = None  # format 2: the next group is a refresh group

    def values_of(self, points: np.ndarray, background: np.ndarray | None) -> np.ndarray:
        """The code's values in quantiser steps (not yet rounded)."""
        assert self.anchor_norm is not None
        pose, coeffs = self.basis.analyse(points, self.anchor_norm, self.params.n_coeffs)
        vals = np.concatenate([pose.as_array(), _bg_values(background), coeffs]) / self.steps
        return np.clip(vals, -MAX_LEVEL, MAX_LEVEL)

    def points_of(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(68, 2) landmarks and the background's 2x3 matrix of these levels."""
        assert self.anchor_norm is not None
        v = levels * self.steps
        pts = self.basis.synthesise(Pose(*v[:4]), v[_N_POSE:], self.anchor_norm)
        return pts, _bg_matrix(v[4:8])

    def continues(self, seq: int | None) -> bool:
        """A group riding LOWRES packet ``seq`` follows the last one coded directly."""
        return (seq is not None and self.last_seq is not None
                and seq == (self.last_seq + 1) % SEQ_MODULO)

    def predicted_timing(self, ts_ms: int) -> tuple[int, int] | None:
        """(n, offset) if the samples go on every period from the last group's last one."""
        if self.last_t is None or ts_ms < self.last_t:
            return None
        n = (ts_ms - self.last_t) // self.params.period_ms
        if n > MAX_SAMPLES:
            return None
        return n, ts_ms - self.last_t - n * self.params.period_ms

    def times(self, ts_ms: int, n: int, offset: int) -> list[int]:
        last = ts_ms - offset
        return [last - (n - 1 - j) * self.params.period_ms for j in range(n)]

    def prediction(self, key: np.ndarray, key_t: int, t: int) -> np.ndarray:
        if self.ref is None or key_t <= self.ref[0]:
            return key
        rt, rv = self.ref
        w = (t - rt) / (key_t - rt)
        return np.rint(rv + w * (key - rv)).astype(np.int64)


class MotionEncoder(_Coder):
    """Sender side: ``encode_group(ts_ms, samples)`` -> the group payload."""

    def __init__(self, params: MotionParams, basis: MotionBasis, *,
                 deadzone: float = 0.3) -> None:
        super().__init__(params, basis)
        self.deadzone = deadzone  # rounding offset towards zero (0.5 = plain rounding)
        self._force_refresh = True

    def force_refresh(self) -> None:
        self._force_refresh = True

    def encode_group(self, ts_ms: int, samples: list[Sample], seq: int | None = None) -> bytes:
        """``samples``: (time ms, (68, 2) points or None[, background 2x3 or None]), times
        ascending on the code grid and at or before ``ts_ms``; ``seq``: the sequence
        number of the LOWRES packet the group rides (None: a MOTION packet of its own,
        always a refresh group in format 2). Returns the payload."""
        if self.anchor is None:
            raise RuntimeError("set the anchor first")
        compact = self.params.group_format == 2
        samples = samples[-MAX_SAMPLES:]
        refresh = self._force_refresh or self.counter % self.params.refresh_period == 0
        if compact and not self.continues(seq):
            refresh = True
        self._force_refresh = False
        if refresh:
            self.ref = (-(1 << 30), self.anchor_levels) if self.anchor_levels is not None else None
        enc = RangeEncoder()
        m = self.new_models()
        n = len(samples)
        offset = max(0, ts_ms - samples[-1][0]) if samples else 0
        explicit = True
        if compact:
            enc.encode_bit(m.refresh, int(refresh))
            if not refresh:
                explicit = self.predicted_timing(ts_ms) != (n, offset)
                enc.encode_bit(m.timing, int(explicit))
        if explicit:
            enc.encode_golomb(n, 0, m.count)
            enc.encode_golomb(offset, 0, m.offset)
        conf = [sm[1] is not None for sm in samples]
        for c in conf:
            enc.encode_bit(m.conf, int(not c))
        values = {j: self.values_of(sm[1], sm[2] if len(sm) > 2 else None)
                  for j, sm in enumerate(samples) if sm[1] is not None}
        times = self.times(ts_ms, n, max(0, offset))  # as the decoder will place them
        if values:
            k = max(values)
            base = self.ref[1] if self.ref is not None else np.zeros(len(self.steps), np.int64)
            res = _deadzone(values[k] - base, self.deadzone)
            _encode_residual(enc, m, 0, res)
            key = base + res
            for j in sorted(values):
                if j != k:
                    pred = self.prediction(key, times[k], times[j])
                    res = _deadzone(values[j] - pred, self.deadzone)[: self.n_between]
                    _encode_residual(enc, m, 1, res)
            self.ref = (times[k], key)
        if n:
            self.last_t = ts_ms - offset
        self.last_seq = seq
        header = (0x80 if refresh else 0) | (self.counter & 0x7F)
        self.counter = (self.counter + 1) % 128
        if compact:
            return enc.finish()
        return bytes([header]) + enc.finish()



class MotionDecoder(_Coder):
    """Receiver side: group payloads in stream order -> decoded samples."""

    def __init__(self, params: MotionParams, basis: MotionBasis) -> None:
        super().__init__(params, basis)
        self._expect: int | None = None
        self.lost = 0
        self.corrupt = 0

    def set_anchor(self, points: np.ndarray) -> None:
        super().set_anchor(points)
        self._expect = None

    def decode_group(self, ts_ms: int, payload: bytes,
                     seq: int | None = None) -> list[MotionSample]:
        """The samples of one group; ``seq``: the sequence number of the LOWRES packet it
        rode (None: a MOTION packet of its own)."""
        if self.params.group_format == 2:
            return self._decode_compact(ts_ms, payload, seq)
        if not payload:
            raise TruncatedError("empty motion group")
        if self.anchor is None:
            return []
        refresh, counter = bool(payload[0] & 0x80), payload[0] & 0x7F
        if refresh:
            self.ref = (-(1 << 30), self.anchor_levels) if self.anchor_levels is not None else None
        elif self._expect is None or counter != self._expect:
            if self._expect is not None:
                self.lost += 1
            self._expect = None  # wait for a refresh group
            return []
        try:
            out = self._decode(ts_ms, payload[1:])
        except CorruptError:
            self.corrupt += 1
            self._expect = None
            raise
        self._expect = (counter + 1) % 128
        return out

    def _decode_compact(self, ts_ms: int, payload: bytes,
                        seq: int | None) -> list[MotionSample]:
        """Format 2: continuity from the LOWRES sequence numbers, the timing predicted."""
        if not payload:
            raise TruncatedError("empty motion group")
        if self.anchor is None:
            return []
        continues = self.continues(seq)
        dec = RangeDecoder(payload)
        m = self.new_models()
        refresh = bool(dec.decode_bit(m.refresh))
        if not refresh and not continues:
            if self.last_seq is not None:
                self.lost += 1
            self.last_seq = None  # wait for a refresh group
            return []
        if refresh:
            self.ref = (-(1 << 30), self.anchor_levels) if self.anchor_levels is not None else None
        timing = None if refresh or dec.decode_bit(m.timing) else self.predicted_timing(ts_ms)
        try:
            out = self._decode_samples(dec, m, ts_ms, timing)
        except CorruptError:
            self.corrupt += 1
            self.last_seq = None
            raise
        self.last_seq = seq
        return out

    def _decode(self, ts_ms: int, data: bytes) -> list[MotionSample]:
        """Format 1's range-coded message (after its header byte)."""
        dec, m = RangeDecoder(data), self.new_models()
        return self._decode_samples(dec, m, ts_ms, None)

    def _decode_samples(self, dec: RangeDecoder, m: _Models, ts_ms: int,
                        timing: tuple[int, int] | None) -> list[MotionSample]:
        """The group from its timing on: (n, offset) as predicted, or None: coded here."""
        if timing is not None:
            n, offset = timing
        else:
            n = dec.decode_golomb(0, m.count)
            if n > MAX_SAMPLES:
                raise CorruptError(f"motion group of {n} samples")
            offset = dec.decode_golomb(0, m.offset)
        if offset > 10_000:
            raise CorruptError("motion group offset out of range")
        conf = [not dec.decode_bit(m.conf) for _ in range(n)]
        times = self.times(ts_ms, n, offset)
        out: list[MotionSample] = [MotionSample(t, None) for t in times]
        idx = [j for j in range(n) if conf[j]]
        if idx:
            k = idx[-1]
            base = self.ref[1] if self.ref is not None else np.zeros(len(self.steps), np.int64)
            key = base + _decode_residual(dec, m, 0, len(self.steps))
            levels = {k: key}
            for j in idx[:-1]:
                r = np.zeros(len(self.steps), np.int64)
                r[: self.n_between] = _decode_residual(dec, m, 1, self.n_between)
                levels[j] = self.prediction(key, times[k], times[j]) + r
            self.ref = (times[k], key)
            for j, lv in levels.items():
                pts, bg = self.points_of(lv)
                if not (np.isfinite(pts).all() and np.isfinite(bg).all()) or \
                        np.abs(pts).max() > 4096 or np.abs(bg).max() > 4096:
                    raise CorruptError("motion sample decodes off the canvas")
                out[j] = MotionSample(times[j], pts.astype(np.float32), bg)
        if n:
            self.last_t = ts_ms - offset
        return out


# ---- bundling with the 8x8 frame -------------------------------------------------------
def bundle(lowres_payload: bytes, group: bytes) -> bytes:
    """A LOWRES payload carrying a motion group (the packet gets ``PacketFlag.MOTION``)."""
    return encode_varint(len(lowres_payload)) + lowres_payload + group


def unbundle(payload: bytes) -> tuple[bytes, bytes]:
    """(8x8 frame payload, motion group) of a LOWRES payload with ``PacketFlag.MOTION``."""
    n, p = decode_varint(payload, 0, max_bytes=3)
    if p + n > len(payload):
        raise TruncatedError("bundled 8x8 frame runs past the packet")
    return bytes(payload[p : p + n]), bytes(payload[p + n :])
