"""The one log-mel speech feature, in numpy, shared by training and the receiver.

Frames are 25 ms (400 samples at 16 kHz) every 10 ms (160 samples), Hann window, 40 mel
bands (HTK mel scale, 60-7600 Hz), natural log of power with a floor. No centring or
padding: frame ``j`` covers samples ``[j*HOP, j*HOP + N_FFT)``, so a window of audio
``[t0, t0 + d)`` always maps to the same frames whoever computes them.

``mel_window(audio_at, t_ms)`` defines the audio context of an output frame at time t:
``WINDOW_FRAMES`` feature frames starting at ``t - WINDOW_BEFORE_MS``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from codec import CANVAS_FPS

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 40
F_MIN = 60.0
F_MAX = 7600.0
LOG_FLOOR = 1e-6

# Audio context of one output frame: 20 frames (200 ms) starting 100 ms before it.
WINDOW_FRAMES = 20
WINDOW_BEFORE_MS = 100.0
HOP_MS = 1000.0 * HOP / SAMPLE_RATE


def window_span_ms() -> tuple[float, float]:
    """(before_ms, after_ms) of audio around t needed for ``WINDOW_FRAMES`` frames."""
    n_samples = (WINDOW_FRAMES - 1) * HOP + N_FFT
    return WINDOW_BEFORE_MS, n_samples * 1000.0 / SAMPLE_RATE - WINDOW_BEFORE_MS


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(N_MELS, N_FFT//2 + 1) triangular filters, float32."""
    n_bins = N_FFT // 2 + 1
    freqs = np.linspace(0.0, SAMPLE_RATE / 2, n_bins)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(F_MIN)), _hz_to_mel(np.array(F_MAX)),
                                   N_MELS + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1].astype(np.float32)


def n_frames(n_samples: int) -> int:
    return 0 if n_samples < N_FFT else 1 + (n_samples - N_FFT) // HOP


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(n_frames(len(audio)), N_MELS) float32 log-mel power of mono 16 kHz audio."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    x = np.nan_to_num(np.clip(x, -1.0, 1.0))
    n = n_frames(len(x))
    if n == 0:
        return np.zeros((0, N_MELS), np.float32)
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx] * _hann()[None]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = power.astype(np.float32) @ mel_filterbank().T
    return np.log(mel + LOG_FLOOR).astype(np.float32)


def padded_clip_features(audio: np.ndarray | None, n_video_frames: int,
                         fps: float = float(CANVAS_FPS)) -> np.ndarray:
    """Log-mel of a whole clip, zero-padded so that ``clip_window(feats, t_ms)`` works for
    every video frame (silence outside the clip, as the receiver's audio buffer gives)."""
    before, after = window_span_ms()
    dur_ms = n_video_frames * 1000.0 / fps
    pad0 = int(round(before * SAMPLE_RATE / 1000))
    total = pad0 + int(round((dur_ms + after) * SAMPLE_RATE / 1000)) + N_FFT
    buf = np.zeros(total, np.float32)
    if audio is not None and len(audio):
        a = np.asarray(audio, np.float32)[: total - pad0]
        buf[pad0 : pad0 + len(a)] = a
    return log_mel(buf)


def clip_window(padded_feats: np.ndarray, t_ms: float) -> np.ndarray:
    """(WINDOW_FRAMES, N_MELS) window of ``padded_clip_features`` for output time t_ms."""
    j = int(round(t_ms / HOP_MS))
    w = padded_feats[j : j + WINDOW_FRAMES]
    if len(w) < WINDOW_FRAMES:
        w = np.concatenate([w, np.full((WINDOW_FRAMES - len(w), N_MELS), np.log(LOG_FLOOR),
                                       np.float32)])
    return w


def window_features(samples: np.ndarray) -> np.ndarray:
    """(WINDOW_FRAMES, N_MELS) from the samples of ``window_span_ms`` around t (receiver)."""
    feats = log_mel(samples)[:WINDOW_FRAMES]
    if len(feats) < WINDOW_FRAMES:
        fill = np.full((WINDOW_FRAMES - len(feats), N_MELS), np.log(LOG_FLOOR), np.float32)
        feats = np.concatenate([feats, fill])
    return feats
