"""Standard video codecs through PyAV, for the rate-quality comparison.

Each codec encodes the 256x256, 25 fps face canvas (yuv420p) as one elementary stream with
one keyframe at the start and no further forced ones (a long GOP, like talkcodec's single
identity frame), at a constant-quality setting from a ladder that runs down to the
encoder's quality floor. Rate is counted from the produced packets: the sum of the encoded
packet sizes PyAV returns plus the codec's out-of-band headers (extradata) if any; no
container bytes are counted (no MP4/WebM/IVF overhead).

x264 always writes an SEI user-data message carrying its version and full option string
(about 0.6 KB in the first packet; x265's is turned off with ``info=0``). It carries nothing
a decoder uses, so its bytes are not counted (the packet is still decoded whole).

Decoders: h264, hevc and vp9 are FFmpeg's native ones; AV1 is decoded by libdav1d, which
this PyAV build (18.1, bundled FFmpeg) includes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np


@dataclass(frozen=True)
class StandardCodec:
    """One codec: its encoder and decoder names and the constant-quality ladder."""

    name: str
    encoder: str
    decoder: str
    quality_option: str  # the option the ladder sets (crf for all four here)
    ladder: tuple[int, ...]  # best quality first, down to the encoder's floor
    quick_ladder: tuple[int, ...]
    options: tuple[tuple[str, str], ...] = ()

    def encoder_options(self, quality: int, n_frames: int) -> dict[str, str]:
        gop = str(max(n_frames, 1))
        opts = dict(self.options)
        opts[self.quality_option] = str(quality)
        if self.encoder == "libx264":
            opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        elif self.encoder == "libx265":
            opts["x265-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0:info=0:log-level=error"
        elif self.encoder == "libsvtav1":
            opts["svtav1-params"] = "keyint=-1:scd=0"  # -1: no keyframe after the first
        return opts


CODECS: dict[str, StandardCodec] = {
    "H.264": StandardCodec(
        "H.264", "libx264", "h264", "crf", (23, 31, 38, 44, 51), (23, 38, 51),
        (("preset", "medium"),),
    ),
    "H.265": StandardCodec(
        "H.265", "libx265", "hevc", "crf", (23, 31, 38, 44, 51), (23, 38, 51),
        (("preset", "medium"),),
    ),
    "VP9": StandardCodec(
        "VP9", "libvpx-vp9", "vp9", "crf", (20, 40, 52, 63), (20, 52, 63),
        (("b", "0"), ("deadline", "good"), ("cpu-used", "4"), ("row-mt", "1")),
    ),
    "AV1": StandardCodec(
        "AV1", "libsvtav1", "libdav1d", "crf", (20, 40, 52, 63), (20, 52, 63),
        (("preset", "8"),),
    ),
}


def h264_user_data_sei_bytes(data: bytes) -> int:
    """Bytes of the SEI NAL units (type 6) in an Annex-B H.264 packet, start codes included.

    x264 puts only its user-data-unregistered banner there at these settings."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i)
        i = data.find(b"\x00\x00\x01", i + 3)
    total = 0
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(data)
        if start + 3 < len(data) and data[start + 3] & 0x1F == 6:
            lead = 1 if start > 0 and data[start - 1] == 0 else 0  # 4-byte start code
            total += end - start + lead
    return total


@dataclass
class EncodedStream:
    """What one encoding produced: the packets' bytes and the decoded frames."""

    codec: str
    quality: int
    packet_sizes: list[int]  # counted bytes per packet
    header_bytes: int
    frames: np.ndarray  # (T, H, W, 3) uint8, decoded
    encode_s: float = 0.0

    @property
    def bits(self) -> int:
        return 8 * (sum(self.packet_sizes) + self.header_bytes)


def encode_decode(
    frames: np.ndarray, codec: StandardCodec, quality: int, fps: int = 25, threads: int = 1
) -> EncodedStream:
    """Encode (T, H, W, 3) uint8 RGB frames and decode them back; count the stream's bytes."""
    import time

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or len(x) == 0:
        raise ValueError(f"expected non-empty (T, H, W, 3) uint8 frames, got {x.shape} {x.dtype}")
    n, h, w, _ = x.shape
    enc = av.CodecContext.create(codec.encoder, "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, fps)
    enc.framerate = Fraction(fps, 1)
    enc.thread_count = threads
    enc.options = codec.encoder_options(quality, n)
    start = time.perf_counter()
    packets: list[av.Packet] = []
    for i, rgb in enumerate(x):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        vf = vf.reformat(format="yuv420p")
        vf.pts = i
        vf.time_base = enc.time_base
        packets.extend(enc.encode(vf))
    packets.extend(enc.encode(None))
    encode_s = time.perf_counter() - start
    header = bytes(enc.extradata or b"")

    def uncounted(p: av.Packet) -> int:
        return h264_user_data_sei_bytes(bytes(p)) if codec.encoder == "libx264" else 0

    dec = av.CodecContext.create(codec.decoder, "r")
    dec.thread_count = threads
    if header:
        dec.extradata = header
    decoded: list[np.ndarray] = []
    for p in packets:
        decoded.extend(f.to_ndarray(format="rgb24") for f in dec.decode(p))
    decoded.extend(f.to_ndarray(format="rgb24") for f in dec.decode(None))
    if len(decoded) != n:
        raise RuntimeError(f"{codec.name} q={quality}: decoded {len(decoded)} of {n} frames")
    return EncodedStream(
        codec=codec.name,
        quality=quality,
        packet_sizes=[p.size - uncounted(p) for p in packets],
        header_bytes=len(header),
        frames=np.stack(decoded),
        encode_s=encode_s,
    )
