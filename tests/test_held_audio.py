"""The link's speech gate (server/sender_link.py: HeldAudioTrack) and the live rates
(server/link_decoder.py: RateWindow), found by the 1-hour soak (issue 16)."""

from __future__ import annotations

import fractions
import threading
import types

import server.sender_link as sl
from server.link_decoder import RateWindow


def _frame(t_s: float) -> types.SimpleNamespace:
    """A 20 ms 48 kHz frame whose media time starts at ``t_s``."""
    return types.SimpleNamespace(pts=int(t_s * 48000), samples=960,
                                 time_base=fractions.Fraction(1, 48000), sample_rate=48000)


def test_a_queue_is_late_but_a_slow_clock_is_followed(monkeypatch) -> None:  # noqa: ANN001
    clock = [1000.0]
    monkeypatch.setattr(sl.time, "monotonic", lambda: clock[0])
    gate = sl.HeldAudioTrack(track=None)  # type: ignore[arg-type]
    # On time for 10 s.
    for k in range(500):
        clock[0] = 1000.0 + k * 0.02 + 0.02
        assert not gate._too_late(_frame(k * 0.02))
    # A 2 s stall: the queued frames come late and are dropped ...
    clock[0] += 2.0
    assert gate._too_late(_frame(500 * 0.02))
    # ... and a source whose clock stays 2 s behind for good is followed after
    # DRIFT_RESYNC_S of lateness without a break, not dropped forever.
    dropped = 0
    for k in range(501, 1000):
        clock[0] = 1000.0 + k * 0.02 + 0.02 + 2.0
        dropped += gate._too_late(_frame(k * 0.02))
    assert sl.DRIFT_RESYNC_S / 0.02 - 2 <= dropped + 1 <= sl.DRIFT_RESYNC_S / 0.02 + 2
    clock[0] = 1000.0 + 1001 * 0.02 + 0.02 + 2.0
    assert not gate._too_late(_frame(1001 * 0.02))


def test_rates_read_while_another_thread_adds() -> None:
    window = RateWindow(seconds=0.5)
    stop = threading.Event()

    def add() -> None:
        while not stop.is_set():
            window.add(10)

    worker = threading.Thread(target=add)
    worker.start()
    try:
        for _ in range(2000):
            assert window.bps() >= 0.0  # raised "deque mutated during iteration" before
    finally:
        stop.set()
        worker.join()


def _chunk(k: int, rate: int, ms: int, layout: str = "mono"):  # noqa: ANN202
    import av
    import numpy as np

    n = rate * ms // 1000
    channels = 2 if layout == "stereo" else 1
    rng = np.random.default_rng(k)
    frame = av.AudioFrame.from_ndarray(
        (rng.standard_normal((1, n * channels)) * 3000).astype(np.int16),
        format="s16", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, k * n, fractions.Fraction(1, rate)
    return frame


def test_each_chunk_of_a_packets_length_makes_its_packet_at_once() -> None:
    """The link's Opus encoder gets one chunk of a packet's length at a time (HeldAudioTrack
    joins them). At 16 kHz (a file sender's speech) the resampler's filter held back ~1 ms,
    so every packet left one chunk late (+60 ms at 60 ms packets); primed, none does."""
    from server.link_tuning import LowBitrateOpusEncoder

    for rate, layout in ((16000, "mono"), (8000, "mono"), (48000, "stereo")):
        for ms in (60, 120):
            enc = LowBitrateOpusEncoder(6000, ms)
            made = [len(enc.encode(_chunk(k, rate, ms, layout))[0]) for k in range(5)]
            assert made == [1] * 5, (rate, layout, ms, made)
            assert len(enc.captured_ms) == 5
