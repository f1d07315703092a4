"""The identity frame's pieces on the reliable channel (server/link_pieces.py) and the
sender's identity prepared off its encoder thread (Sender.prepare_identity): issue 14."""

from __future__ import annotations

import numpy as np

from codec.bitstream.packet import StreamKind
from codec.bitstream.stream import StreamDecoder
from codec.sender.sender import Sender, SenderConfig
from server.link_pieces import MAX_PIECES, PIECE_BYTES, PIECE_TAG, PieceJoiner, split_message


def test_small_messages_pass_whole() -> None:
    joiner = PieceJoiner()
    for data in (b"", b"\xc5abc", bytes(PIECE_BYTES)):
        assert split_message(data) == [data]
        assert joiner.push(data) == data


def test_large_message_round_trips_in_pieces() -> None:
    data = np.random.default_rng(0).integers(0, 256, 5337, dtype=np.uint8).tobytes()
    pieces = split_message(data)
    assert len(pieces) == -(-len(data) // PIECE_BYTES)
    assert all(p.startswith(PIECE_TAG) and len(p) <= PIECE_BYTES + 6 for p in pieces)
    joiner = PieceJoiner()
    assert [joiner.push(p) for p in pieces[:-1]] == [None] * (len(pieces) - 1)
    assert joiner.push(pieces[-1]) == data
    # A whole message between two joined ones passes through.
    assert joiner.push(b"\xc5x") == b"\xc5x"
    assert b"".join(x for p in split_message(data) if (x := joiner.push(p))) == data


def test_huge_message_stays_within_the_piece_count() -> None:
    data = bytes(PIECE_BYTES * MAX_PIECES * 2)
    pieces = split_message(data)
    assert len(pieces) <= MAX_PIECES
    joiner = PieceJoiner(max_bytes=len(data))
    assert [j for p in pieces if (j := joiner.push(p)) is not None] == [data]


def test_hostile_pieces_never_raise_and_never_join_wrongly() -> None:
    data = bytes(range(256)) * 20
    pieces = split_message(data)
    joiner = PieceJoiner()
    # Out of turn: a later piece first, a repeated piece, a wrong count.
    assert joiner.push(pieces[2]) is None
    assert joiner.push(pieces[0]) is None and joiner.push(pieces[0]) is None
    assert joiner.push(pieces[1]) is None  # the restart at piece 0 was given up on
    forged = PIECE_TAG + bytes([1, 99]) + b"x"
    for junk in (PIECE_TAG, PIECE_TAG + b"\x00", PIECE_TAG + b"\x00\x00", forged):
        assert joiner.push(junk) is None
    # After the junk, a whole message still joins.
    assert [j for p in pieces if (j := joiner.push(p)) is not None] == [data]
    # Too many bytes in all: dropped, not kept.
    small = PieceJoiner(max_bytes=1000)
    assert all(small.push(p) is None for p in pieces)
    assert small._size == 0


def test_identity_prepared_apart_decodes_like_the_started_one() -> None:
    """start(None) gives CONFIG alone; the identity prepared on another thread and sent
    later decodes to the same identity frame as start(image) gives."""
    rng = np.random.default_rng(1)
    image = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    config = SenderConfig(motion=False)
    a, b = Sender(config, with_audio=False), Sender(config, with_audio=False)
    at_once = a.start(image, 0)
    first = b.start(None, 0)
    assert [p.kind for p in first] == [StreamKind.CONFIG]
    later = b.identity_packets(b.prepare_identity(image, 0))
    assert [p.kind for p in at_once[1:]] == [p.kind for p in later]
    assert [p.payload for p in at_once[1:]] == [p.payload for p in later]
    dec = StreamDecoder()
    identities = [i for p in first + later for i in dec.push(p).identities]
    assert len(identities) == 1 and identities[0].image.shape == image.shape
