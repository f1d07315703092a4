"""The log-mel feature: shape, frequency placement, silence, and train/run-time agreement."""

from __future__ import annotations

import numpy as np
import pytest

from codec.audio.features import (
    HOP,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    WINDOW_FRAMES,
    clip_window,
    log_mel,
    mel_filterbank,
    n_frames,
    padded_clip_features,
    window_features,
    window_span_ms,
)
from codec.receiver.base import Receiver
from codec.types import AudioChunk


class _AudioOnly(Receiver):
    """Just the base class buffers; used for its audio_window()."""

    def render(self, t_ms: float) -> np.ndarray:
        raise NotImplementedError


def _tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_shape_and_frame_count() -> None:
    x = _tone(440, 1.0)
    feats = log_mel(x)
    assert feats.shape == (1 + (len(x) - N_FFT) // HOP, N_MELS)
    assert feats.dtype == np.float32
    assert n_frames(N_FFT - 1) == 0
    assert log_mel(np.zeros(10, np.float32)).shape == (0, N_MELS)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_tone_peaks_in_its_mel_band(freq: float) -> None:
    feats = log_mel(_tone(freq, 0.5))
    band = int(np.argmax(feats.mean(axis=0)))
    bins = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    centre = bins[int(np.argmax(mel_filterbank()[band]))]
    assert abs(centre - freq) < 0.25 * freq + 50


def test_silence_is_the_floor_and_louder_is_higher() -> None:
    silent = log_mel(np.zeros(4000, np.float32))
    assert np.allclose(silent, np.log(LOG_FLOOR))
    quiet, loud = log_mel(0.1 * _tone(500, 0.3)), log_mel(_tone(500, 0.3))
    assert loud.max() > quiet.max() + 1.0


def test_hostile_values_are_contained() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 1e9] * 200, np.float32)
    feats = log_mel(x)
    assert np.all(np.isfinite(feats))


def test_training_window_equals_receiver_window() -> None:
    """The cached clip features and the receiver's per-frame features are the same."""
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal(SAMPLE_RATE * 2)).astype(np.float32)
    n_video = 50
    padded = padded_clip_features(audio, n_video)
    rx = _AudioOnly()
    for i in range(0, len(audio), 320):  # 20 ms chunks, like decoded Opus
        rx.push_audio(AudioChunk(audio[i : i + 320], timestamp_ms=i * 1000 // SAMPLE_RATE))
    before, after = window_span_ms()
    for k in (0, 1, 7, 24, 49):
        t = k * 40.0
        live = window_features(rx.audio_window(t, before, after))
        cached = clip_window(padded, t)
        assert live.shape == cached.shape == (WINDOW_FRAMES, N_MELS)
        np.testing.assert_allclose(live, cached, atol=1e-3)
