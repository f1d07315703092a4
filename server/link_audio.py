"""Opus packet lengths of a talkcodec link: plain constants, importable without aiortc
(the CLI offers them as choices; ``server.transport`` enforces them)."""

from __future__ import annotations

DEFAULT_AUDIO_FRAME_MS = 120  # the longest Opus packet: 8.3 RTP packets/s
LOW_LATENCY_AUDIO_FRAME_MS = 60  # when the receiver does not wait for the next 8x8 frame
OPUS_FRAME_MS = (20, 40, 60, 80, 100, 120)


def link_audio_frame_ms(low_latency: bool) -> int:
    """Opus packet length for a link to a receiver in this mode. Interpolating, the video
    waits ~200 ms for the next 8x8 frame, so 120 ms packets cost no lip sync; in low-latency
    mode 120 ms packets made the speech trail the picture by 48-94 ms, 60 ms packets by
    -3..+5 ms (for 1.9 kbit/s more on the wire: 14.4 instead of 12.6; docs/CALL.md)."""
    return LOW_LATENCY_AUDIO_FRAME_MS if low_latency else DEFAULT_AUDIO_FRAME_MS
