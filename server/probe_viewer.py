"""A headless viewer (Python) for tests and benchmarks: joins a room as ``viewer``, accepts
the worker's view sessions, reads the timestamp stamp of every displayed frame and keeps
the worker's live figures. Glass-to-glass latency = receive time - (sender epoch + frame
timestamp), on one machine's clock."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from server.sessions import SessionRouter
from server.signal_client import SignalClient
from server.transport import new_peer_connection
from server.view_tracks import read_stamp


@dataclass
class ViewRecord:
    frames: list[tuple[float, int]] = field(default_factory=list)  # (unix ms, stamp ts)
    latencies_ms: list[float] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    lowres: int = 0
    audio_frames: int = 0
    epoch_unix_ms: float | None = None
    label: str = ""


class ProbeViewer:
    def __init__(self, client: SignalClient, ice_servers: list | None = None) -> None:
        self.client = client
        self.ice_servers = ice_servers
        self.router = SessionRouter(client)
        self.router.on_offer = self._on_offer
        self.views: dict[str, ViewRecord] = {}
        self._tasks: list[asyncio.Task] = []

    async def run(self) -> None:
        await self.client.connect()
        await self.router.run()

    async def _on_offer(self, peer: str, session: str, data: dict) -> RTCPeerConnection | None:
        if not session.startswith("view:"):
            return None
        record = self.views.setdefault(session, ViewRecord())
        pc = new_peer_connection(self.ice_servers)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._consume(track, record)))

        @pc.on("datachannel")
        def on_channel(channel) -> None:  # noqa: ANN001
            @channel.on("message")
            def on_message(message: str | bytes) -> None:
                if not isinstance(message, str):
                    return
                msg = json.loads(message)
                if msg.get("type") == "epoch":
                    record.epoch_unix_ms = float(msg["epoch_unix_ms"])
                elif msg.get("type") == "stats":
                    record.stats.append(msg)
                elif msg.get("type") == "lowres":
                    record.lowres += 1
                elif msg.get("type") == "hello":
                    record.label = msg.get("label", "")

        return pc

    async def _consume(self, track: MediaStreamTrack, record: ViewRecord) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:  # noqa: BLE001 - track ended
                return
            now = time.time() * 1000
            if track.kind == "audio":
                record.audio_frames += 1
                continue
            ts = read_stamp(frame.to_ndarray(format="rgb24"))
            record.frames.append((now, ts))
            if record.epoch_unix_ms is not None:
                record.latencies_ms.append(now - (record.epoch_unix_ms + ts))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.router.close_all()
        await self.client.close()
