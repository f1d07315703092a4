"""Where the bits of a talkcodec stream go: identity frame, low-res stream, motion code,
audio, overhead.

The motion code counts its groups (bundled in LOWRES packets, with their length prefix);
the LOWRES packets' headers stay with the low-res stream. Its anchor (the identity frame's
landmarks, a MOTION packet sent with each identity frame) is one-time and counts with the
identity frame. ``video`` is the 8x8 stream + the code + their headers, the figure the
rate target is set on.

Overhead is everything that is not a media payload: packet headers (by kind), CONFIG
packets and the file container (file header, record lengths, end marker). Rates are over
the clip's duration; bits per pixel are over the 256x256, 25 fps output it decodes to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from codec import CANVAS_FPS, CANVAS_SIZE, FRAME_MS
from codec.bitstream.motion_codec import ANCHOR_TYPE, unbundle
from codec.bitstream.packet import Packet, PacketFlag, StreamKind, encode_packet
from codec.errors import BitstreamError

_MEDIA = {StreamKind.IDENTITY: "identity", StreamKind.LOWRES: "lowres", StreamKind.AUDIO: "audio",
          StreamKind.MOTION: "motion"}


def stream_stats(packets: Iterable[Packet], metadata: dict[str, Any] | None = None,
                 file_bytes: int | None = None) -> dict[str, Any]:
    """Bit breakdown of a packet stream (consumed once, streaming: nothing is kept).

    The duration is ``metadata["duration_s"]`` when given, else the END packet's timestamp,
    else the latest timestamp plus one frame. ``file_bytes`` (the container's size) adds
    the container overhead."""
    metadata = metadata or {}
    bits = {"identity": 0, "lowres": 0, "audio": 0, "motion": 0, "config": 0}
    headers = {"identity": 0, "lowres": 0, "audio": 0, "motion": 0}
    counts = {kind.name.lower(): 0 for kind in StreamKind}
    packet_bytes = 0
    end_ms, last_ms = 0, 0
    for p in packets:
        size = len(encode_packet(p))
        packet_bytes += size
        counts[p.kind.name.lower()] += 1
        last_ms = max(last_ms, p.timestamp_ms)
        if p.flags & PacketFlag.END:
            end_ms = p.timestamp_ms
        if p.kind is StreamKind.CONFIG:
            bits["config"] += 8 * size
        else:
            name = _MEDIA[p.kind]
            if p.kind is StreamKind.MOTION and p.payload[:1] == bytes([ANCHOR_TYPE]):
                name = "identity"  # the anchor is one-time, like the identity frame
            payload = len(p.payload)
            if p.kind is StreamKind.LOWRES and p.flags & PacketFlag.MOTION:
                try:
                    frame, _ = unbundle(p.payload)
                    bits["motion"] += 8 * (payload - len(frame))
                    payload = len(frame)
                except BitstreamError:
                    pass
            bits[name] += 8 * payload
            headers[name] += 8 * (size - len(p.payload))
    duration = end_ms / 1000.0 if end_ms > 0 else (last_ms + FRAME_MS) / 1000.0
    given = metadata.get("duration_s")
    if isinstance(given, (int, float)) and 0 < given < 1e7:
        duration = float(given)
    container = 8 * (file_bytes - packet_bytes) if file_bytes is not None else 0
    n_pixels = CANVAS_SIZE * CANVAS_SIZE * CANVAS_FPS * duration
    overhead = sum(headers.values()) + bits["config"] + container
    total = bits["identity"] + bits["lowres"] + bits["motion"] + bits["audio"] + overhead

    def rate(b: float) -> dict[str, float]:
        return {"bits": b, "kbit_per_s": b / duration / 1000.0, "bits_per_pixel": b / n_pixels}

    return {
        "duration_s": duration,
        "packets": counts,
        "identity": rate(bits["identity"]),
        "lowres": rate(bits["lowres"]),
        "lowres_with_headers": rate(bits["lowres"] + headers["lowres"]),
        "motion": rate(bits["motion"]),
        "video": rate(bits["lowres"] + headers["lowres"] + bits["motion"] + headers["motion"]),
        "audio": rate(bits["audio"]),
        "overhead": {
            **rate(overhead),
            "headers_bits": headers,
            "config_bits": bits["config"],
            "container_bits": container,
        },
        "total": rate(total),
        "total_without_identity": rate(total - bits["identity"] - headers["identity"]),
    }


def format_stats(stats: dict[str, Any]) -> str:
    o = stats["overhead"]
    lines = [
        f"duration {stats['duration_s']:.2f} s, packets "
        + ", ".join(f"{k} {v}" for k, v in stats["packets"].items()),
        f"{'part':28} {'bits':>10} {'kbit/s':>9} {'bits/pixel':>11}",
    ]
    rows = [
        ("identity frame + anchor", stats["identity"]),
        ("low-res stream (payload)", stats["lowres"]),
        ("low-res stream + headers", stats["lowres_with_headers"]),
        ("motion code", stats["motion"]),
        ("video: 8x8 + code + headers", stats["video"]),
        ("audio (Opus payload)", stats["audio"]),
        ("overhead", o),
        ("total", stats["total"]),
        ("total without identity", stats["total_without_identity"]),
    ]
    for name, r in rows:
        lines.append(f"{name:28} {r['bits']:10.0f} {r['kbit_per_s']:9.3f} "
                     f"{r['bits_per_pixel']:11.2e}")
    h = o["headers_bits"]
    lines.append(
        f"overhead = headers (identity {h['identity']}, low-res {h['lowres']}, motion "
        f"{h['motion']}, audio {h['audio']}) + config {o['config_bits']} + container {o['container_bits']} bits"
    )
    return "\n".join(lines)
