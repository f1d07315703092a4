"""A headless viewer (Python) for tests and benchmarks: joins a room as ``viewer``, accepts
the worker's view sessions, reads the timestamp stamp of every displayed frame and keeps
the worker's live figures. Glass-to-glass latency = receive time - (sender epoch + frame
timestamp), on one machine's clock. Audio: it records when each decoded audio frame arrives
and the onsets of loud sounds (a beep probe for lip sync); its audio is decoded as each
packet arrives (no jitter-buffer prefetch), so an onset's time is its arrival."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from codec import AUDIO_RATE, CANVAS_FPS
from server.audio_tracks import prompt_audio_receiver
from server.sessions import SessionRouter
from server.signal_client import SignalClient
from server.transport import new_peer_connection
from server.view_tracks import read_stamp

BEEP_PERIOD_MS, BEEP_AT_MS, BEEP_MS = 1000, 500, 60
ONSET_LEVEL = 0.2  # of full scale
ONSET_QUIET_MS = 300.0  # a new onset only after this much quiet


@dataclass
class ViewRecord:
    frames: list[tuple[float, int]] = field(default_factory=list)  # (unix ms, stamp ts)
    latencies_ms: list[float] = field(default_factory=list)
    # Latency of each frame's arrival (its last RTP packet) before aiortc's jitter buffer,
    # which holds a video frame until the next one starts (one frame, 40 ms).
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (unix ms, latency ms)
    stats: list[dict] = field(default_factory=list)
    lowres: int = 0
    audio_frames: int = 0
    audio_onsets_ms: list[float] = field(default_factory=list)  # unix ms
    last_loud_ms: float = float("-inf")
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
            arrivals: dict[int, float] = {}
            for rtp_receiver in pc.getReceivers():
                if rtp_receiver.track is track:
                    if track.kind == "audio":
                        prompt_audio_receiver(rtp_receiver)
                    else:
                        _note_arrivals(rtp_receiver, arrivals)
            self._tasks.append(asyncio.ensure_future(self._consume(track, record, arrivals)))

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
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

    async def _consume(self, track: MediaStreamTrack, record: ViewRecord,
                       arrivals: dict[int, float]) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:  # noqa: BLE001 - track ended
                return
            now = time.time() * 1000
            if track.kind == "audio":
                record.audio_frames += 1
                _find_onsets(frame, now, record)
                continue
            ts = read_stamp(frame.to_ndarray(format="rgb24"))  # type: ignore[union-attr]
            record.frames.append((now, ts))
            arrived = None
            if "first" in arrivals and frame.pts is not None:
                arrived = arrivals.pop((int(arrivals["first"]) + frame.pts) & 0xFFFFFFFF, None)  # type: ignore[index]
            if record.epoch_unix_ms is not None:
                record.latencies_ms.append(now - (record.epoch_unix_ms + ts))
                if arrived is not None:
                    record.arrivals.append((arrived, arrived - (record.epoch_unix_ms + ts)))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.router.close_all()
        await self.client.close()


@asynccontextmanager
async def probe_call(clip: Any, *, receiver: str, low_latency: bool = False,
                     max_seconds: float = 60.0, viewer_name: str = "probe",
                     **sender_kw: Any) -> AsyncIterator[tuple[Any, ProbeViewer, Any]]:
    """A loopback call (no agent) with a probe viewer and a looping file sender of ``clip``
    (``sender_kw`` go to ``FileSender``); yields (call, viewer, sender) and tears all of it
    down on exit. What tests and ``bench_call.py`` measure calls through."""
    from server.local_call import start_local_call
    from server.sender_agent import FileSender

    call = await start_local_call(with_agent=False, receiver=receiver, low_latency=low_latency)
    viewer = ProbeViewer(call.client("viewer", viewer_name))
    viewer_task = asyncio.ensure_future(viewer.run())
    await asyncio.sleep(0.3)  # the viewer is in the room before the link starts
    sender = FileSender(call.client("sender", "clip"), clip, loop=True, **sender_kw)
    sender_task = asyncio.ensure_future(sender.run(max_seconds=max_seconds))
    try:
        yield call, viewer, sender
    finally:
        sender_task.cancel()
        await viewer.close()
        viewer_task.cancel()
        await call.stop()


def _note_arrivals(rtp_receiver: object, arrivals: dict) -> None:
    """Arrival time (unix ms) of each video frame's last RTP packet, by RTP timestamp;
    ``arrivals["first"]`` is the first frame's (decoded pts 0)."""
    handle = rtp_receiver._handle_rtp_packet  # type: ignore[attr-defined]

    async def noting(packet: Any, arrival_time_ms: int) -> Any:
        if packet.marker:
            arrivals.setdefault("first", packet.timestamp)
            arrivals[packet.timestamp] = time.time() * 1000
            if len(arrivals) > 400:
                for key in [k for k in arrivals if k != "first"][:200]:
                    del arrivals[key]
        return await handle(packet, arrival_time_ms)

    rtp_receiver._handle_rtp_packet = noting  # type: ignore[attr-defined]


def _find_onsets(frame: Any, recv_unix_ms: float, record: ViewRecord) -> None:
    """Onsets of loud sound in a decoded audio frame (interleaved s16 at 48 kHz)."""
    channels = len(frame.layout.channels)
    pcm = frame.to_ndarray().reshape(-1)[::channels].astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(pcm) > ONSET_LEVEL)
    if not len(loud):
        return
    rate = frame.sample_rate
    first = recv_unix_ms + 1000.0 * loud[0] / rate
    if first - record.last_loud_ms > ONSET_QUIET_MS:
        record.audio_onsets_ms.append(first)
    record.last_loud_ms = recv_unix_ms + 1000.0 * loud[-1] / rate


def beep_clip(clip: Any) -> Any:  # FaceClip -> FaceClip
    """The lip-sync probe: the clip's video with its audio replaced by a 1 kHz beep every
    second (at stream time 500 ms + k s)."""
    import copy

    out = copy.copy(clip)
    t = np.arange(clip.n_frames * AUDIO_RATE // CANVAS_FPS) / AUDIO_RATE
    on = ((t * 1000 - BEEP_AT_MS) % BEEP_PERIOD_MS) < BEEP_MS
    out.audio = (0.5 * np.sin(2 * np.pi * 1000 * t) * on).astype(np.float32)
    return out


def av_offset(record: ViewRecord, seconds: float) -> dict:
    """A/V offset at this viewer over the last ``seconds``: for each beep onset, its latency
    (arrival - (epoch + its stream time)) minus the latency of the video frames that
    arrived within 200 ms of it (median), both as they arrive, before any playout buffer
    (a player syncs the two tracks of the stream itself). > 0: sound after picture."""
    if record.epoch_unix_ms is None or not record.audio_onsets_ms or not record.arrivals:
        raise RuntimeError("no beeps or no stamped frames reached the viewer")
    video = np.array(record.arrivals[-int(seconds * CANVAS_FPS):])
    onsets = np.array(record.audio_onsets_ms[-int(seconds * 1000 / BEEP_PERIOD_MS):])
    lat_a = (onsets - record.epoch_unix_ms - BEEP_AT_MS) % BEEP_PERIOD_MS
    off = []
    for onset, lat in zip(onsets, lat_a, strict=True):
        near = video[np.abs(video[:, 0] - onset) <= 200.0, 1]
        if len(near):
            off.append(lat - float(np.median(near)))
    if not off:
        raise RuntimeError("no video frame arrived near a beep")
    off = np.array(off)  # type: ignore[assignment]
    return {"av_offset_med": float(np.median(off)), "av_offset_p10": float(np.percentile(off, 10)),
            "av_offset_p90": float(np.percentile(off, 90)), "av_n": len(off),
            "audio_lat_med": float(np.median(lat_a)),
            "video_lat_med": float(np.median(video[:, 1])),
            "video_decoded_lat_med": float(np.median(record.latencies_ms[-len(video):]))}
