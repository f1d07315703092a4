"""Audio: speech through Opus at a low bitrate (16 kHz mono, 20 ms packets)."""

from codec.audio.opus import DECODER_DELAY_MS, FRAME_MS, OpusDecoder, OpusEncoder

__all__ = ["DECODER_DELAY_MS", "FRAME_MS", "OpusDecoder", "OpusEncoder"]
