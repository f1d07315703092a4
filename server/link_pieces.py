"""Large reliable-channel messages (the identity frame) cut into pieces on the link.

SCTP sends a data-channel message's chunks back to back, and aiortc has one send queue for
every channel: an 8x8 message sent while the ~5 kB identity frame is on its way waits
behind all of it (2.5-4 s at 16 kbit/s). ``SenderLink`` therefore cuts the identity into
pieces and sends the next piece only when the one before it is acknowledged, so the 8x8
stream's messages go out between them from the first frame (issue 14: the receiver shows
the voice face until the identity is in). The receiver worker joins the pieces back into
the talkcodec packet.

A piece: ``PIECE_TAG`` (never the first byte of a talkcodec packet, whose magic is 0xC5),
its index, the piece count, then the bytes. Whole messages (not tagged) pass through.
"""

from __future__ import annotations

PIECE_TAG = b"TCpc"
MAX_PIECES = 255
#: Bytes of a message per piece: one SCTP chunk of ~1 kB on the wire, ~0.5 s at 16 kbit/s.
PIECE_BYTES = 900


def split_message(data: bytes, size: int = PIECE_BYTES) -> list[bytes]:
    """``data`` as it is when it fits in ``size``, else tagged pieces."""
    if len(data) <= size:
        return [data]
    size = max(size, -(-len(data) // MAX_PIECES))
    parts = [data[i:i + size] for i in range(0, len(data), size)]
    return [PIECE_TAG + bytes([i, len(parts)]) + p for i, p in enumerate(parts)]


class PieceJoiner:
    """Reassembles pieces arriving in order (a reliable, ordered channel); anything else
    passes through. A piece out of turn, or one too many bytes in all, drops the message
    being joined (hostile input never raises)."""

    def __init__(self, max_bytes: int = 300_000) -> None:
        self.max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._count = 0
        self._size = 0

    def push(self, message: bytes) -> bytes | None:
        """The whole message when ``message`` completes one (or is whole), else None."""
        if not message.startswith(PIECE_TAG):
            return message
        head = len(PIECE_TAG)
        if len(message) < head + 2:
            return None
        index, count, body = message[head], message[head + 1], message[head + 2:]
        if index == 0:
            self._parts, self._count, self._size = [], count, 0
        if count == 0 or count != self._count or index != len(self._parts):
            self._parts, self._count, self._size = [], 0, 0  # out of turn: give up on it
            return None
        self._size += len(body)
        if self._size > self.max_bytes:
            self._parts, self._count, self._size = [], 0, 0
            return None
        self._parts.append(body)
        if len(self._parts) < count:
            return None
        whole = b"".join(self._parts)
        self._parts, self._count, self._size = [], 0, 0
        return whole
