"""talkcodec itself in the benchmark: one encoding per clip, decoded by each receiver.

Bits come from the packets the Sender produces (``codec.bitstream.stats.stream_stats``):
the 8x8 stream with its packet headers, the motion code bundled in them, the identity
frame and its anchor, CONFIG packets and the Opus audio. No file-container bytes are counted
(as for the standard codecs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from codec import FRAME_MS
from codec.bitstream.packet import Packet
from codec.bitstream.stats import stream_stats
from codec.receiver.pipeline import decode_packets
from codec.receiver.registry import RECEIVERS, get_receiver, neural_available
from codec.sender.sender import Sender, SenderConfig
from codec.types import FaceClip


@dataclass
class TalkcodecStream:
    packets: list[Packet]
    bits_total: float  # everything: identity + 8x8 stream + audio + headers + CONFIG
    bits_audio: float  # Opus payloads and their packet headers
    bits_lowres: float  # 8x8 payloads and their packet headers
    bits_audio_payload: float  # Opus payloads only (what a standard codec's call would add)
    bits_code: float = 0.0  # the motion code's groups (bundled in the 8x8 packets)

    @property
    def bits_video(self) -> float:
        """Everything but audio: 8x8 stream, identity frame, CONFIG, headers."""
        return self.bits_total - self.bits_audio


NO_CODE = "off"
#: Receivers that animate with the motion code when the stream has one.
CODE_RECEIVERS = ("neural",)
#: Motion-code points of the benchmark (samples/s:quantiser); the first is the default.
DEFAULT_CODE_POINTS = ("12.5:6", "25:6", "25:10", "5:4")
_PERIODS = {"25": 40, "12.5": 80, "5": 200}


def sender_config(code: str = NO_CODE) -> SenderConfig:
    """Sender settings for a benchmark point: ``off`` (8x8 stream only) or ``FPS:QUANT``."""
    if code == NO_CODE:
        return SenderConfig(motion=False)
    fps, _, quant = code.partition(":")
    if fps not in _PERIODS:
        raise ValueError(f"code rate {fps!r} (one of {', '.join(_PERIODS)})")
    try:
        q = float(quant) if quant else SenderConfig().motion_quant
    except ValueError:
        raise ValueError(f"code quantiser {quant!r} is not a number") from None
    if not 1 / 16 <= q < 16:
        raise ValueError(f"code quantiser {q} outside [1/16, 16)")
    return SenderConfig(motion=True, motion_period_ms=_PERIODS[fps], motion_quant=q)


def available_receivers() -> list[str]:
    """Every registered receiver; ``neural`` only when its weights are present."""
    return [n for n in RECEIVERS if n != "neural" or neural_available()]


def encode(clip: FaceClip, config: SenderConfig | None = None) -> TalkcodecStream:
    sender = Sender(config or SenderConfig(), with_audio=clip.audio is not None)
    packets = sender.encode_clip(clip)
    st = stream_stats(packets, {"duration_s": clip.duration_s})
    headers = st["overhead"]["headers_bits"]
    return TalkcodecStream(
        packets=packets,
        bits_total=st["total"]["bits"],
        bits_audio=st["audio"]["bits"] + headers["audio"],
        bits_lowres=st["lowres_with_headers"]["bits"],
        bits_audio_payload=st["audio"]["bits"],
        bits_code=st["motion"]["bits"],
    )


def decode(
    packets: list[Packet], receiver_name: str, n_frames: int, **receiver_kw: Any
) -> np.ndarray:
    """Decode the packets through a receiver (``codec.receiver.pipeline.decode_packets``);
    (n_frames, 256, 256, 3) uint8 on the 25 fps grid. A grid time with no output frame
    shows the latest earlier one (what a viewer would see); the benchmark counts that as
    the receiver's output."""
    out = decode_packets(packets, get_receiver(receiver_name, **receiver_kw)).frames
    if not out:
        raise RuntimeError(f"receiver {receiver_name} produced no frames")
    by_index = {int(round(f.timestamp_ms / FRAME_MS)): f.image for f in out}
    frames = []
    last = out[0].image
    for k in range(n_frames):
        last = by_index.get(k, last)
        frames.append(last)
    return np.stack(frames).astype(np.uint8)
