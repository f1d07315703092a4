"""The neural receiver: identity frame + 8x8 stream + speech -> 256x256 at 25 fps.

Runs four ONNX networks through ONNX Runtime (no torch at run time):
- ``identity_encoder`` once per identity frame (its encoding is cached);
- ``interpolator`` once per pair of consecutive low-res frames (5 -> 25 fps, cached);
- ``animator`` once per output frame: the interpolated 8x8 window around t, the identity
  encoding and the 200 ms log-mel window of the speech -> motion, mask and colour, which
  ``compose.compose_frame`` (numpy/OpenCV) turns into the warped, blended, back-projected
  256x256 frame;
- ``mouth`` once per output frame: speech features -> lip opening, which ``mouth.MouthWarp``
  applies to the identity frame's mouth (found once by dlib's 68-point predictor) before
  the animator's warp.

With the motion code (the sender's landmarks, ``Receiver.motion_at``), a frame is instead
the identity frame warped piecewise-affinely onto the decoded landmarks
(``landmark_warp.LandmarkWarp``: every pixel a pixel of the real identity frame, the
mouth cavity painted where the lips open wider than in it), back-projected onto the
interpolated 8x8 stream for colour and lighting (through a soft threshold of half its
quantiser step, ``BP_NOISE``: its coding noise is left out; the networks' frames too).
Frames the code does not cover (no anchor, the sender lost the face, a lost group before
the next refresh) are rendered by the networks as above; ``meta["motion"]`` says which path made each frame.

Cold start (issue 14): until the identity frame is decoded, and for a stream that never
carries one, the frames are the ``voice`` receiver's (the 8x8 stream and the speech alone,
``meta["identity"] == "voice"``) instead of a placeholder; output starts at the first 8x8
frame. When the identity frame arrives the picture cross-fades from the voice face to the
identity-based one over ``FADE_FRAMES`` frames (~0.5 s, ``meta["fade"]`` the new face's
weight), and then the voice receiver and its buffers are dropped: it costs the identity
path nothing. A replaced identity frame (a refresh) cross-fades the same way from the
face of the old one, kept for those frames only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec import FRAME_MS
from codec.models import find_model, load_verified, onnx_session
from codec.receiver.backproject import back_project
from codec.receiver.base import Receiver
from codec.receiver.landmark_warp import LandmarkWarp
from codec.receiver.neural.compose import compose_frame
from codec.receiver.neural.contract import (
    ANIMATOR,
    CANVAS,
    IDENTITY_ENCODER,
    INTERPOLATOR,
    MOUTH,
    N_BETWEEN,
    N_CONTEXT,
    NET_LOWRES,
    ROLES,
    WINDOW,
)
from codec.receiver.neural.mouth import (
    ANIMATOR_WINDOW,
    MOUTH_STRENGTH,
    MouthWarp,
    block_features,
    block_from_samples,
    block_span_ms,
    mouth_shape,
)
from codec.receiver.upsample import Upsampler
from codec.sender.downsample import box_downsample
from codec.types import AudioChunk, IdentityFrame, LowResFrame, OutputFrame

_CACHE_PAIRS = 16
#: Both paths back-project onto the 8x8 frame through a soft threshold of this fraction
#: of the 8x8 quantiser step (``back_project``'s and ``compose_frame``'s ``noise``): the
#: 8x8's coding noise (~2.5 grey levels RMS at step 6) is left out of an image whose low
#: frequencies are already about right. On val, with the code, +0.3 dB PSNR, +0.2 dB mouth
#: PSNR and FID 54.5 -> 42.8 over the plain back-projection (0.25, 0.75, 1.0 gave less);
#: the networks' path alone +0.15 dB PSNR and FID 58.3 -> 48.8 (BENCHMARKS.md).
BP_NOISE = 0.5
#: Output frames over which a new face fades in (12 at 25 fps: ~0.5 s).
FADE_FRAMES = 12

log = logging.getLogger(__name__)


@dataclass
class _IdentityState:
    """What the identity path renders from: one identity frame's encoding, image, mouth
    and landmark warp."""

    id_inputs: dict[str, np.ndarray]
    image: np.ndarray
    mouth: MouthWarp | None
    warp: LandmarkWarp | None


def _as_8x8(frame: LowResFrame) -> np.ndarray:
    """The networks see 8x8 frames; a 16x16 or 32x32 stream is box-averaged down to 8x8."""
    px = frame.pixels
    return px if px.shape[0] == NET_LOWRES else box_downsample(px, px.shape[0] // NET_LOWRES)


class NeuralReceiver(Receiver):
    name = "neural"
    mouth_strength = MOUTH_STRENGTH  # how far the mouth stage moves the lips (mouth.py)

    def __init__(self, *, low_latency: bool = False, canvas_size: int = CANVAS,
                 models_dir: Path | None = None, threads: int = 1,
                 use_audio: bool = True, use_mouth: bool = True, device: str | None = None,
                 use_motion: bool = True) -> None:
        super().__init__(low_latency=low_latency, canvas_size=canvas_size)
        if canvas_size != CANVAS:
            raise ValueError(f"the neural receiver renders {CANVAS}x{CANVAS} canvases only")
        # ``auto`` (the default, or $TALKCODEC_DEVICE): CUDA when onnxruntime-gpu is installed.
        device = device or os.environ.get("TALKCODEC_DEVICE", "auto")
        self.sessions = {role: onnx_session(load_verified(find_model(role, models_dir)),
                                            threads, device) for role in ROLES}
        self.providers = self.sessions[ANIMATOR.role].get_providers()
        self.use_audio = use_audio
        self.use_mouth = use_mouth
        self._mouth: MouthWarp | None = None
        self._id_inputs: dict[str, np.ndarray] = {}
        self._identity = np.zeros((CANVAS, CANVAS, 3), np.float32)
        self._between: dict[tuple[int, int], np.ndarray] = {}
        self.use_motion = use_motion
        self._warp: LandmarkWarp | None = None
        self._upsampler = Upsampler(CANVAS)
        self._last_path = "network"
        # Cold start: the voice receiver draws the frames until the identity frame comes.
        self._voice: Receiver | None = self._voice_receiver(low_latency)
        self.renders_without_identity = self._voice is not None
        self._voice_shown = False  # a voice frame was emitted (so the identity fades in)
        self._fade_from: Receiver | _IdentityState | None = None
        self._fade_start_ms = 0.0
        self._last_fade: float | None = None

    @staticmethod
    def _voice_receiver(low_latency: bool) -> Receiver | None:
        """The ``voice`` receiver for the cold start, or None (its model is missing: the
        base class's placeholder then stands in)."""
        try:
            from codec.receiver.voice import VoiceReceiver

            return VoiceReceiver(low_latency=low_latency)
        except Exception as exc:  # noqa: BLE001 - a missing or damaged model costs the cold start only
            log.warning("no voice face before the identity frame (%s): placeholder instead", exc)
            return None

    # ---- input, shared with the voice receiver while it draws ---------------------------
    def push_lowres(self, frame: LowResFrame) -> None:
        super().push_lowres(frame)
        if self._voice is not None:
            self._voice.push_lowres(frame)

    def push_audio(self, chunk: AudioChunk) -> None:
        super().push_audio(chunk)
        if self._voice is not None:
            self._voice.push_audio(chunk)

    # ---- identity --------------------------------------------------------------------
    def on_identity(self, identity: IdentityFrame) -> None:
        img = np.asarray(identity.image, np.float32)
        if img.shape != (CANVAS, CANVAS, 3):
            raise ValueError(f"identity frame must be {CANVAS}x{CANVAS}x3, got {img.shape}")
        if self._voice is not None and not self._voice_shown:
            self._voice = None  # nothing was shown from it: no fade, nothing to keep
        elif self._voice is not None or self._id_inputs:
            # Fade from what the viewer sees now: the voice face, or the old identity's.
            self._fade_from = self._voice if self._voice is not None else self._state()
            self._fade_start_ms = self._out_time(self._next_out)
        x = np.ascontiguousarray(img.transpose(2, 0, 1)[None])
        outs = self.sessions[IDENTITY_ENCODER.role].run(None, IDENTITY_ENCODER.feeds(x))
        self._id_inputs = dict(zip(IDENTITY_ENCODER.output_names, outs, strict=True))
        self._identity = np.ascontiguousarray(img)
        self._mouth = self._mouth_warp(self._identity) if self.use_mouth else None
        self.on_motion_anchor()

    def on_motion_anchor(self) -> None:
        """(Re)build the landmark warp when the anchor and the identity frame match."""
        self._warp = None
        if self.use_motion and self.motion_usable() and self.motion_anchor is not None:
            try:
                self._warp = LandmarkWarp(self._identity, self.motion_anchor)
            except Exception:  # noqa: BLE001 - a hostile anchor (degenerate, off the canvas)
                self._warp = None  # costs the code, never the call

    @staticmethod
    def _mouth_warp(img: np.ndarray) -> MouthWarp | None:
        """The identity frame's mouth, or None when dlib finds no usable face on it (the
        frame is then animated unchanged)."""
        from codec._dlib import DLIB_LOCK, detect_face, landmarks

        frame = np.rint(img).astype(np.uint8)
        with DLIB_LOCK:  # one receiver per caller: workers run in their own threads
            box = detect_face(frame)
            points = None if box is None else landmarks(frame, box)
        if points is None:
            return None
        shape = mouth_shape(points)
        if shape is None:
            return None
        try:
            return MouthWarp(img, shape)
        except ValueError:  # landmarks extrapolated off the frame
            return None

    # ---- low-res stream at 25 fps -------------------------------------------------------
    def _in_between(self, j: int) -> np.ndarray:
        """(4, s, s, 3) interpolator output between received frames j and j+1."""
        a, b = self.lowres[j], self.lowres[j + 1]
        key = (a.timestamp_ms, b.timestamp_ms)
        hit = self._between.get(key)
        if hit is not None:
            return hit
        ctx = [_as_8x8(self.lowres[max(0, j + d)]) for d in range(2 - N_CONTEXT, 2)]
        x = np.stack(ctx).astype(np.float32).transpose(3, 0, 1, 2)[None]
        (y,) = self.sessions[INTERPOLATOR.role].run(
            None, INTERPOLATOR.feeds(np.ascontiguousarray(x)))
        out = np.clip(y[0].transpose(1, 2, 3, 0), 0.0, 255.0)
        if len(self._between) >= _CACHE_PAIRS:
            self._between.pop(next(iter(self._between)))
        self._between[key] = out
        return out

    def stream_at(self, t_ms: float, horizon_ms: float) -> np.ndarray:
        """Low-res frame at t as the 25 fps stream has it: held outside the received
        range and beyond ``horizon_ms``, interpolated in between."""
        frames = self.lowres
        t_ms = min(t_ms, horizon_ms)
        if t_ms <= frames[0].timestamp_ms:
            return _as_8x8(frames[0])
        if t_ms >= frames[-1].timestamp_ms:
            return _as_8x8(frames[-1])
        times = [f.timestamp_ms for f in frames]
        j = int(np.searchsorted(times, t_ms, side="right")) - 1
        a, b = frames[j], frames[j + 1]
        w = (t_ms - a.timestamp_ms) / max(1, b.timestamp_ms - a.timestamp_ms)
        if w <= 0.0:
            return _as_8x8(a)
        seq = [_as_8x8(a), *self._in_between(j), _as_8x8(b)]
        pos = w * (N_BETWEEN + 1)
        i = min(int(pos), N_BETWEEN)
        f = pos - i
        return (1.0 - f) * seq[i] + f * seq[i + 1]

    def window_at(self, t_ms: float) -> np.ndarray:
        """(5, 3, s, s) stream frames at t-80..t+80 ms, nothing past the next frame."""
        times = [f.timestamp_ms for f in self.lowres]
        j = int(np.searchsorted(times, t_ms, side="left"))
        horizon = float(times[j]) if j < len(times) else float(times[-1])
        half = WINDOW // 2
        win = [self.stream_at(t_ms + d * FRAME_MS, horizon) for d in range(-half, half + 1)]
        return np.stack(win).astype(np.float32).transpose(0, 3, 1, 2)

    def _state(self) -> _IdentityState:
        return _IdentityState(self._id_inputs, self._identity, self._mouth, self._warp)

    # ---- rendering -------------------------------------------------------------------
    def speech_at(self, t_ms: float) -> np.ndarray:
        """Log-mel block of the speech around t (``mouth.block_span_ms``), computed once per
        frame for both the mouth stage and the animator; silence when audio is off."""
        samples = self.audio_window(t_ms, *block_span_ms())
        if not self.use_audio:
            samples = np.zeros_like(samples)
        return block_from_samples(samples)

    def mel_at(self, t_ms: float) -> np.ndarray:
        """The animator's 200 ms log-mel window at t."""
        return self.speech_at(t_ms)[ANIMATOR_WINDOW]

    def opening(self, block: np.ndarray) -> float:
        """Lip opening a speech block asks for (the ``mouth`` network)."""
        feats = block_features(block)[None]
        (opening,) = self.sessions[MOUTH.role].run(None, MOUTH.feeds(feats))
        return float(opening.ravel()[0])

    def _render_at(self, t: float) -> OutputFrame:
        self._last_fade = None
        frame = super()._render_at(t)
        frame.meta["motion"] = self._last_path
        if self._last_path == "voice":
            frame.meta["identity"] = "voice"
        if self._last_fade is not None:
            frame.meta["fade"] = self._last_fade
        return frame

    def fade_weight(self, t_ms: float) -> float:
        """The new face's weight at t during a cross-fade: 1/13 .. 12/13 over the
        ``FADE_FRAMES`` frames from the identity frame's arrival, then 1."""
        k = round((t_ms - self._fade_start_ms) / FRAME_MS)
        return min(1.0, max(0.0, (k + 1) / (FADE_FRAMES + 1)))

    def render(self, t_ms: float) -> np.ndarray:
        if self.identity is None and self._voice is not None:  # cold start
            self._voice_shown = True
            self._last_path = "voice"
            self._voice._next_out = self._next_out  # its buffers trim on this clock
            return self._voice.render(t_ms)
        img = self._render_identity(t_ms, self._state())
        source = self._fade_from
        if source is None:
            return img
        w = self.fade_weight(t_ms)
        if w >= 1.0:  # faded in: the old face's state goes (the voice receiver's too)
            self._fade_from = self._voice = None
            return img
        path = self._last_path
        old = (source.render(t_ms) if isinstance(source, Receiver)
               else self._render_identity(t_ms, source))
        self._last_path, self._last_fade = path, w
        mixed = w * img.astype(np.float32) + (1.0 - w) * old.astype(np.float32)
        return np.rint(mixed).astype(np.uint8)

    def _bp_noise(self) -> float:
        """The back-projection's soft threshold: BP_NOISE of the newest 8x8 frame's
        quantiser step, less for a 16x16 or 32x32 stream averaged down to 8x8."""
        newest = self.lowres[-1]
        return BP_NOISE * newest.quant * NET_LOWRES / newest.pixels.shape[0]

    def _render_identity(self, t_ms: float, state: _IdentityState) -> np.ndarray:
        """The identity-based face at t from ``state`` (the code's warp, else the networks)."""
        sample = self.motion_sample_at(t_ms) if state.warp is not None else None
        if sample is not None and sample.points is not None and state.warp is not None:
            self._last_path = "code"
            cur = self.window_at(t_ms)[WINDOW // 2].transpose(1, 2, 0)
            img = state.warp.render(sample.points, sample.background)
            out = back_project(img, cur, self._upsampler, noise=self._bp_noise())
            return np.clip(np.rint(out), 0, 255).astype(np.uint8)
        self._last_path = "network"
        window = self.window_at(t_ms)
        block = self.speech_at(t_ms)
        identity = (state.image if state.mouth is None
                    else state.mouth.render(self.opening(block), self.mouth_strength))
        feeds = ANIMATOR.feeds(window[None], block[ANIMATOR_WINDOW][None], **state.id_inputs)
        theta, flow, mask, colour = self.sessions[ANIMATOR.role].run(None, feeds)
        cur = window[WINDOW // 2].transpose(1, 2, 0)
        out = compose_frame(identity, theta[0], flow[0], mask[0], colour[0], cur,
                            self._bp_noise())
        return np.rint(out).astype(np.uint8)
