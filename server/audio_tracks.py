"""The call's audio on aiortc: tracks that pace PCM in real time, and the receiving side
of the link's Opus.

- ``PacedAudioTrack`` / ``PcmAudioTrack`` / ``FedAudioTrack``: audio tracks that hand out
  frames in real time, from samples a subclass supplies or a producer feeds.
- ``PromptAudioJitterBuffer`` / ``SenderAudioClock`` / ``prompt_audio_receiver``: the
  receiving side decodes each Opus packet on arrival and knows when it was captured (lip
  sync, ``view_tracks``), from the sender reports ``link_tuning.lean_link_audio`` stamps.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import numpy as np
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpSrPacket
from aiortc.utils import uint16_add
from av import AudioFrame

OPUS_CLOCK = 48000  # RTP clock of Opus
NTP_UNIX_OFFSET_S = 2208988800


def signed32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def ntp_of_unix_ms(unix_ms: float) -> int:
    seconds = unix_ms / 1000.0 + NTP_UNIX_OFFSET_S
    return (int(seconds) << 32) | int((seconds % 1) * (1 << 32))


class PromptAudioJitterBuffer(JitterBuffer):
    """The link's audio at the receiver: each Opus RTP packet is a whole frame, so it goes
    to the decoder as it arrives. aiortc's audio buffer first holds 4 packets back
    (4 x 120 ms = 480 ms with the link's Opus frames). Packets older than the newest one
    (late, duplicate) are dropped; a lost one is a gap (Opus PLC is not used by aiortc)."""

    def __init__(self) -> None:
        super().__init__(capacity=16)
        self._newest: int | None = None
        self.first_timestamp: int | None = None  # RTP timestamp of decoded pts 0

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:  # packet: an RtpPacket
        seq = packet.sequence_number
        if self._newest is not None and not 0 < uint16_add(seq, -self._newest) < 0x8000:
            return False, None
        self._newest = seq
        if self.first_timestamp is None:
            self.first_timestamp = packet.timestamp
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)




class SenderAudioClock:
    """When the sender captured each decoded audio frame, on the sender's clock.

    The link's sender reports pair an RTP timestamp with the wall-clock time its first
    decoded sample was captured (``lean_link_audio`` makes them so; RFC 3550's meaning).
    So a decoded frame (pts in 1/48000 s from the first packet, whose RTP timestamp the
    prompt jitter buffer kept) was captured at ``sr_time + (rtp - sr_rtp) / 48 kHz``: on
    the same clock as the talkcodec stream's epoch, whatever the network delay.
    ``capture_unix_ms`` is None until the first report (the caller then falls back to
    arrival time)."""

    def __init__(self, rtp_receiver: object) -> None:
        self.buffer = PromptAudioJitterBuffer()
        rtp_receiver._RTCRtpReceiver__jitter_buffer = self.buffer  # type: ignore[attr-defined]
        self.sr: tuple[float, int] | None = None  # (unix ms, RTP timestamp)
        handle = rtp_receiver._handle_rtcp_packet  # type: ignore[attr-defined]

        async def on_rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                ntp = packet.sender_info.ntp_timestamp
                unix_ms = ((ntp >> 32) - NTP_UNIX_OFFSET_S + (ntp & 0xFFFFFFFF) / 2**32) * 1000
                self.sr = (unix_ms, packet.sender_info.rtp_timestamp)
            await handle(packet)

        rtp_receiver._handle_rtcp_packet = on_rtcp  # type: ignore[attr-defined]

    def capture_unix_ms(self, frame: AudioFrame) -> float | None:
        first = self.buffer.first_timestamp
        if self.sr is None or first is None or frame.pts is None:
            return None
        rate = frame.sample_rate or OPUS_CLOCK
        rtp = first + int(frame.pts * OPUS_CLOCK / rate)
        return self.sr[0] + signed32(rtp - self.sr[1]) * 1000.0 / OPUS_CLOCK


def prompt_audio_receiver(rtp_receiver: object) -> SenderAudioClock:
    """Give this (audio) RTP receiver the prompt jitter buffer; returns its capture clock."""
    return SenderAudioClock(rtp_receiver)


class PacedAudioTrack(MediaStreamTrack):
    """An audio track that hands out ``PTIME_S`` frames of ``RATE`` mono s16 in real time;
    a subclass supplies the samples (``_next_samples``)."""

    kind = "audio"
    RATE = 48000
    PTIME_S = 0.02

    def __init__(self, ptime_s: float | None = None) -> None:
        super().__init__()
        if ptime_s is not None:
            self.PTIME_S = ptime_s
        self._start: float | None = None
        self._sent = 0

    def _next_samples(self, n: int) -> np.ndarray:
        """The next ``n`` samples, int16."""
        raise NotImplementedError

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = int(self.PTIME_S * self.RATE)
        if self._start is None:
            self._start = time.time()
        # A frame leaves when its last sample is due (the first one too: a 120 ms frame
        # handed over at its start held 120 ms of samples not fed yet, and everything
        # after it came that much late). Behind: at once, without a loop iteration each.
        wait = self._start + (self._sent + n) / self.RATE - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        return self._frame(self._next_samples(n))

    def _frame(self, samples: np.ndarray) -> AudioFrame:
        frame = AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = self.RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, self.RATE)
        self._sent += len(samples)
        return frame


class PcmAudioTrack(PacedAudioTrack):
    """An audio track fed with 16 kHz mono float32 PCM (``feed``), paced in real time;
    silence where nothing was fed in time."""

    RATE = 16000

    def __init__(self, max_buffer_s: float = 2.0, ptime_s: float | None = None) -> None:
        super().__init__(ptime_s)
        self._buffer = np.zeros(0, np.float32)
        self._max = int(max_buffer_s * self.RATE)

    def feed(self, pcm: np.ndarray) -> None:
        pcm = np.clip(np.asarray(pcm, np.float32).reshape(-1), -1.0, 1.0)
        self._buffer = np.concatenate([self._buffer, pcm])[-self._max:]

    def _next_samples(self, n: int) -> np.ndarray:
        chunk = self._buffer[:n]
        self._buffer = self._buffer[n:]
        if len(chunk) < n:
            chunk = np.concatenate([chunk, np.zeros(n - len(chunk), np.float32)])
        return (chunk * 32767).astype(np.int16)


class FedAudioTrack(PcmAudioTrack):
    """16 kHz mono PCM fed in real time by its producer (``FileSender`` feeds each canvas
    frame's audio at that frame's time): a ``PTIME_S`` frame leaves as soon as its last
    sample is fed, so the time it leaves (what the link's encoder stamps as its capture,
    ``LowBitrateOpusEncoder``) is when it was fed, however late this track started or
    its producer runs. (``PcmAudioTrack`` keeps its own clock: the offset between the
    feeding and that clock, set by start-up order, went into the speech's timestamps.)"""

    def __init__(self, max_buffer_s: float = 2.0, ptime_s: float | None = None) -> None:
        super().__init__(max_buffer_s, ptime_s)
        self._fed = asyncio.Event()

    def feed(self, pcm: np.ndarray) -> None:
        super().feed(pcm)
        self._fed.set()

    def stop(self) -> None:
        super().stop()
        self._fed.set()

    async def recv(self) -> AudioFrame:
        n = int(self.PTIME_S * self.RATE)
        while self.readyState == "live" and len(self._buffer) < n:
            self._fed.clear()
            await self._fed.wait()
        if self.readyState != "live":
            raise MediaStreamError
        return self._frame(self._next_samples(n))
