"""A constrained link (rate, delay, loss, a drop-tail queue) injected under DTLS/SRTP where
the ICE transport sends its datagrams: the constrained-link test and ``bench_call.py --loss``
run the real call through it, no network namespace needed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCPeerConnection

from server.transport import ice_transports


@dataclass
class LinkShape:
    """An emulated link: bottleneck rate, one-way delay, random loss, drop-tail queue.

    ``max_queue_ms``: a datagram is dropped when it would wait longer than this behind the
    ones queued before it (a queue of ``rate x max_queue_ms``: 2 kB at 16 kbit/s, one full
    SCTP packet waiting behind another; 400 ms, 800 B, could not hold even one)."""

    rate_bps: float = 16000.0
    delay_ms: float = 100.0
    loss: float = 0.05
    max_queue_ms: float = 1000.0
    seed: int = 0


class LinkEmulator:
    """Shapes what one peer connection sends: every datagram the ICE transport would send
    is dropped (``loss``, or queue full), or delivered after queueing at ``rate_bps`` plus
    ``delay_ms``. Counts what it was offered (``offered_bytes``, with UDP/IPv4 headers,
    dropped datagrams included) and what it let through."""

    def __init__(self, shape: LinkShape) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)
        self.busy_until = 0.0
        self.sent_bytes = self.dropped = self.delivered = self.offered_bytes = 0

    def wrap(self, send: Callable[[bytes], Awaitable[None]]) -> Callable[[bytes], Awaitable[None]]:
        loop = asyncio.get_running_loop()

        async def shaped_send(data: bytes) -> None:
            now = loop.time()
            self.offered_bytes += len(data) + 28
            if self.rng.random() < self.shape.loss:
                self.dropped += 1
                return
            start = max(now, self.busy_until)
            if (start - now) * 1000.0 > self.shape.max_queue_ms:
                self.dropped += 1
                return
            # Wire size: payload + UDP/IPv4 headers.
            self.busy_until = start + (len(data) + 28) * 8.0 / self.shape.rate_bps
            self.sent_bytes += len(data)
            deliver_at = self.busy_until + self.shape.delay_ms / 1000.0

            def deliver() -> None:
                self.delivered += 1
                asyncio.ensure_future(_quiet(send(data)))

            loop.call_at(deliver_at, deliver)

        return shaped_send

    def attach(self, pc: RTCPeerConnection) -> None:
        """Shape every ICE transport of ``pc`` (call after the descriptions are set)."""
        for transport in ice_transports(pc):
            if not getattr(transport, "_talkcodec_shaped", False):
                transport._send = self.wrap(transport._send)
                transport._talkcodec_shaped = True


async def _quiet(coro: Awaitable[None]) -> None:
    try:
        await coro
    except Exception:  # noqa: BLE001 - a datagram to a closed transport is simply lost
        pass
