"""Packets -> decoded video: the bitstream decoders feeding a receiver.

``iter_decoded`` streams: each packet goes through ``codec.bitstream.stream.StreamDecoder``
(CONFIG, identity frame, low-res frames, Opus audio; loss, duplicates and reordering handled
there and in the receiver), its events go into the receiver, and every output frame the
receiver releases is yielded at once, together with the decoded audio chunks. The stream's
END packet carries its duration, so the last frames are rendered up to exactly that time.

``decode_packets`` collects the same into a ``DecodedVideo`` (frames in memory: about
200 kB per frame, fine for clips; stream long calls with ``iter_decoded``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codec import AUDIO_RATE, FRAME_MS
from codec.bitstream.packet import Packet, PacketFlag
from codec.bitstream.stream import StreamDecoder, StreamEvents
from codec.errors import InputError
from codec.receiver.base import Receiver
from codec.types import AudioChunk, OutputFrame

#: Longest silence the audio track may bridge past the video (bounds a bogus timestamp).
MAX_AUDIO_OVERHANG_MS = 60_000


@dataclass
class DecodedVideo:
    """The receiver's 25 fps frames and the speech aligned to them."""

    frames: list[OutputFrame]
    audio: np.ndarray  # (N,) float32 at 16 kHz, sample 0 at audio_start_ms
    audio_start_ms: int = 0
    sample_rate: int = AUDIO_RATE
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def images(self) -> np.ndarray:
        """(T, 256, 256, 3) uint8 stack of the frames."""
        if not self.frames:
            return np.zeros((0, 0, 0, 3), np.uint8)
        return np.stack([f.image for f in self.frames])


def feed_events(events: StreamEvents, receiver: Receiver,
                rejected: list[str]) -> list[AudioChunk]:
    """Events into the receiver; one it refuses (InputError: e.g. an identity frame of the
    wrong size from a hostile stream) is skipped and noted, the stream goes on. Returns the
    audio chunks it accepted."""

    def give(call: Callable[..., None], *args: Any) -> bool:
        try:
            call(*args)
            return True
        except InputError as e:
            rejected.append(str(e))
            return False

    for identity in events.identities:
        give(receiver.set_identity, identity)
    for refresh_id, points in events.anchors:
        give(receiver.set_motion_anchor, points, refresh_id)
    for sample in events.motion:
        give(receiver.push_motion, sample)
    accepted = [chunk for chunk in events.audio if give(receiver.push_audio, chunk)]
    for frame in events.lowres:
        give(receiver.push_lowres, frame)
    return accepted


def iter_decoded(
    packets: Iterable[Packet],
    receiver: Receiver,
    decoder: StreamDecoder | None = None,
    rejected: list[str] | None = None,
) -> Iterator[OutputFrame | AudioChunk]:
    """Yield output frames (in time order) and decoded audio chunks as they become ready.
    Decoded inputs the receiver refuses are skipped; their reasons go to ``rejected``."""
    decoder = decoder or StreamDecoder()
    rejected = rejected if rejected is not None else []
    end_ms: int | None = None
    for packet in packets:
        yield from feed_events(decoder.push(packet), receiver, rejected)
        if packet.flags & PacketFlag.END:
            end_ms = packet.timestamp_ms
        yield from receiver.pull()
    yield from feed_events(decoder.flush(), receiver, rejected)
    yield from receiver.pull()
    for frame in receiver.flush(end_ms):
        if end_ms is None or frame.timestamp_ms < end_ms:
            yield frame


def assemble_audio(
    chunks: list[AudioChunk], start_ms: int, end_ms: int, rate: int = AUDIO_RATE
) -> np.ndarray:
    """Place chunks by timestamp on [start_ms, end_ms): silence where none, later chunks
    overwrite overlaps, anything outside is cut."""
    n = max(0, int(round((end_ms - start_ms) * rate / 1000)))
    out = np.zeros(n, np.float32)
    for c in chunks:
        off = int(round((c.timestamp_ms - start_ms) * rate / 1000))
        s0, s1 = max(0, off), min(n, off + len(c.samples))
        if s1 > s0:
            out[s0:s1] = c.samples[s0 - off : s1 - off]
    return out


def decode_packets(packets: Iterable[Packet], receiver: Receiver) -> DecodedVideo:
    """Decode a whole packet stream through ``receiver``.

    The audio track starts with the first output frame and ends with the last one (or, with
    no video, spans the audio received, at most MAX_AUDIO_OVERHANG_MS)."""
    decoder = StreamDecoder()
    frames: list[OutputFrame] = []
    chunks: list[AudioChunk] = []
    ends: list[int] = []
    rejected: list[str] = []

    def watch(stream: Iterable[Packet]) -> Iterator[Packet]:
        for packet in stream:
            if packet.flags & PacketFlag.END:
                ends.append(packet.timestamp_ms)
            yield packet

    for item in iter_decoded(watch(packets), receiver, decoder, rejected):
        if isinstance(item, OutputFrame):
            frames.append(item)
        else:
            chunks.append(item)
    frame_ms = FRAME_MS
    if ends:  # low-latency receivers may have run ahead of the stream's end
        frames = [f for f in frames if f.timestamp_ms < ends[-1]]
    if frames:
        start = frames[0].timestamp_ms
        end = int(round(frames[-1].timestamp_ms + frame_ms))
        end = min(end, start + int(round(len(frames) * frame_ms)) + MAX_AUDIO_OVERHANG_MS)
    elif chunks:
        start = min(c.timestamp_ms for c in chunks)
        end = max(c.timestamp_ms + 1000 * len(c.samples) // AUDIO_RATE for c in chunks)
        end = min(end, start + MAX_AUDIO_OVERHANG_MS)
    else:
        start = end = 0
    lowres = decoder.lowres.stats if decoder.lowres is not None else None
    stats = {
        "frames": len(frames),
        "lowres_decoded": lowres.decoded if lowres else 0,
        "lowres_skipped": lowres.skipped if lowres else 0,
        "corrupt_packets": decoder.corrupt,
        "rejected_inputs": len(rejected),
        "placeholder_frames": sum(1 for f in frames if f.meta.get("identity") == "placeholder"),
        "voice_frames": sum(1 for f in frames if f.meta.get("identity") == "voice"),
    }
    return DecodedVideo(frames, assemble_audio(chunks, start, end), start, AUDIO_RATE, stats)
