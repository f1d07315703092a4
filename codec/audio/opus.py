"""Speech through real libopus (via PyAV) at a low bitrate: 16 kHz mono, 20 ms packets.

``OpusEncoder(bitrate=8000)`` runs libopus in its ``voip`` application mode (speech
tuned, wideband at 16 kHz) with variable bitrate around the requested rate; each 20 ms of
input (``frame_ms``: 10, 20, 40 or 60) gives one packet, stamped with the time of its first
input sample (0, 20, 40 ms...). The decoder takes each packet's duration from the packet.

``OpusDecoder.decode(packet, timestamp_ms)`` returns an :class:`AudioChunk` placed on the
sender's clock: the encoder's 6.5 ms look-ahead and the 48 -> 16 kHz decimation filter
add up to exactly ``DECODER_DELAY_MS`` (7 ms), which the chunk's timestamp accounts for,
so a decoded sample sits where the same input sample sat.

Loss and damage (the decoder never raises on packet bytes):
- a gap in timestamps (lost packets): the returned chunk starts at the gap and carries a
  concealment for it: the last decoded 20 ms faded out over ``CONCEAL_MS``, then silence
  (at most ``MAX_GAP_MS`` of it; older parts of a longer gap are left to the receiver,
  which zero-fills audio it never got);
- a packet that is empty, over-long or that libopus rejects: 20 ms of silence in its place
  (``n_corrupt`` counts them);
- a duplicate or late packet (timestamp before the end of the audio already returned):
  an empty chunk.
"""

from __future__ import annotations

import av
import numpy as np
from scipy.signal import firwin, lfilter

from codec import AUDIO_RATE
from codec.types import AudioChunk

FRAME_MS = 20
FRAME_SIZES_MS = (10, 20, 40, 60)
OPUS_RATE = 48000  # libopus always decodes to 48 kHz through FFmpeg
MIN_BITRATE, MAX_BITRATE = 6000, 32000
MAX_PACKET_BYTES = 1275  # the largest frame the Opus spec allows
ENCODER_LOOKAHEAD = 104  # libopus look-ahead at 16 kHz (6.5 ms), reported as initial padding
_FIR = firwin(49, 7200, fs=OPUS_RATE)  # linear phase: 24-sample (0.5 ms) delay at 48 kHz
DECODER_DELAY_MS = (ENCODER_LOOKAHEAD + 24 // 3) * 1000 // AUDIO_RATE  # = 7
CONCEAL_MS = 20
MAX_GAP_MS = 200


class OpusEncoder:
    """Float32 mono PCM at ``sample_rate`` -> Opus packets of 20 ms, ``(bytes, timestamp_ms)``."""

    def __init__(self, bitrate: int = 8000, sample_rate: int = AUDIO_RATE, *,
                 frame_ms: int = FRAME_MS, complexity: int = 10) -> None:
        if frame_ms not in FRAME_SIZES_MS:
            raise ValueError(f"Opus frames are one of {FRAME_SIZES_MS} ms, not {frame_ms}")
        if not MIN_BITRATE <= bitrate <= MAX_BITRATE:
            raise ValueError(f"bitrate {bitrate} outside {MIN_BITRATE}..{MAX_BITRATE} bit/s")
        if sample_rate != AUDIO_RATE:
            raise ValueError(f"talkcodec speech is {AUDIO_RATE} Hz mono, not {sample_rate} Hz")
        self.bitrate = bitrate
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_samples = sample_rate * frame_ms // 1000
        cc = av.CodecContext.create("libopus", "w")
        cc.sample_rate = sample_rate
        cc.layout = "mono"
        cc.format = "flt"
        cc.bit_rate = bitrate
        cc.options = {"application": "voip", "frame_duration": str(frame_ms),
                      "vbr": "on", "compression_level": str(complexity)}
        cc.open()
        self._cc = cc
        self._pending = np.zeros(0, np.float32)
        self._n_in = 0  # samples handed to libopus so far
        self._n_out = 0  # packets emitted so far

    def encode(self, pcm: np.ndarray) -> list[tuple[bytes, int]]:
        """Encode the next samples (any length); returns the packets completed so far."""
        x = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(x)):
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        x = np.clip(x, -1.0, 1.0)
        buf = np.concatenate([self._pending, x]) if self._pending.size else x
        n = self.frame_samples
        full = (buf.size // n) * n
        packets: list[tuple[bytes, int]] = []
        for i in range(0, full, n):
            packets.extend(self._encode_frame(buf[i:i + n]))
        self._pending = buf[full:].copy()
        return packets

    def flush(self) -> list[tuple[bytes, int]]:
        """Encode what is buffered (zero-padded to 20 ms) and drain libopus."""
        packets: list[tuple[bytes, int]] = []
        if self._pending.size:
            pad = np.zeros(self.frame_samples - self._pending.size, np.float32)
            packets.extend(self._encode_frame(np.concatenate([self._pending, pad])))
            self._pending = np.zeros(0, np.float32)
        for p in self._cc.encode(None):
            packets.append(self._stamp(p))
        return packets

    def _encode_frame(self, block: np.ndarray) -> list[tuple[bytes, int]]:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block[None, :]), format="flt",
                                           layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._n_in
        self._n_in += block.size
        return [self._stamp(p) for p in self._cc.encode(frame)]

    def _stamp(self, packet: av.Packet) -> tuple[bytes, int]:
        ts = self._n_out * self.frame_ms
        self._n_out += 1
        return bytes(packet), ts


class OpusDecoder:
    """Opus packets -> 16 kHz float32 ``AudioChunk``s on the sender's clock (see module doc)."""

    def __init__(self, sample_rate: int = AUDIO_RATE) -> None:
        if sample_rate != AUDIO_RATE:
            raise ValueError(f"talkcodec speech is {AUDIO_RATE} Hz mono, not {sample_rate} Hz")
        self._cc = av.CodecContext.create("libopus", "r")
        self._cc.sample_rate = OPUS_RATE
        self._cc.layout = "mono"
        self._zi = np.zeros(len(_FIR) - 1)
        self._phase = 0  # index of the next 48 kHz sample to keep (every third)
        self._next_ts: int | None = None
        self._frame_ms = FRAME_MS  # duration of the last good packet
        self._last = np.zeros(0, np.float32)
        self.n_corrupt = 0
        self.n_lost = 0

    def decode(self, packet: bytes, timestamp_ms: int) -> AudioChunk:
        ts = int(timestamp_ms)
        slack = self._frame_ms // 2
        if self._next_ts is not None and ts < self._next_ts - slack:
            return AudioChunk(np.zeros(0, np.float32), ts - DECODER_DELAY_MS)  # late / duplicate
        pcm = self._decode_bytes(packet)
        if pcm is None:
            self.n_corrupt += 1
            pcm = np.zeros(AUDIO_RATE * self._frame_ms // 1000, np.float32)
        else:  # packets carry their own duration (10-60 ms; 20 ms from OpusEncoder)
            self._frame_ms = max(1, len(pcm) * 1000 // AUDIO_RATE)
        start = ts
        if self._next_ts is not None and ts > self._next_ts + slack:
            gap_ms = ts - self._next_ts
            self.n_lost += max(1, round(gap_ms / self._frame_ms))
            start = ts - min(gap_ms, MAX_GAP_MS)
            pcm = np.concatenate([self._conceal(ts - start), pcm])
        self._next_ts = ts + len(pcm) * 1000 // AUDIO_RATE - (ts - start)
        self._last = pcm[-AUDIO_RATE * FRAME_MS // 1000:]
        return AudioChunk(pcm, start - DECODER_DELAY_MS)

    def _decode_bytes(self, packet: bytes) -> np.ndarray | None:
        if not isinstance(packet, (bytes, bytearray, memoryview)):
            return None
        data = bytes(packet)
        if not data or len(data) > MAX_PACKET_BYTES:
            return None
        try:
            frames = self._cc.decode(av.Packet(data))
        except (av.FFmpegError, ValueError):
            return None
        parts = []
        for f in frames:
            a = f.to_ndarray().reshape(-1)
            if a.dtype == np.int16:
                a = a.astype(np.float32) / 32768.0
            parts.append(a.astype(np.float32))
        if not parts:
            return None
        return self._decimate(np.concatenate(parts))

    def _decimate(self, x48: np.ndarray) -> np.ndarray:
        """48 -> 16 kHz: stateful linear-phase low-pass, keep every third sample."""
        y, self._zi = lfilter(_FIR, 1.0, x48.astype(np.float64), zi=self._zi)
        out = y[self._phase::3]
        self._phase = (self._phase - len(x48)) % 3
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    def _conceal(self, gap_ms: int) -> np.ndarray:
        n = gap_ms * AUDIO_RATE // 1000
        out = np.zeros(n, np.float32)
        if self._last.size and n:
            m = min(n, CONCEAL_MS * AUDIO_RATE // 1000, self._last.size)
            fade = np.linspace(1.0, 0.0, m, dtype=np.float32)
            out[:m] = self._last[::-1][:m] * fade  # time-reversed tail: continuous at the join
        return out
