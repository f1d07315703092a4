"""The ``voice`` receiver (issue 14): a face from the 8x8 stream and the speaker's voice,
with no identity frame, after the first paper's idea (the voice carries what the 8x8 lost).

Everything is closed-form linear algebra run in numpy (``training/train_voice.py``):

- **Speaker encoder.** Log-mel (``codec.audio.features``) of the speech heard so far; the
  louder half of the frames (above an absolute floor) are "voiced"; their per-band mean and
  standard deviation (60 numbers, the bands below 4 kHz) are standardised and projected by a linear discriminant
  (LDA) trained to separate the 90 train identities: that projection is the voice code.
  A logistic regression on the same statistics gives the probability that the voice is
  perceived as male (``training/perceived_gender.csv``).
- **Face prior.** A PCA space of what the train canvas faces at 64 px hold beyond the 8x8
  frame's consistent cubic enlargement (the ``bicubic`` receiver's); its coefficients are
  predicted by ridge regression from the 8x8 frame and the voice code (and the gender
  probability). Silence (or too little speech) gives the code of an average voice.
- **Fidelity.** The 64 px face is enlarged with the cubic that is consistent with the box
  downsampler and back-projected onto the received 8x8 frame, so the output's box means are
  exactly what was sent.

The receiver never needs the identity frame: it renders from the first low-res frame.
``voice=`` (samples at 16 kHz) fixes the voice code to another speaker's (mixing).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from codec import AUDIO_RATE, CANVAS_SIZE
from codec.audio.features import HOP, log_mel
from codec.models import ModelError, content_hash, models_dir
from codec.receiver.backproject import back_project
from codec.receiver.base import to_uint8
from codec.receiver.bicubic import UpsamplingReceiver
from codec.receiver.upsample import Upsampler
from codec.types import AudioChunk

ROLE = "voice"
FACE_SIZE = 64
#: Log-mel frames (10 ms) of voiced speech needed before the voice code is trusted.
MIN_VOICED = 50
#: A frame is voiced when its mean log-mel power is above this floor ...
VOICED_FLOOR = -9.0
#: ... and in the louder half of the speech heard.
VOICED_QUANTILE = 0.5
_UP64 = Upsampler(FACE_SIZE)
#: Log-mel bands used: those below ~4 kHz. The 8 kbit/s Opus speech the stream carries
#: keeps nothing above (the upper bands drop by 3-6 nats), and a user's file keeps them,
#: so the voice code reads only what both have.
VOICE_BANDS = 30
#: Most speech (seconds of log-mel frames) kept for the voice code.
MAX_VOICE_S = 30.0


def voiced_stats(mel: np.ndarray) -> np.ndarray | None:
    """(60,) per-band mean (less its average over the bands) and std of the voiced log-mel
    frames, or None (too little speech)."""
    mel = np.asarray(mel, np.float32)[:, :VOICE_BANDS]
    if len(mel) < MIN_VOICED:
        return None
    energy = mel.mean(axis=1)
    keep = (energy > VOICED_FLOOR) & (energy >= np.quantile(energy, VOICED_QUANTILE))
    if keep.sum() < MIN_VOICED:
        return None
    v = mel[keep].astype(np.float64)
    mean = v.mean(0)
    # A gain is one constant added to every band: removing the bands' average makes the
    # code independent of the recording level (a user's file, the Opus decoder's).
    return np.concatenate([mean - mean.mean(), v.std(0)])


@dataclass(frozen=True)
class VoiceModel:
    stat_mean: np.ndarray  # (60,)
    stat_std: np.ndarray  # (60,)
    lda: np.ndarray  # (60, E) standardised stats -> voice code
    code_mean: np.ndarray  # (E,) the code of the average train voice (silence)
    gender_w: np.ndarray  # (61,) logistic weights on [standardised stats, 1]
    face_mean: np.ndarray  # (64*64*3,) mean residual over the 8x8's consistent cubic
    face_basis: np.ndarray  # (K, 64*64*3) PCA of those residuals
    x_mean: np.ndarray  # (192,) of the 8x8 pixels
    x_std: np.ndarray  # (192,)
    ridge: np.ndarray  # (192 + E + 2, K) [8x8, code, gender - 0.5, 1] -> coefficients
    digest: str

    def code(self, stats: np.ndarray | None) -> tuple[np.ndarray, float]:
        """(voice code, P(male)); the average voice and 0.5 for None (silence)."""
        if stats is None:
            return self.code_mean, 0.5
        z = (stats - self.stat_mean) / self.stat_std
        logit = float(np.dot(np.append(z, 1.0), self.gender_w))
        return z @ self.lda, float(1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30))))

    def detail(self, lowres: np.ndarray, code: np.ndarray, p_male: float) -> np.ndarray:
        """(64, 64, 3) float32: what the model adds to the 8x8's consistent cubic for an
        8x8 frame and a voice."""
        x = (np.asarray(lowres, np.float64).reshape(-1) - self.x_mean) / self.x_std
        feats = np.concatenate([x, code, [p_male - 0.5, 1.0]])
        residual = self.face_mean + (feats @ self.ridge) @ self.face_basis
        return residual.reshape(FACE_SIZE, FACE_SIZE, 3).astype(np.float32)

    def face(self, lowres: np.ndarray, code: np.ndarray, p_male: float) -> np.ndarray:
        """(64, 64, 3) float32 face for an 8x8 frame and a voice (the fitted model, at full
        strength)."""
        base = _UP64(np.asarray(lowres, np.float32))
        return base + self.detail(lowres, code, p_male)


def find_voice_model(directory: Path | None = None) -> Path:
    d = directory or models_dir()
    found = sorted(d.glob(f"{ROLE}-*.npz"))
    if not found:
        raise ModelError(f"no {ROLE} model in {d}")
    if len(found) > 1:
        raise ModelError(f"several {ROLE} models in {d}: {[p.name for p in found]}")
    return found[0]


@lru_cache(maxsize=2)
def load_voice_model(path: Path | None = None) -> VoiceModel:
    """The shipped model, verified against the hash in its name."""
    p = path or find_voice_model()
    data = p.read_bytes()
    digest = content_hash(data)
    if not p.stem.endswith(f"-{digest}"):
        raise ModelError(f"{p.name}: content hash {digest} does not match its name")
    with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k].astype(np.float64) for k in z.files}
    return VoiceModel(digest=digest, **arrays)


def read_voice_file(path: str | Path, max_seconds: float = MAX_VOICE_S) -> np.ndarray:
    """16 kHz mono speech of any file PyAV (FFmpeg) opens: wav, mp3, m4a, a video's
    soundtrack; resampled and down-mixed by libswresample, peak-normalised to 0.9."""
    from codec.errors import InputError
    from codec.sender.video_io import read_audio

    try:
        audio = read_audio(path, max_seconds=max_seconds, align_to_video=False)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise InputError(f"{Path(path).name}: cannot read its audio ({exc})") from None
    if audio is None or not len(audio):
        raise InputError(f"{Path(path).name}: no audio track")
    peak = float(np.abs(audio).max())
    return (audio * (0.9 / peak)).astype(np.float32) if peak > 0 else audio


def weights_problem() -> str | None:
    try:
        load_voice_model()
    except (ModelError, OSError, ValueError, TypeError) as exc:
        return str(exc)
    return None


class VoiceReceiver(UpsamplingReceiver):
    """Renders from the low-res stream and the voice alone (no identity frame needed)."""

    name = "voice"
    identity_wait_ms = 0.0  # nothing to wait for: the identity frame is not used
    #: The model's detail is added at this strength, low-passed by this Gaussian (px at
    #: 64x64). Full strength and unblurred the ridge's guess of the fine detail cost more
    #: PSNR and SSIM than it gave (val, 9 speech clips, own voice: 20.74 dB / 0.659 /
    #: descriptor distance 0.735, bicubic 20.86 / 0.694 / 0.740); at 0.6 and 1 px:
    #: 20.99 dB / 0.692 / 0.718 (BENCHMARKS.md, the voice receiver).
    detail_strength: float = 0.6
    detail_blur_px: float = 1.0

    def __init__(self, *, low_latency: bool = False, canvas_size: int = CANVAS_SIZE,
                 voice: np.ndarray | None = None, model: VoiceModel | None = None) -> None:
        super().__init__(low_latency=low_latency, canvas_size=canvas_size)
        self.model = model or load_voice_model()
        self.face_up = Upsampler(canvas_size)
        self._mel: list[np.ndarray] = []
        self._mel_frames = 0
        self._tail = np.zeros(0, np.float32)
        self._fixed = voice is not None
        self._stats = voiced_stats(log_mel(voice)) if voice is not None else None
        self._dirty = False
        self._code, self._p_male = self.model.code(self._stats)

    def push_audio(self, chunk: AudioChunk) -> None:
        super().push_audio(chunk)
        if self._fixed or self._mel_frames >= MAX_VOICE_S * AUDIO_RATE / HOP:
            return
        x = np.concatenate([self._tail, np.asarray(self.audio[-1].samples, np.float32)])
        mel = log_mel(x)
        used = len(mel) * HOP
        self._tail = x[used:] if len(mel) else x
        if len(mel):
            self._mel.append(mel)
            self._mel_frames += len(mel)
            self._dirty = True

    def voice_code(self) -> tuple[np.ndarray, float]:
        """The current voice code and P(male) (updated as speech arrives)."""
        if self._dirty:
            self._dirty = False
            stats = voiced_stats(np.concatenate(self._mel))
            if stats is not None:
                self._stats = stats
                self._code, self._p_male = self.model.code(stats)
        return self._code, self._p_male

    @classmethod
    def with_voice_file(cls, path: str | Path, **kw: object) -> VoiceReceiver:
        """A receiver whose voice code comes from any audio or video file (mixing)."""
        return cls(voice=read_voice_file(path), **kw)  # type: ignore[arg-type]

    def render(self, t_ms: float) -> np.ndarray:
        lowres = self.lowres_at(t_ms)
        small = lowres
        if lowres.shape[0] != 8:
            f = lowres.shape[0] // 8
            small = lowres.reshape(8, f, 8, f, 3).mean(axis=(1, 3)) if f >= 1 else lowres
        code, p_male = self.voice_code()
        detail = self.model.detail(small, code, p_male)
        if self.detail_blur_px > 0:
            detail = cv2.GaussianBlur(detail, (0, 0), self.detail_blur_px)
        if self.canvas_size != FACE_SIZE:
            detail = self.face_up(detail)
        out = self.upsampler(lowres) + self.detail_strength * detail
        return to_uint8(back_project(out, lowres, self.upsampler))
