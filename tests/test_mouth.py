"""The audio-driven mouth: feature parity (training vs receiver), the warp, the receiver."""

from __future__ import annotations

import numpy as np
import pytest

from codec.audio.features import SAMPLE_RATE, padded_clip_features
from codec.metrics.landmarks import detect_face, landmarks, mouth_opening
from codec.receiver.neural.mouth import (
    MouthWarp,
    block_features,
    block_from_clip,
    block_from_samples,
    block_span_ms,
    mouth_shape,
)
from tests._face_frames import CLIP_A, face_frames


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    return (0.2 * env * (np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size))
            ).astype(np.float32)


@pytest.mark.parametrize("t_ms", [0.0, 40.0, 1000.0, 1960.0])
def test_training_and_receiver_compute_the_same_block(t_ms: float) -> None:
    audio = _speechlike(2.0)
    padded = padded_clip_features(audio, 50)
    before, after = block_span_ms()
    start = round((t_ms - before) * SAMPLE_RATE / 1000)
    n = round((before + after) * SAMPLE_RATE / 1000)
    window = np.zeros(n, np.float32)
    lo, hi = max(start, 0), min(start + n, len(audio))
    window[lo - start : hi - start] = audio[lo:hi]
    a = block_from_clip(padded, t_ms)
    b = block_from_samples(window)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert block_features(a).shape == (280,)


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, object]:
    frame = face_frames(CLIP_A, 1)[0]
    box = detect_face(frame)
    assert box is not None
    return frame, box


def test_warp_opens_and_closes_the_mouth_as_dlib_reads_it(face: tuple) -> None:
    frame, box = face
    shape = mouth_shape(landmarks(frame, box))
    assert shape is not None
    warp = MouthWarp(frame.astype(np.float32), shape)
    # Its own opening leaves the frame as it was.
    np.testing.assert_array_equal(warp.render(shape.opening), frame.astype(np.float32))
    read = [mouth_opening(landmarks(np.rint(warp.render(o)).astype(np.uint8), box))
            for o in (0.0, 0.15, 0.35)]
    assert read[0] < read[1] < read[2], read
    assert read[2] > shape.opening + 0.05


def test_degenerate_landmarks_give_no_shape() -> None:
    assert mouth_shape(np.zeros((68, 2))) is None
    assert mouth_shape(np.full((68, 2), np.nan)) is None


def test_shipped_receiver_moves_the_mouth_with_the_speech(face: tuple) -> None:
    """Same face and 8x8 stream; speech vs silence changes the mouth region only."""
    from codec.receiver.neural.weights import weights_available

    if not weights_available():
        pytest.skip("no trained weights in models/")
    from codec.receiver.neural import NeuralReceiver
    from codec.sender.downsample import box_downsample
    from codec.types import AudioChunk, IdentityFrame, LowResFrame

    frame, box = face
    lows = [LowResFrame(box_downsample(frame, 32).astype(np.float32), 200 * i) for i in range(6)]
    speech = _speechlike(1.2, seed=1) * 2.0
    chunks = [AudioChunk(speech[i : i + 960], i // 16) for i in range(0, len(speech), 960)]
    outs = {}
    for label, audio in (("speech", chunks), ("silence", [])):
        rx = NeuralReceiver(threads=1)
        outs[label] = [f.image.astype(np.float32) for f in
                       rx.run(IdentityFrame(frame), lows, audio)]
        assert rx._mouth is not None  # dlib found the identity frame's mouth
    diff = np.abs(np.stack(outs["speech"]) - np.stack(outs["silence"])).mean(axis=(0, 3))
    mouth_rows = slice(box.top + (box.bottom - box.top) // 2, box.bottom + 10)
    inside = diff[mouth_rows, box.left : box.right].mean()
    outside = diff[: box.top].mean()
    # (the animator also sees the mel window: a small change everywhere)
    assert inside > 1.0 and inside > 2 * outside, (inside, outside)


def test_identity_frame_without_a_face_is_animated_unchanged() -> None:
    from codec.receiver.neural.weights import weights_available

    if not weights_available():
        pytest.skip("no trained weights in models/")
    from codec.receiver.neural import NeuralReceiver
    from codec.types import IdentityFrame, LowResFrame

    rx = NeuralReceiver(threads=1)
    flat = np.full((256, 256, 3), 128, np.uint8)
    frames = rx.run(IdentityFrame(flat), [LowResFrame(np.full((8, 8, 3), 128.0, np.float32), 0),
                                          LowResFrame(np.full((8, 8, 3), 120.0, np.float32), 200)],
                    [])
    assert rx._mouth is None and len(frames) >= 5


def test_mouth_setup_is_safe_from_several_receiver_threads(face: tuple) -> None:
    """Two callers' receivers set up their identity frames at once (the call's workers run
    in their own threads): both find the mouth, same result as alone."""
    from concurrent.futures import ThreadPoolExecutor

    from codec.receiver.neural.receiver import NeuralReceiver

    frame, _ = face
    img = frame.astype(np.float32)
    with ThreadPoolExecutor(4) as pool:
        warps = list(pool.map(lambda _: NeuralReceiver._mouth_warp(img), range(8)))
    assert all(w is not None for w in warps)
    assert len({(w.shape.cx, w.shape.gap, w.shape.width) for w in warps}) == 1


def test_mouth_off_the_frame_is_refused(face: tuple) -> None:
    frame, box = face
    pts = landmarks(frame, box)
    for shift in ((400.0, 0.0), (-400.0, 0.0), (0.0, 400.0), (0.0, -400.0)):
        shape = mouth_shape(pts + np.array(shift))
        if shape is not None:
            with pytest.raises(ValueError):
                MouthWarp(frame.astype(np.float32), shape)


def test_the_block_contains_the_animators_speech_window() -> None:
    """The receiver computes the log-mel once per frame: the animator's window is a slice of
    the mouth block, identical to ``window_features`` of its own span (training's input)."""
    from codec.audio.features import window_features, window_span_ms
    from codec.receiver.neural.mouth import ANIMATOR_WINDOW

    audio = _speechlike(1.0, seed=3)
    before, after = block_span_ms()
    a_before, a_after = window_span_ms()
    n = int(round((before + after) * SAMPLE_RATE / 1000))
    block = block_from_samples(audio[:n])
    skip = int(round((before - a_before) * SAMPLE_RATE / 1000))
    m = int(round((a_before + a_after) * SAMPLE_RATE / 1000))
    np.testing.assert_allclose(block[ANIMATOR_WINDOW], window_features(audio[skip : skip + m]),
                               atol=1e-5)
