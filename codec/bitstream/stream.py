"""From packets (lost, duplicated, reordered) to decoded stream events.

``LowResStreamDecoder`` handles the low-res stream's dependencies: an inter frame needs the
frame just before it (its LOWRES seq minus one). Inter frames that arrive early wait in a
small reorder buffer for the missing one; the frames after a loss are **skipped** (not
concealed here: the receiver interpolates across the missing times from the frames on
either side) until an intra frame arrives, which is decoded at once, and decoding is
exact again from there. Inter frames that can never be decoded are dropped once more than
``reorder_window`` packets wait. Duplicates and packets older than the last decoded frame
(including one overtaken by the next intra frame) are dropped.

``StreamDecoder`` demultiplexes every kind: CONFIG (parameters; a change restarts the
low-res decoder), IDENTITY (one event per refresh id), LOWRES, AUDIO (Opus, decoded by
``codec.audio.opus.OpusDecoder``; duplicates dropped), MOTION (the motion code's anchor)
and the motion groups bundled into LOWRES packets (``motion_codec.py``; a packet with the
REDUNDANT flag also carries the one before it, ``redundancy.py``, which is used when that
one is missing, so a single loss costs no frame and no group): decoded to
landmark samples when the CONFIG announces a code whose basis this installation has,
otherwise ignored (the receiver then works from the 8x8 frames and the speech alone). Corrupt payloads are counted and
skipped: a live stream degrades, it does not stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from codec.bitstream.config import AudioCodec, StreamConfig, decode_config
from codec.bitstream.identity_codec import decode_identity
from codec.bitstream.lowres_codec import LowResDecoder, LowResParams
from codec.bitstream.motion_codec import (
    ANCHOR_TYPE,
    MotionDecoder,
    MotionSample,
    decode_anchor,
    unbundle,
)
from codec.bitstream.packet import SEQ_MODULO, Packet, PacketFlag, StreamKind, seq_after
from codec.bitstream.redundancy import split_previous
from codec.errors import BitstreamError
from codec.types import AudioChunk, IdentityFrame, LowResFrame

REORDER_WINDOW = 4
log = logging.getLogger(__name__)
_AUDIO_SEEN_LIMIT = 512


@dataclass
class StreamStats:
    decoded: int = 0
    skipped: int = 0  # frames lost or undecodable for want of their reference
    duplicates: int = 0
    corrupt: int = 0


class LowResStreamDecoder:
    def __init__(self, params: LowResParams, reorder_window: int = REORDER_WINDOW) -> None:
        self.params = params
        self.reorder_window = reorder_window
        self.stats = StreamStats()
        self._decoder = LowResDecoder(params)
        self._last_seq: int | None = None  # seq of the last decoded frame
        self._pending: dict[int, Packet] = {}

    def seen(self, seq: int) -> bool:
        """True when a packet with this seq was decoded, given up on or is waiting."""
        old = self._last_seq is not None and not seq_after(seq, self._last_seq)
        return old or seq in self._pending

    def push(self, packet: Packet) -> list[LowResFrame]:
        """Feed one LOWRES packet; returns the frames that became decodable, in order."""
        seq = packet.seq
        if self.seen(seq):
            self.stats.duplicates += 1
            return []
        self._pending[seq] = packet
        return self._drain(force=False)

    def flush(self) -> list[LowResFrame]:
        """End of stream: give up on unfilled gaps, decode from any waiting intra frame."""
        return self._drain(force=True)

    def _drain(self, force: bool) -> list[LowResFrame]:
        out: list[LowResFrame] = []
        while self._pending:
            nxt = None if self._last_seq is None else (self._last_seq + 1) % SEQ_MODULO
            if self._decoder.has_reference and nxt in self._pending:
                out += self._decode(self._pending.pop(nxt))
                continue
            intra = [s for s, p in self._pending.items() if p.is_intra]
            hopeless = force or len(self._pending) > self.reorder_window
            if not intra:
                if self._decoder.has_reference and not hopeless:
                    break  # a gap: wait, the missing packet may still arrive
                if hopeless:  # nothing waiting can ever be decoded
                    self._decoder.reset()
                    self.stats.skipped += len(self._pending)
                    # Given up: a later copy of one of them (redundancy.py) is old too.
                    newest = next(iter(self._pending))
                    for s in self._pending:
                        if seq_after(s, newest):
                            newest = s
                    self._last_seq = newest
                    self._pending.clear()
                break
            # An intra frame is waiting: start over from it at once (no added latency);
            # frames before it that are still missing are given up.
            first = intra[0]
            for s in intra[1:]:
                if seq_after(first, s):
                    first = s
            for s in [s for s in self._pending if seq_after(first, s)]:
                del self._pending[s]
                self.stats.skipped += 1
            out += self._decode(self._pending.pop(first))
        return out

    def _decode(self, packet: Packet) -> list[LowResFrame]:
        self._last_seq = packet.seq
        try:
            pixels = self._decoder.decode(packet.payload, packet.is_intra)
        except BitstreamError:
            self.stats.corrupt += 1
            self._decoder.reset()
            return []
        self.stats.decoded += 1
        return [LowResFrame(pixels=pixels, timestamp_ms=packet.timestamp_ms,
                            quant=self._decoder.params.quant)]


@dataclass
class StreamEvents:
    config: StreamConfig | None = None
    identities: list[IdentityFrame] = field(default_factory=list)
    lowres: list[LowResFrame] = field(default_factory=list)
    audio: list[AudioChunk] = field(default_factory=list)
    anchors: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (refresh id, points)
    motion: list[MotionSample] = field(default_factory=list)
    ended: bool = False

    def extend(self, other: StreamEvents) -> None:
        self.config = other.config or self.config
        self.identities += other.identities
        self.lowres += other.lowres
        self.audio += other.audio
        self.anchors += other.anchors
        self.motion += other.motion
        self.ended = self.ended or other.ended


class StreamDecoder:
    """Packets of every kind in, decoded events out (streaming)."""

    def __init__(self, reorder_window: int = REORDER_WINDOW) -> None:
        self.reorder_window = reorder_window
        self.config: StreamConfig | None = None
        self.lowres: LowResStreamDecoder | None = None
        self.corrupt = 0
        self.waiting_for_config = 0
        self._identity_ids: set[int] = set()
        self._audio_seen: dict[int, None] = {}
        self._opus: Any = None
        self.motion: MotionDecoder | None = None
        self.motion_bytes = 0  # motion-code bytes received (groups and anchors)
        self.recovered = 0  # LOWRES packets rebuilt from the copy in the next one
        self._anchor: np.ndarray | None = None
        self._anchor_ids: set[int] = set()

    def push(self, packet: Packet) -> StreamEvents:
        ev = StreamEvents()
        try:
            self._route(packet, ev)
        except BitstreamError:
            self.corrupt += 1
        if packet.flags & PacketFlag.END:
            ev.ended = True
        return ev

    def flush(self) -> StreamEvents:
        ev = StreamEvents()
        if self.lowres is not None:
            ev.lowres += self.lowres.flush()
        return ev

    def _route(self, packet: Packet, ev: StreamEvents) -> None:
        if packet.kind is StreamKind.CONFIG:
            config = decode_config(packet.payload)
            if config != self.config:
                if self.lowres is not None:
                    ev.lowres += self.lowres.flush()
                self.config = config
                self.lowres = LowResStreamDecoder(config.lowres, self.reorder_window)
                self.motion = _motion_decoder(config)
                if self.motion is not None and self._anchor is not None:
                    self.motion.set_anchor(self._anchor)
                ev.config = config
        elif packet.kind is StreamKind.IDENTITY:
            refresh_id = packet.payload[0] if packet.payload else -1
            if refresh_id not in self._identity_ids:
                ev.identities.append(decode_identity(packet.payload, packet.timestamp_ms))
                self._identity_ids.add(refresh_id)
        elif packet.kind is StreamKind.LOWRES:
            if self.lowres is None:
                self.waiting_for_config += 1
                return
            if packet.flags & PacketFlag.REDUNDANT:
                packet, previous = split_previous(packet)
                if previous is not None and not self.lowres.seen(previous.seq):
                    # The previous packet was lost (or is late): rebuilt from its copy.
                    self.recovered += 1
                    self._push_lowres(previous, ev)
            self._push_lowres(packet, ev)
        elif packet.kind is StreamKind.MOTION:
            self.motion_bytes += len(packet.payload)
            if packet.payload[:1] == bytes([ANCHOR_TYPE]):
                refresh_id, _, points = decode_anchor(packet.payload)
                if refresh_id not in self._anchor_ids:
                    self._anchor_ids.add(refresh_id)
                    self._anchor = points
                    if self.motion is not None:
                        self.motion.set_anchor(points)
                    ev.anchors.append((refresh_id, points))
            else:
                self._push_group(packet.timestamp_ms, packet.payload[1:], ev)
        elif packet.kind is StreamKind.AUDIO:
            self._push_audio(packet, ev)

    def _push_lowres(self, packet: Packet, ev: StreamEvents) -> None:
        assert self.lowres is not None
        if self.lowres.seen(packet.seq):
            # A duplicate: its motion group must not reach the code's decoder twice (a
            # group out of turn stops the code until the next refresh group).
            ev.lowres += self.lowres.push(packet)
            return
        if packet.flags & PacketFlag.MOTION:
            frame, group = unbundle(packet.payload)
            packet = replace(packet, payload=frame, flags=packet.flags & ~PacketFlag.MOTION)
            self._push_group(packet.timestamp_ms, group, ev, packet.seq)
        ev.lowres += self.lowres.push(packet)

    def _push_group(self, ts_ms: int, group: bytes, ev: StreamEvents,
                    seq: int | None = None) -> None:
        self.motion_bytes += len(group)
        if self.motion is not None and group:
            try:
                ev.motion += self.motion.decode_group(ts_ms, group, seq)
            except BitstreamError:
                self.corrupt += 1

    def _push_audio(self, packet: Packet, ev: StreamEvents) -> None:
        if self.config is not None and self.config.audio_codec is AudioCodec.NONE:
            return
        if packet.seq in self._audio_seen:
            return
        self._audio_seen[packet.seq] = None
        if len(self._audio_seen) > _AUDIO_SEEN_LIMIT:
            del self._audio_seen[next(iter(self._audio_seen))]
        if self._opus is None:
            from codec.audio.opus import OpusDecoder

            self._opus = OpusDecoder()
        try:
            chunk = self._opus.decode(packet.payload, packet.timestamp_ms)
        except BitstreamError:
            raise
        except Exception as exc:  # libopus reports bad packets through PyAV's errors
            raise BitstreamError(f"audio packet does not decode: {type(exc).__name__}") from None
        if chunk is not None and len(chunk.samples):
            ev.audio.append(chunk)


def _motion_decoder(config: StreamConfig) -> MotionDecoder | None:
    """A decoder for the stream's motion code, or None (no code, or not this basis)."""
    if config.motion is None:
        return None
    from codec.bitstream.motion_basis import load_basis

    try:
        basis = load_basis()
    except (OSError, ValueError) as exc:
        log.warning("motion basis unusable (%s): decoding without the motion code", exc)
        return None
    if basis is None or basis.basis_id != config.motion.basis_id:
        log.warning("stream's motion code uses basis %08x, not installed here: decoding "
                    "without it", config.motion.basis_id)
        return None
    try:
        return MotionDecoder(config.motion, basis)
    except ValueError as exc:
        log.warning("motion code not decodable here (%s)", exc)
        return None
