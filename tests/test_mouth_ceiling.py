"""benchmarks/diagnostics/mouth_ceiling.py: the 5 fps landmark oracle and the opening-substituting receiver."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from benchmarks.diagnostics import mouth_ceiling
from codec.metrics.landmarks import detect_face, landmarks, mouth_opening
from codec.types import IdentityFrame, LowResFrame
from tests._face_frames import CLIP_A, face_frames


def test_five_fps_truth_is_exact_at_received_frames_and_linear_between() -> None:
    base = np.random.default_rng(0).uniform(50, 200, (68, 2))
    points = [base + i for i in range(16)]
    points[15] = None  # no face on the received frame 15: frames 11-14 have no oracle
    truth = SimpleNamespace(points=points, boxes=[object()] * 16)
    oracle = mouth_ceiling.five_fps_truth(truth)
    assert sorted(oracle) == list(range(1, 11))  # frame 0 is the identity frame, never scored
    np.testing.assert_allclose(oracle[5], points[5])
    np.testing.assert_allclose(oracle[7], base + 7)  # linear between frames 5 and 10
    # Off the straight line, the oracle still interpolates: it knows only the received frames.
    points[7] = base + 100
    np.testing.assert_allclose(mouth_ceiling.five_fps_truth(truth)[7], base + 7)


def test_probed_receiver_renders_the_given_openings() -> None:
    frames = face_frames(CLIP_A, 11)
    lows = [LowResFrame(frames[k].reshape(8, 32, 8, 32, 3).mean((1, 3)).astype(np.float32),
                        k * 40) for k in (0, 5, 10)]
    shut, wide = ({i: o for i in range(11)} for o in (0.0, 0.5))

    def mouths(openings: dict[int, float], strength: float) -> tuple[list[np.ndarray], dict]:
        rx = mouth_ceiling.ProbedReceiver(openings=openings, strength=strength, threads=1)
        assert rx.mouth_strength == strength
        out = rx.run(IdentityFrame(image=frames[0]), lows, [], end_ms=11 * 40.0)
        return [o.image for o in out], rx.driven

    a, driven = mouths(shut, 1.0)
    b, _ = mouths(wide, 1.0)
    assert set(driven) >= set(range(1, 11)) and all(driven[i] == 0.0 for i in driven)
    # The substituted opening reaches the picture: the mouth's landmarks open with it.
    box = detect_face(frames[5])
    open_a = mouth_opening(landmarks(a[5], box))
    open_b = mouth_opening(landmarks(b[5], box))
    assert open_b > open_a + 0.05
    # Without openings it records what the speech driver asked for (silence here).
    rx = mouth_ceiling.ProbedReceiver(threads=1)
    rx.run(IdentityFrame(image=frames[0]), lows, [], end_ms=11 * 40.0)
    assert rx.driven and rx.mouth_strength == mouth_ceiling.NeuralReceiver.mouth_strength
