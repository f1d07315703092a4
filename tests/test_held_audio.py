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
