"""codec/audio/opus.py: real libopus at low bitrates, timing, loss and garbage packets."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.audio.opus import DECODER_DELAY_MS, FRAME_MS, OpusDecoder, OpusEncoder
from codec.sender.video_io import read_audio
from codec.types import AudioChunk
from tests._media import data_dir, manifest

RATE = 16000


@lru_cache(maxsize=1)
def val_speech(seconds: float = 10.0) -> np.ndarray:
    """10 s of real speech: val clips with speech, concatenated."""
    parts, total = [], 0
    for row in manifest():
        if row["split"] != "val" or row["speech"] != "yes":
            continue
        pcm = read_audio(data_dir() / row["file"])
        if pcm is not None:
            parts.append(pcm)
            total += len(pcm)
        if total >= seconds * RATE:
            break
    if total < seconds * RATE:
        pytest.skip(f"shared data with speech not found at {data_dir()}")
    pcm = np.concatenate(parts)[: int(seconds * RATE)]
    pcm.setflags(write=False)
    return pcm


def encode_all(pcm: np.ndarray, bitrate: int = 8000) -> list[tuple[bytes, int]]:
    enc = OpusEncoder(bitrate=bitrate)
    return enc.encode(pcm) + enc.flush()


def place(chunks: list[AudioChunk], n: int) -> np.ndarray:
    """Lay decoded chunks on the sender's timeline (as a receiver does)."""
    out = np.zeros(n, np.float32)
    for c in chunks:
        off = int(round(c.timestamp_ms * RATE / 1000))
        s0, s1 = max(0, off), min(n, off + len(c.samples))
        if s1 > s0:
            out[s0:s1] = c.samples[s0 - off: s1 - off]
    return out


def envelope_corr(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of the 20 ms RMS envelopes of two signals."""
    env_x = np.sqrt(np.convolve(x**2, np.ones(320) / 320, "valid"))
    env_y = np.sqrt(np.convolve(y**2, np.ones(320) / 320, "valid"))
    return float(np.corrcoef(env_x, env_y)[0, 1])


@pytest.mark.parametrize("bitrate", [6000, 8000, 12000])
def test_bitrate_is_what_was_asked(bitrate: int) -> None:
    pcm = val_speech()
    packets = encode_all(pcm, bitrate)
    seconds = len(pcm) / RATE
    measured = sum(len(b) for b, _ in packets) * 8 / seconds
    assert abs(measured - bitrate) <= 0.25 * bitrate, f"{measured:.0f} bit/s for {bitrate}"


def test_packets_are_20ms_with_timestamps() -> None:
    pcm = val_speech()[: RATE * 2 + 100]  # 2 s and a partial frame
    enc = OpusEncoder()
    packets = enc.encode(pcm[:1234]) + enc.encode(pcm[1234:]) + enc.flush()
    stamps = [t for _, t in packets]
    assert stamps == list(range(0, FRAME_MS * len(packets), FRAME_MS))
    assert len(packets) >= int(np.ceil(len(pcm) / 320))
    assert all(0 < len(b) <= 1275 for b, _ in packets)


def test_round_trip_is_aligned_and_resembles_input() -> None:
    pcm = val_speech()
    dec = OpusDecoder()
    chunks = [dec.decode(b, t) for b, t in encode_all(pcm)]
    assert all(len(c.samples) == 320 for c in chunks)
    y = place(chunks, len(pcm))
    # Lag of the best cross-correlation between input and output: within 1 ms.
    seg = slice(RATE, len(pcm) - RATE)
    lags = np.arange(-48, 49)
    xc = [float(np.dot(pcm[seg], np.roll(y, -lag)[seg])) for lag in lags]
    best = int(lags[int(np.argmax(xc))])
    assert abs(best) <= 16, f"decoded audio is {best} samples off"
    # The speech envelope survives coding (8 kbit/s SILK does not keep the waveform).
    assert envelope_corr(pcm, y) > 0.9
    assert DECODER_DELAY_MS == 7


def test_lost_packets_are_concealed_then_silent() -> None:
    pcm = val_speech()[: RATE * 3]
    packets = encode_all(pcm)
    lost = {10, 11, 12, 40, 75, 76}  # a loss pattern: bursts and a single loss
    dec = OpusDecoder()
    chunks = [dec.decode(b, t) for i, (b, t) in enumerate(packets) if i not in lost]
    assert dec.n_lost == len(lost)
    after_burst = chunks[10]  # first packet after the 10-12 burst
    assert after_burst.timestamp_ms == 10 * FRAME_MS - DECODER_DELAY_MS
    assert len(after_burst.samples) == 4 * 320  # 60 ms concealment/silence + 20 ms decoded
    tail = after_burst.samples[320:960]  # beyond the 20 ms fade-out: silence
    assert np.all(tail == 0)
    y = place(chunks, len(pcm))
    assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0


def test_long_gap_is_bounded() -> None:
    dec = OpusDecoder()
    packets = encode_all(val_speech()[: RATE])
    dec.decode(*packets[0])
    c = dec.decode(packets[1][0], 3_600_000)  # an hour later
    assert len(c.samples) <= (200 + FRAME_MS) * RATE // 1000


def test_duplicate_and_late_packets_give_empty_chunks() -> None:
    packets = encode_all(val_speech()[: RATE])
    dec = OpusDecoder()
    for b, t in packets[:5]:
        dec.decode(b, t)
    assert dec.decode(*packets[4]).samples.size == 0
    assert dec.decode(*packets[1]).samples.size == 0
    assert dec.decode(*packets[5]).samples.size == 320


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=1600), min_size=1, max_size=6))
def test_garbage_never_raises(blobs: list[bytes]) -> None:
    dec = OpusDecoder()
    for i, b in enumerate(blobs):
        c = dec.decode(b, i * FRAME_MS)
        assert c.samples.dtype == np.float32
        # empty when an earlier (garbage) packet already covered this time
        assert 0 <= c.samples.size <= (120 + 200) * RATE // 1000  # longest frame + gap cap
        assert np.all(np.isfinite(c.samples)) and np.all(np.abs(c.samples) <= 1.0)


def test_decoder_recovers_after_garbage() -> None:
    pcm = val_speech()[: RATE * 2]
    packets = encode_all(pcm)
    dec = OpusDecoder()
    chunks = []
    for i, (b, t) in enumerate(packets):
        if i == 30:
            c = dec.decode(b"\xff" * 3000, t)  # oversized junk in place of packet 30
            assert np.all(c.samples == 0) and c.samples.size == 320
            chunks.append(c)
            continue
        chunks.append(dec.decode(b, t))
    assert dec.n_corrupt == 1
    y = place(chunks, len(pcm))
    later = slice(40 * 320, len(pcm) - 320)
    assert envelope_corr(pcm[later], y[later]) > 0.9


def test_silence_and_bad_values() -> None:
    enc = OpusEncoder()
    silent = enc.encode(np.zeros(RATE, np.float32)) + enc.flush()
    assert sum(len(b) for b, _ in silent) * 8 < 8000  # under the budget on silence
    enc = OpusEncoder()
    weird = np.full(RATE // 2, np.nan, np.float32)
    weird[::7] = np.inf
    packets = enc.encode(weird) + enc.flush()
    dec = OpusDecoder()
    for b, t in packets:
        assert np.all(np.isfinite(dec.decode(b, t).samples))


def test_rejects_unsupported_settings() -> None:
    with pytest.raises(ValueError):
        OpusEncoder(bitrate=96000)
    with pytest.raises(ValueError):
        OpusEncoder(bitrate=2000)
    with pytest.raises(ValueError):
        OpusEncoder(sample_rate=44100)
    with pytest.raises(ValueError):
        OpusDecoder(sample_rate=8000)


@pytest.mark.parametrize("frame_ms", [10, 40, 60])
def test_other_frame_durations(frame_ms: int) -> None:
    pcm = val_speech()[: RATE * 4]
    enc = OpusEncoder(frame_ms=frame_ms)
    packets = enc.encode(pcm) + enc.flush()
    assert [t for _, t in packets] == list(range(0, frame_ms * len(packets), frame_ms))
    bits = sum(len(b) for b, _ in packets) * 8 / 4.0
    assert abs(bits - 8000) <= 0.25 * 8000 + (1000 if frame_ms == 10 else 0)
    dec = OpusDecoder()
    dropped = {5}  # one lost packet
    chunks = [dec.decode(b, t) for i, (b, t) in enumerate(packets) if i not in dropped]
    assert dec.n_lost == 1
    n = frame_ms * RATE // 1000
    assert all(len(c.samples) == n for i, c in enumerate(chunks) if i != 5)
    assert len(chunks[5].samples) == 2 * n  # the gap (concealed) + the packet
    y = place(chunks, len(pcm))
    assert envelope_corr(pcm[RATE:], y[RATE:]) > 0.9
    seg = slice(RATE, len(pcm) - RATE)
    lags = np.arange(-48, 49)
    best = lags[int(np.argmax([np.dot(pcm[seg], np.roll(y, -k)[seg]) for k in lags]))]
    assert abs(best) <= 16  # the 7 ms delay does not depend on the frame duration
    with pytest.raises(ValueError):
        OpusEncoder(frame_ms=30)
