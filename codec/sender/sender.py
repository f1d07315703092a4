"""The sender: 256x256 canvas frames + speech -> talkcodec packets.

Streaming API (the live call and the file encoder use the same object)::

    sender = Sender(SenderConfig())
    packets = sender.start(identity_image)          # CONFIG + IDENTITY
    packets += sender.push_canvas_frame(img, ts_ms)  # a LOWRES packet on the low-res grid
    packets += sender.push_audio(pcm, ts_ms)         # AUDIO packets, one Opus packet each
    packets += sender.finish()                       # CONFIG with the END flag

Each stream kind counts its own sequence numbers. The CONFIG packet goes out at start,
again with the first intra frame after every ``config_period_s`` (so a receiver that
missed it, or joined late, recovers), and with the END flag at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from codec import AUDIO_RATE, CANVAS_FPS, CANVAS_SIZE
from codec.bitstream.config import AudioCodec, StreamConfig, encode_config
from codec.bitstream.identity_codec import encode_identity, parse_format
from codec.bitstream.lowres_codec import LowResEncoder, LowResParams
from codec.bitstream.packet import SEQ_MODULO, Packet, PacketFlag, StreamKind
from codec.errors import InputError
from codec.sender.downsample import box_downsample, lowres_factor
from codec.types import FaceClip, IdentityFrame

_HALF_CANVAS_FRAME_MS = 500.0 / CANVAS_FPS


@dataclass
class SenderConfig:
    lowres_size: int = 8
    lowres_fps: int = 5
    intra_period_s: float = 2.0
    quant: float = 6.0  # luma quantiser step (grey levels); multiple of 0.25
    chroma_scale: float = 1.0
    identity_format: str = "avif"
    identity_quality: int | None = None  # None: the format's default
    audio_bitrate: int = 8000
    # Opus frame length. Each Opus packet pays an 11-byte talkcodec header, so 20 ms frames
    # cost 4.4 kbit/s of headers; 60 ms frames cost 1.5 kbit/s for 40 ms more audio latency
    # (the 8x8 stream at 5 fps already buffers 200 ms).
    audio_frame_ms: int = 60
    config_period_s: float = 10.0

    def lowres_params(self) -> LowResParams:
        period = max(1, int(round(self.intra_period_s * self.lowres_fps)))
        return LowResParams(self.lowres_size, self.lowres_fps, round(self.quant * 4) / 4,
                            round(self.chroma_scale * 16) / 16, period)

    def stream_config(self, with_audio: bool = True) -> StreamConfig:
        return StreamConfig(
            lowres=self.lowres_params(),
            audio_codec=AudioCodec.OPUS if with_audio else AudioCodec.NONE,
            audio_rate=AUDIO_RATE,
            audio_bitrate=self.audio_bitrate if with_audio else 0,
        )


class Sender:
    def __init__(self, config: SenderConfig | None = None, *, with_audio: bool = True) -> None:
        self.config = config or SenderConfig()
        self.with_audio = with_audio
        self.stream_config = self.config.stream_config(with_audio)
        self._config_payload = encode_config(self.stream_config)
        self._identity_format = parse_format(self.config.identity_format)
        self._lowres = LowResEncoder(self.stream_config.lowres)
        self._factor = lowres_factor(CANVAS_SIZE, self.config.lowres_size)
        self._seq = {kind: 0 for kind in StreamKind}
        self._next_lowres_ms: float | None = None
        self._last_config_ms = 0
        self._last_ts = 0
        self._refresh_id = 0
        self._opus: Any = None
        self._audio_offset_ms: int | None = None
        self._started = False

    # ---- packets ---------------------------------------------------------------------
    def _packet(self, kind: StreamKind, ts_ms: int, payload: bytes,
                flags: PacketFlag = PacketFlag.NONE) -> Packet:
        seq = self._seq[kind]
        self._seq[kind] = (seq + 1) % SEQ_MODULO
        self._last_ts = max(self._last_ts, ts_ms)
        return Packet(kind, seq, ts_ms, flags, payload)

    def _config_packet(self, ts_ms: int, flags: PacketFlag = PacketFlag.NONE) -> Packet:
        self._last_config_ms = ts_ms
        return self._packet(StreamKind.CONFIG, ts_ms, self._config_payload, flags)

    # ---- streaming API -----------------------------------------------------------------
    def start(self, identity_image: np.ndarray, ts_ms: int = 0) -> list[Packet]:
        """CONFIG and the IDENTITY frame; call once before anything else."""
        if self._started:
            raise RuntimeError("sender already started")
        self._started = True
        identity = IdentityFrame(_check_canvas(identity_image), ts_ms, self._refresh_id)
        payload = encode_identity(identity, self._identity_format, self.config.identity_quality)
        return [self._config_packet(ts_ms), self._packet(StreamKind.IDENTITY, ts_ms, payload)]

    def refresh_identity(self, image: np.ndarray, ts_ms: int) -> list[Packet]:
        """A new identity frame (REFRESH flag, next refresh id, modulo 256)."""
        self._require_started()
        self._refresh_id = (self._refresh_id + 1) % 256
        identity = IdentityFrame(_check_canvas(image), ts_ms, self._refresh_id)
        payload = encode_identity(identity, self._identity_format, self.config.identity_quality)
        return [self._config_packet(ts_ms),
                self._packet(StreamKind.IDENTITY, ts_ms, payload, PacketFlag.REFRESH)]

    def request_intra(self) -> None:
        """Make the next low-res frame an intra frame (e.g. on a receiver's loss report)."""
        self._lowres.force_intra()

    def push_canvas_frame(self, image: np.ndarray, ts_ms: int) -> list[Packet]:
        """One 25 fps canvas frame; a LOWRES packet when it falls on the low-res grid."""
        self._require_started()
        canvas = _check_canvas(image)
        if self._next_lowres_ms is None:
            self._next_lowres_ms = float(ts_ms)
        if ts_ms + _HALF_CANVAS_FRAME_MS <= self._next_lowres_ms:
            return []
        while self._next_lowres_ms < ts_ms + _HALF_CANVAS_FRAME_MS:
            self._next_lowres_ms += 1000.0 / self.config.lowres_fps
        pixels = box_downsample(canvas, self._factor)
        payload, intra = self._lowres.encode(pixels)
        out: list[Packet] = []
        if intra and ts_ms - self._last_config_ms >= 1000 * self.config.config_period_s:
            out.append(self._config_packet(ts_ms))
        flags = PacketFlag.INTRA if intra else PacketFlag.NONE
        out.append(self._packet(StreamKind.LOWRES, ts_ms, payload, flags))
        return out

    def push_audio(self, pcm: np.ndarray, ts_ms: int) -> list[Packet]:
        """16 kHz mono float32 speech starting at ts_ms (contiguous with earlier pushes)."""
        self._require_started()
        if not self.with_audio:
            return []
        samples = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(samples)):
            raise InputError("audio has non-finite samples")
        if self._opus is None:
            from codec.audio.opus import OpusEncoder

            self._opus = OpusEncoder(bitrate=self.config.audio_bitrate,
                                     frame_ms=self.config.audio_frame_ms)
            self._audio_offset_ms = ts_ms
        assert self._audio_offset_ms is not None
        return [self._packet(StreamKind.AUDIO, self._audio_offset_ms + int(t), bytes(data))
                for data, t in self._opus.encode(np.clip(samples, -1.0, 1.0))]

    def finish(self, end_ms: int | None = None) -> list[Packet]:
        """Flush the audio encoder and mark the end of the stream: a CONFIG packet with the
        END flag whose timestamp is ``end_ms`` (the stream's duration), by default the
        latest timestamp sent."""
        self._require_started()
        out: list[Packet] = []
        flush = getattr(self._opus, "flush", None)
        if callable(flush):
            assert self._audio_offset_ms is not None
            out += [self._packet(StreamKind.AUDIO, self._audio_offset_ms + int(t), bytes(d))
                    for d, t in flush()]
        end = self._last_ts if end_ms is None else max(int(end_ms), 0)
        out.append(self._config_packet(end, PacketFlag.END))
        return out

    def encode_clip(self, clip: FaceClip) -> list[Packet]:
        """A whole canvas clip -> packets in send order (identity = first canvas frame)."""
        if clip.n_frames == 0:
            raise InputError("clip has no frames")
        if abs(clip.fps - CANVAS_FPS) > 1e-6:
            raise InputError(f"clip must be at {CANVAS_FPS} fps, not {clip.fps}")
        packets = self.start(clip.frames[0])
        audio = clip.audio if self.with_audio else None
        per_frame = AUDIO_RATE // CANVAS_FPS
        for k, ts in enumerate(clip.timestamps_ms()):
            if audio is not None and k * per_frame < len(audio):
                packets += self.push_audio(audio[k * per_frame : (k + 1) * per_frame], int(ts))
            packets += self.push_canvas_frame(clip.frames[k], int(ts))
        if audio is not None and clip.n_frames * per_frame < len(audio):
            packets += self.push_audio(audio[clip.n_frames * per_frame :],
                                       int(clip.n_frames * 1000 / CANVAS_FPS))
        return packets + self.finish(end_ms=int(round(clip.duration_s * 1000)))

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("call start(identity_image) first")


def _check_canvas(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.shape != (CANVAS_SIZE, CANVAS_SIZE, 3) or img.dtype != np.uint8:
        raise InputError(f"canvas frame must be (256, 256, 3) uint8, got {img.shape} {img.dtype}")
    return np.ascontiguousarray(img)
