"""talkcodec itself in the benchmark: one encoding per clip, decoded by each receiver.

Bits come from the packets the Sender produces (``codec.bitstream.stats.stream_stats``):
the 8x8 stream with its packet headers, the identity frame, CONFIG packets and the Opus
audio. No file-container bytes are counted (as for the standard codecs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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

    @property
    def bits_video(self) -> float:
        """Everything but audio: 8x8 stream, identity frame, CONFIG, headers."""
        return self.bits_total - self.bits_audio


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
    by_index = {int(round(f.timestamp_ms / 40.0)): f.image for f in out}
    frames = []
    last = out[0].image
    for k in range(n_frames):
        last = by_index.get(k, last)
        frames.append(last)
    return np.stack(frames).astype(np.uint8)
