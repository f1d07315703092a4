"""The sender: 256x256 canvas frames + speech -> talkcodec packets.

Streaming API (the live call and the file encoder use the same object)::

    sender = Sender(SenderConfig())
    packets = sender.start(identity_image)          # CONFIG + IDENTITY (+ MOTION anchor)
    packets += sender.push_canvas_frame(img, ts_ms)  # a LOWRES packet on the low-res grid,
                                                     # carrying the motion group
    packets += sender.push_audio(pcm, ts_ms)         # AUDIO packets, one Opus packet each
    packets += sender.finish()                       # CONFIG with the END flag

The motion code (on by default): the sender measures the face's 68 landmarks on every
canvas frame on the code's grid (``codec/sender/landmarks.py``), and each LOWRES packet
carries the group of samples since the previous one (``codec/bitstream/motion_codec.py``).
Its anchor, the identity frame's own landmarks, follows each IDENTITY packet. When the
identity frame shows no usable face, no code is sent until an identity frame that does.

Each stream kind counts its own sequence numbers. The CONFIG packet goes out at start,
again with the first intra frame after every ``config_period_s`` (so a receiver that
missed it, or joined late, recovers), and with the END flag at the end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from codec import AUDIO_RATE, CANVAS_FPS, CANVAS_SIZE
from codec.bitstream.config import AudioCodec, StreamConfig, encode_config
from codec.bitstream.identity_codec import encode_identity, parse_format
from codec.bitstream.lowres_codec import LowResEncoder, LowResParams
from codec.bitstream.motion_codec import (
    GROUP_TYPE,
    MotionEncoder,
    MotionParams,
    bundle,
    encode_anchor,
)
from codec.bitstream.packet import SEQ_MODULO, Packet, PacketFlag, StreamKind, encode_packet
from codec.bitstream.redundancy import with_previous
from codec.errors import InputError
from codec.sender.downsample import box_downsample, lowres_factor
from codec.types import FaceClip, IdentityFrame

_HALF_CANVAS_FRAME_MS = 500.0 / CANVAS_FPS
# Opus bit/s of a live call (files: ``SenderConfig.audio_bitrate``, 8000). On a link
# counted with UDP/IPv4 headers, 120 ms Opus packets pay 3.3 kbit/s of RTP/SRTP/UDP/IP and
# the 8x8 messages with their copy ~6.8 kbit/s (~86 B of SCTP/DTLS/UDP/IP each): at 8000
# the call offered 18.5 kbit/s to a 16 kbit/s link, at 6000 it offers 16.1 (issue 16;
# BENCHMARKS.md, "Loss on the 8x8 stream"). Speech envelope correlation 0.985 against 0.993
# (``benchmarks/bench_opus.py``).
LIVE_AUDIO_BITRATE = 6000
log = logging.getLogger(__name__)


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
    # The motion code: landmarks measured here, sent with each 8x8 frame.
    motion: bool = True
    motion_period_ms: int = 80  # 12.5 samples/s; 40 (25/s) and 200 (5/s) are settings
    motion_quant: float = 6.0
    motion_coeffs: int = 16
    # The file encoder's identity frame: the best face of the first second, not frame 0
    choose_identity: bool = False  # tried: helped the 8x8-only receivers, hurt the code on LRS2
    # encode_clip holds the 8x8 stream + the code + their headers under this (None: off):
    # a clip over it is encoded again with coarser quantisers (``encode_clip``).
    rate_target_bps: float | None = 1900.0
    rate_passes: int = 4
    # Each 8x8 packet also carries the previous one (packet flag REDUNDANT, issue 16): a
    # single lost datagram costs no frame. Live links only (SenderConfig.live()): a file
    # loses nothing, and decoders before the flag cannot read it. ``redundancy_hold_s``:
    # only for that long after the receiver last reported a loss (``request_intra``); None
    # (default): always. Tried at 20 s: no better on a lossless 16 kbit/s link (the start's
    # intra request turns it on, the copy's own queue drops keep it on) and no better at
    # 5-20 % loss (86-90 % of the frames decoded against 88-100 %; BENCHMARKS.md, issue 16).
    redundancy: bool = False
    redundancy_hold_s: float | None = None

    @classmethod
    def live(cls) -> SenderConfig:
        """Settings for a live call, which cannot re-encode to hold its rate like
        ``encode_clip`` does: the code's quantiser doubled (12 against 6), so the 8x8
        stream + code stay under the 2 kbit/s budget. At 8 the browser call measured 2.05
        kbit/s once the landmarker stopped lagging the lips (more motion to code). Each
        8x8 packet carries a copy of the previous one (``redundancy``), for loss. Speech at
        ``LIVE_AUDIO_BITRATE``, so that the link, the copy and every header included, fits
        a 16 kbit/s link counted with UDP/IPv4 headers."""
        return cls(motion_quant=12.0, redundancy=True, audio_bitrate=LIVE_AUDIO_BITRATE)

    def motion_params(self, basis_id: int) -> MotionParams:
        period = max(1, int(round(self.intra_period_s * self.lowres_fps)))
        return MotionParams(self.motion_period_ms, round(self.motion_quant * 16) / 16,
                            self.motion_coeffs, min(255, period), basis_id)

    def lowres_params(self) -> LowResParams:
        period = max(1, int(round(self.intra_period_s * self.lowres_fps)))
        return LowResParams(self.lowres_size, self.lowres_fps, round(self.quant * 4) / 4,
                            round(self.chroma_scale * 16) / 16, period)

    def stream_config(self, with_audio: bool = True,
                      motion: MotionParams | None = None) -> StreamConfig:
        return StreamConfig(
            lowres=self.lowres_params(),
            audio_codec=AudioCodec.OPUS if with_audio else AudioCodec.NONE,
            audio_rate=AUDIO_RATE,
            audio_bitrate=self.audio_bitrate if with_audio else 0,
            motion=motion,
        )


@dataclass(frozen=True)
class PreparedIdentity:
    """An identity frame coded and measured off the encoder's thread
    (``Sender.prepare_identity``)."""

    identity: IdentityFrame
    payload: bytes
    landmarks: Any  # the landmarker's sample of its face, or None (no motion code)


class Sender:
    def __init__(self, config: SenderConfig | None = None, *, with_audio: bool = True) -> None:
        self.config = config or SenderConfig()
        self.with_audio = with_audio
        self._motion: MotionEncoder | None = None
        self._landmarker: Any = None
        motion_params = self._setup_motion() if self.config.motion else None
        self.stream_config = self.config.stream_config(with_audio, motion_params)
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
        self._anchored = False  # the current identity frame has a face the code can use
        self._pending: list[tuple[int, np.ndarray | None, np.ndarray | None]] = []
        self._background: Any = None
        self._next_sample_ms: float | None = None
        self.motion_bytes = 0  # motion-code bytes sent (groups and anchors)
        self._previous_lowres: Packet | None = None  # as sent without its copy (redundancy)
        self._copy_until_ms = -1.0  # redundancy: copies until this timestamp

    def _setup_motion(self) -> MotionParams | None:
        from codec.bitstream.motion_basis import load_basis
        from codec.sender.landmarks import FaceLandmarker

        try:
            basis = load_basis()
        except (OSError, ValueError) as exc:
            basis = None
            log.warning("motion basis unusable: %s", exc)
        if basis is None:
            log.warning("no motion basis installed: sending without the motion code")
            return None
        params = self.config.motion_params(basis.basis_id)
        self._motion = MotionEncoder(params, basis)
        self._landmarker = FaceLandmarker(fps=params.fps)
        return params

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
    def start(self, identity_image: np.ndarray | None, ts_ms: int = 0) -> list[Packet]:
        """CONFIG and the IDENTITY frame; call once before anything else. With no image,
        CONFIG alone: the 8x8 stream may start at once, and the identity frame follows
        (``prepare_identity`` then ``identity_packets``; a live link, issue 14)."""
        if self._started:
            raise RuntimeError("sender already started")
        self._started = True
        if identity_image is None:
            return [self._config_packet(ts_ms)]
        return [self._config_packet(ts_ms), *self.identity_packets(
            self.prepare_identity(identity_image, ts_ms))]

    def prepare_identity(self, image: np.ndarray, ts_ms: int) -> PreparedIdentity:
        """The costly half of the first identity frame (its image coding and the face's
        landmarks, ~0.5-1 s on a loaded CPU). It changes no sender state, so it may run on
        another thread while this sender encodes the 8x8 stream."""
        identity = IdentityFrame(_check_canvas(image), ts_ms, self._refresh_id)
        payload = encode_identity(identity, self._identity_format, self.config.identity_quality)
        sample = None
        if self._motion is not None:
            from codec.sender.landmarks import FaceLandmarker

            sample = FaceLandmarker(smooth=False).measure(identity.image)
        return PreparedIdentity(identity, payload, sample)

    def identity_packets(self, prepared: PreparedIdentity) -> list[Packet]:
        """IDENTITY and its MOTION anchor, from ``prepare_identity`` (the first identity
        frame; the motion code starts with it)."""
        self._require_started()
        ts = prepared.identity.timestamp_ms
        return [self._packet(StreamKind.IDENTITY, ts, prepared.payload),
                *self._anchor_packets(prepared.identity, prepared.landmarks)]

    def refresh_identity(self, image: np.ndarray, ts_ms: int) -> list[Packet]:
        """A new identity frame (REFRESH flag, next refresh id, modulo 256)."""
        self._require_started()
        self._refresh_id = (self._refresh_id + 1) % 256
        identity = IdentityFrame(_check_canvas(image), ts_ms, self._refresh_id)
        payload = encode_identity(identity, self._identity_format, self.config.identity_quality)
        return [self._config_packet(ts_ms),
                self._packet(StreamKind.IDENTITY, ts_ms, payload, PacketFlag.REFRESH),
                *self._anchor_packets(identity)]

    def _anchor_packets(self, identity: IdentityFrame, sample: Any = None) -> list[Packet]:
        """The MOTION anchor (the identity frame's landmarks, measured here unless given),
        when the code is on and the identity frame shows a face it can describe."""
        if self._motion is None:
            return []
        from codec.sender.landmarks import FaceLandmarker

        if sample is None:
            sample = FaceLandmarker(smooth=False).measure(identity.image)
        self._anchored = sample.confident and sample.points is not None
        self._pending = []
        if not self._anchored:
            log.info("identity frame without a usable face: no motion code until the next")
            return []
        assert sample.points is not None
        from codec.sender.background_motion import BackgroundMotion

        self._background = BackgroundMotion(identity.image, sample.points)
        self._motion.set_anchor(sample.points)
        self._motion.force_refresh()
        payload = encode_anchor(identity.refresh_id, self._motion.params.basis_id,
                                sample.points)
        self.motion_bytes += len(payload)
        return [self._packet(StreamKind.MOTION, identity.timestamp_ms, payload)]

    def request_intra(self) -> None:
        """Make the next low-res frame an intra frame (e.g. on a receiver's loss report);
        with ``redundancy``, the 8x8 packets carry their predecessor's copy for the next
        ``redundancy_hold_s``."""
        self._lowres.force_intra()
        if self.config.redundancy_hold_s is not None:
            self._copy_until_ms = self._last_ts + 1000.0 * self.config.redundancy_hold_s
        if self._motion is not None:
            self._motion.force_refresh()

    def push_canvas_frame(self, image: np.ndarray, ts_ms: int) -> list[Packet]:
        """One 25 fps canvas frame; a LOWRES packet when it falls on the low-res grid."""
        self._require_started()
        canvas = _check_canvas(image)
        self._sample_motion(canvas, ts_ms)
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
        if self._motion is not None and self._anchored:
            group = self._motion.encode_group(ts_ms, self._pending,
                                              seq=self._seq[StreamKind.LOWRES])
            self._pending = []
            self.motion_bytes += len(group)
            payload = bundle(payload, group)
            flags |= PacketFlag.MOTION
        packet = self._packet(StreamKind.LOWRES, ts_ms, payload, flags)
        if self.config.redundancy:
            hold = self.config.redundancy_hold_s
            previous, self._previous_lowres = self._previous_lowres, packet
            if hold is None or ts_ms <= self._copy_until_ms:
                packet = with_previous(packet, previous)
        out.append(packet)
        return out

    def _sample_motion(self, canvas: np.ndarray, ts_ms: int) -> None:
        """Measure the face on the code's grid; samples wait for the next 8x8 frame."""
        if self._motion is None or not self._anchored:
            return
        period = self._motion.params.period_ms
        if self._next_sample_ms is None:
            self._next_sample_ms = float(ts_ms)
        if ts_ms + _HALF_CANVAS_FRAME_MS <= self._next_sample_ms:
            return
        while self._next_sample_ms < ts_ms + _HALF_CANVAS_FRAME_MS:
            self._next_sample_ms += period
        sample = self._landmarker.measure(canvas)
        points = sample.points if sample.confident else None
        background = self._background.measure(canvas) if points is not None else None
        self._pending.append((ts_ms, points, background))
        del self._pending[:-15]  # bounded: at most one group's worth waits

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
        if self._motion is not None and self._anchored and self._pending:
            # Samples after the last 8x8 frame: a group of their own.
            ts = self._pending[-1][0]
            group = self._motion.encode_group(ts, self._pending)
            self._pending = []
            self.motion_bytes += len(group)
            out.append(self._packet(StreamKind.MOTION, ts, bytes([GROUP_TYPE]) + group))
        out.append(self._config_packet(end, PacketFlag.END))
        return out

    def encode_clip(self, clip: FaceClip) -> list[Packet]:
        """A whole canvas clip -> packets in send order. The identity frame is the best face
        of the first second (``identity_choice.py``) when ``choose_identity`` is on, else
        the first canvas frame.

        Rate control (``rate_target_bps``): when the 8x8 stream, the motion code, their
        packet headers and the CONFIG packets come to more than the target over the clip,
        the clip is encoded again with the 8x8 quantiser 1.3 times coarser and the code's
        2 steps coarser, up to ``rate_passes`` encodings; the first that fits is kept (else
        the last). Every pass is an ordinary stream: the quantisers travel in the CONFIG."""
        if self._started:
            raise RuntimeError("encode_clip needs a fresh Sender")
        config = self.config
        packets: list[Packet] = []
        for attempt in range(max(1, config.rate_passes if config.rate_target_bps else 1)):
            sender = self if attempt == 0 else Sender(config, with_audio=self.with_audio)
            packets = sender._encode_clip(clip)
            target = config.rate_target_bps
            if not target or video_bits(packets) / max(clip.duration_s, 1e-3) <= target:
                break
            config = replace(config, quant=round(config.quant * 1.3 * 4) / 4,
                             motion_quant=min(15.0, config.motion_quant + 2.0))
        if config is not self.config:
            log.info("rate control: 8x8 quantiser %.2f, code quantiser %.1f", config.quant,
                     config.motion_quant)
        return packets

    def _encode_clip(self, clip: FaceClip) -> list[Packet]:
        if clip.n_frames == 0:
            raise InputError("clip has no frames")
        if abs(clip.fps - CANVAS_FPS) > 1e-6:
            raise InputError(f"clip must be at {CANVAS_FPS} fps, not {clip.fps}")
        first = 0
        if self.config.choose_identity:
            from codec.sender.identity_choice import choose_identity

            first = choose_identity(clip.frames[:CANVAS_FPS])
        packets = self.start(clip.frames[first])
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


def video_bits(packets: list[Packet]) -> int:
    """Bits of the rate target: 8x8 packets (with the code bundled in them), MOTION group
    packets and CONFIG packets, headers included; not the identity frame or its anchor."""
    from codec.bitstream.motion_codec import ANCHOR_TYPE

    total = 0
    for p in packets:
        if p.kind in (StreamKind.LOWRES, StreamKind.CONFIG) or (
                p.kind is StreamKind.MOTION and p.payload[:1] != bytes([ANCHOR_TYPE])):
            total += 8 * len(encode_packet(p))
    return total
