"""talkcodec datagrams off the link -> a receiver's inputs, surviving loss.

The 8x8 stream arrives on an unreliable, unordered channel: packets may be lost, duplicated,
reordered or corrupt. ``codec.bitstream.stream.StreamDecoder`` resolves the dependencies
(skips inter frames after a gap until the next intra); this adapter feeds its events to a
receiver (``codec.receiver.pipeline.feed_events``, the file decoder's own feeding: identity
frames, the motion code's anchors and samples, 8x8 frames, audio), counts bytes, the motion
code's share of the 8x8 packets, and losses for the live figures, calls ``on_gap`` when frames
were skipped (the worker then asks the sender for an intra frame) and ``on_identity`` when
an identity frame reached the receiver (the worker acknowledges it to the sender). Corrupt datagrams are
counted and ignored; nothing here raises on network input.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from codec.bitstream.packet import SEQ_MODULO, StreamKind, decode_datagram, seq_after
from codec.bitstream.stream import StreamDecoder
from codec.errors import BitstreamError
from codec.receiver.base import Receiver
from codec.receiver.pipeline import feed_events
from codec.types import LowResFrame

# Live: a gap is given up on after one more packet (200 ms at 5 fps), not four.
LIVE_REORDER_WINDOW = 1


@dataclass
class LinkCounters:
    bytes_by_kind: dict[str, int] = field(default_factory=lambda: {k.name: 0 for k in StreamKind})
    lowres_decoded: int = 0
    lowres_lost: int = 0  # sequence numbers never seen
    lowres_skipped: int = 0  # arrived but undecodable (after a gap, before an intra)
    late_or_duplicate: int = 0
    corrupt: int = 0


#: Why an 8x8 frame was not shown (the ``why`` label of the receivers'
#: ``talkcodec_receiver_lowres_dropped`` metric) -> its ``LinkCounters`` field.
LOWRES_DROPPED = {"lost": "lowres_lost", "undecodable": "lowres_skipped", "corrupt": "corrupt"}


class RateWindow:
    """Bytes over the last ``seconds`` -> bit/s.

    A young window (the first ``seconds`` of a link) divides by the time since its first
    byte, not by ``seconds``: a link 1 s old read 1/4 of its rate before."""

    def __init__(self, seconds: float = 4.0) -> None:
        self.seconds = seconds
        self.events: deque[tuple[float, int]] = deque()
        self.first: float | None = None
        # The decoder's thread adds, the event loop reads (stats, /metrics): without the
        # lock a read during an add raised "deque mutated during iteration", which ended a
        # link's render loop 25 minutes into the 1-hour soak (BENCHMARKS.md, Call soak).
        self._lock = threading.Lock()

    def add(self, n: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.first is None:
                self.first = now
            self.events.append((now, n))

    def bps(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self.events and self.events[0][0] < now - self.seconds:
                self.events.popleft()
            if self.first is None:
                return 0.0
            total = sum(n for _, n in self.events)
        # At least one second: the first bytes alone are not a rate.
        span = min(self.seconds, max(1.0, now - self.first))
        return total * 8.0 / span


class LinkDecoder:
    """Feeds ``receiver`` from datagrams through the bitstream's ``StreamDecoder``;
    ``feed`` returns the low-res frames it decoded."""

    def __init__(self, receiver: Receiver, on_gap: Callable[[], None] | None = None,
                 on_identity: Callable[[], None] | None = None,
                 reorder_window: int = LIVE_REORDER_WINDOW) -> None:
        self.receiver = receiver
        self.on_gap = on_gap
        self.on_identity = on_identity
        self.stream = StreamDecoder(reorder_window=reorder_window)
        self.newest_seq: int | None = None
        self.bad_datagrams = 0
        self.counters = LinkCounters()
        self.video_rate = RateWindow()  # 8x8 packets whole (headers and bundled code)
        self.code_rate = RateWindow()  # the motion code's share of them
        self.rejected: list[str] = []  # inputs the receiver refused (hostile streams)

    def feed(self, datagram: bytes) -> list[LowResFrame]:
        try:
            packet = decode_datagram(datagram)
        except BitstreamError:
            self.bad_datagrams += 1
            self.counters.corrupt += 1
            return []
        self.counters.bytes_by_kind[packet.kind.name] += len(datagram)
        if packet.kind == StreamKind.LOWRES:
            self.video_rate.add(len(datagram))
            self._count_gap(packet.seq)
        skipped_before = self._skipped()
        code_before = self.stream.motion_bytes
        events = self.stream.push(packet)
        if self.stream.motion_bytes > code_before and packet.kind == StreamKind.LOWRES:
            self.code_rate.add(self.stream.motion_bytes - code_before)
        feed_events(events, self.receiver, self.rejected)
        del self.rejected[:-16]
        if events.identities and self.on_identity is not None:
            self.on_identity()
        self.counters.lowres_decoded += len(events.lowres)
        self.counters.lowres_skipped = self._skipped()
        self.counters.corrupt = self.bad_datagrams + self.stream.corrupt + self._lowres_corrupt()
        if self._skipped() > skipped_before and self.on_gap is not None:
            self.on_gap()
        return events.lowres

    def _count_gap(self, seq: int) -> None:
        if self.newest_seq is None or seq_after(seq, self.newest_seq):
            if self.newest_seq is not None:
                self.counters.lowres_lost += (seq - self.newest_seq - 1) % SEQ_MODULO
            self.newest_seq = seq
        else:
            # A late packet fills a gap counted as lost (or is a duplicate).
            self.counters.late_or_duplicate += 1
            self.counters.lowres_lost = max(0, self.counters.lowres_lost - 1)

    def _skipped(self) -> int:
        return self.stream.lowres.stats.skipped if self.stream.lowres is not None else 0

    def _lowres_corrupt(self) -> int:
        return self.stream.lowres.stats.corrupt if self.stream.lowres is not None else 0

    def loss_fraction(self) -> float:
        c = self.counters
        expected = c.lowres_decoded + c.lowres_lost
        return c.lowres_lost / expected if expected else 0.0
