"""Audio: speech through Opus at a low bitrate (16 kHz mono, 20 ms packets).

The Opus names load PyAV on first use, so that ``codec.audio.features`` (the receiver's
log-mel) imports without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DECODER_DELAY_MS", "FRAME_MS", "OpusDecoder", "OpusEncoder"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from codec.audio import opus

        return getattr(opus, name)
    raise AttributeError(f"module 'codec.audio' has no attribute {name!r}")
