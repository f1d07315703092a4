"""Bitstream: packets with a versioned header, the low-res stream codec, the identity-frame
codec, the CONFIG payload, the packets -> events decoder and the file container."""

from codec.bitstream.packet import Packet, PacketFlag, StreamKind, decode_packet, encode_packet

__all__ = ["Packet", "PacketFlag", "StreamKind", "decode_packet", "encode_packet"]
