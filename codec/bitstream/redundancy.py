"""Forward error correction of the 8x8 stream: each LOWRES packet carries a copy of the one
before it (packet flag ``REDUNDANT``, issue 16; wire format in ``docs/BITSTREAM.md``).

Payload of a packet with the flag::

    varint(len(P)) + P + [ varint(delta_ms << 2 | motion << 1 | intra) + P_prev ]

``P`` is the payload the packet would have without the flag (an 8x8 frame, or an 8x8 frame
with its motion group when the MOTION flag is set), ``P_prev`` the previous LOWRES packet's
``P``: sequence number one less, timestamp ``delta_ms`` earlier, its INTRA and MOTION flags
in the low two bits. Nothing after ``P`` means no copy (the stream's first packet).

A single lost packet is rebuilt from the next one, so the frames after it stay decodable
(the 8x8 frame and its motion group alike) and cost one frame of delay instead of every
frame until the next intra frame. The copy pays no packet or transport header of its own:
on the link an 8x8 datagram is ~100 bytes of headers around ~25 bytes of payload.
"""

from __future__ import annotations

from dataclasses import replace

from codec.bitstream.packet import (
    SEQ_MODULO,
    Packet,
    PacketFlag,
    StreamKind,
    decode_varint,
    encode_varint,
)
from codec.errors import CorruptError

_COPIED_FLAGS = (PacketFlag.INTRA, PacketFlag.MOTION)  # bit 0, bit 1 of the copy's varint
MAX_DELTA_MS = (1 << 19) - 1  # the copy's varint is at most 3 bytes


def with_previous(packet: Packet, previous: Packet | None) -> Packet:
    """``packet`` (a LOWRES packet without the flag) with the REDUNDANT flag and a copy of
    ``previous`` (the LOWRES packet sent before it, as it was without the flag) when that is
    its predecessor: sequence number one less, not later, not too far back."""
    if packet.kind is not StreamKind.LOWRES or packet.flags & PacketFlag.REDUNDANT:
        raise ValueError("with_previous takes a LOWRES packet without the REDUNDANT flag")
    out = encode_varint(len(packet.payload)) + packet.payload
    if (previous is not None and previous.seq == (packet.seq - 1) % SEQ_MODULO
            and 0 <= packet.timestamp_ms - previous.timestamp_ms <= MAX_DELTA_MS):
        bits = sum(1 << i for i, f in enumerate(_COPIED_FLAGS) if previous.flags & f)
        out += encode_varint((packet.timestamp_ms - previous.timestamp_ms) << 2 | bits)
        out += previous.payload
    return replace(packet, flags=packet.flags | PacketFlag.REDUNDANT, payload=out)


def split_previous(packet: Packet) -> tuple[Packet, Packet | None]:
    """A packet with the REDUNDANT flag -> (the packet as it was without the flag, the
    previous packet rebuilt from its copy, or None). Malformed: ``CorruptError``."""
    data = packet.payload
    length, pos = decode_varint(data, 0, max_bytes=3)
    if pos + length > len(data):
        raise CorruptError("redundant LOWRES payload shorter than its own frame")
    own = replace(packet, flags=packet.flags & ~PacketFlag.REDUNDANT,
                  payload=data[pos : pos + length])
    pos += length
    if pos == len(data):
        return own, None
    word, pos = decode_varint(data, pos, max_bytes=3)
    delta = word >> 2
    if delta > packet.timestamp_ms:
        raise CorruptError("redundant copy timestamped before the stream")
    flags = PacketFlag.NONE
    for i, f in enumerate(_COPIED_FLAGS):
        if word >> i & 1:
            flags |= f
    previous = Packet(StreamKind.LOWRES, (packet.seq - 1) % SEQ_MODULO,
                      packet.timestamp_ms - delta, flags, data[pos:])
    return own, previous
