"""The receiver worker: answers talkcodec links, runs a receiver per link, streams the
reconstruction to every viewer of the room as ordinary WebRTC (video + audio + a data
channel with the 8x8 frames and live figures).

Sessions: a sender offers ``link:<name>``; the worker offers ``view:<sender>/<session>`` to
each viewer for each live link.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from av import AudioResampler

from codec import FRAME_MS
from codec.receiver.base import Receiver
from codec.receiver.registry import FALLBACK_RECEIVER, default_receiver_name, get_receiver
from codec.types import AudioChunk, IdentityFrame, LowResFrame, OutputFrame
from server.audio_tracks import SenderAudioClock, prompt_audio_receiver
from server.link_decoder import LOWRES_DROPPED, LinkDecoder, RateWindow
from server.link_pieces import PieceJoiner
from server.sessions import SessionRouter
from server.signal_client import SignalClient
from server.transport import (
    LOWRES_CHANNEL,
    RELIABLE_CHANNEL,
    close_peer_connection,
    new_peer_connection,
)
from server.view_tracks import (
    LiveRelayTrack,
    PlayoutClock,
    ReconstructedVideoTrack,
    SyncedAudioTrack,
)

log = logging.getLogger(__name__)
VIEW_CHANNEL = "talkcodec-view"
STATS_PERIOD_S = 1.0
FRAME_S = 0.04
LIVE_MAX_LAG_MS = 600.0


@dataclass
class WorkerConfig:
    receiver: str = ""  # "" = default_receiver_name()
    low_latency: bool = False
    ice_servers: list | None = None
    # Called for each new peer connection instead of ``ice_servers`` when given: fresh
    # time-limited TURN credentials (server/turn.py).
    ice_provider: Callable[[], list] | None = None


class LinkSession:
    """One sender's talkcodec link at the receiver: decode, reconstruct, fan out."""

    def __init__(self, worker: ReceiverWorker, peer: str, session: str, label: str) -> None:
        self.worker, self.peer, self.session, self.label = worker, peer, session, label
        self.key = f"{peer}/{session}"
        self.pc = new_peer_connection(worker.ice_servers())
        self.receiver: Receiver = get_receiver(worker.receiver_name,
                                               low_latency=worker.config.low_latency)
        # Live: when rendering falls this far behind the presentation clock (a slow CPU),
        # the output clock jumps ahead (frames are skipped) instead of replaying the past.
        self.receiver.max_gap_ms = LIVE_MAX_LAG_MS
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receiver")
        loop = asyncio.get_running_loop()
        # The decoder runs in the executor thread; the request goes out on the event loop.
        self.decoder = LinkDecoder(
            self.receiver, on_gap=lambda: loop.call_soon_threadsafe(self._request_intra),  # type: ignore[arg-type]
            on_identity=lambda: loop.call_soon_threadsafe(self._ack_identity),  # type: ignore[arg-type]
        )
        self.reliable: RTCDataChannel | None = None
        self.pieces = PieceJoiner()  # the identity frame comes in pieces (link_pieces.py)
        self.epoch_unix_ms: float | None = None
        self.audio_track: MediaStreamTrack | None = None
        self.audio_clock: SenderAudioClock | None = None
        # The viewers' audio: the link's speech played out on the video's clock (lip sync).
        self.playout = PlayoutClock()
        self.viewer_audio: SyncedAudioTrack | None = None
        self.audio_rate = RateWindow()
        # Each viewer's view of it: its track, its data channel and its connection.
        self.viewers: dict[str, tuple[ReconstructedVideoTrack, RTCDataChannel,
                                      RTCPeerConnection]] = {}
        # Views are offered once the link is connected (``views_open``); a viewer whose
        # offer is in flight is in ``offering``, True when it is to be offered again after
        # (the audio track came meanwhile): never two offers of one view at once.
        self.views_open = False
        self.offering: dict[str, bool] = {}
        self.rendered = RateWindow()
        self.transport_history: deque[tuple[float, int]] = deque()
        self.render_ms = 0.0
        self.frames_out = 0
        self.frames_skipped = 0
        self.last_out_ms: float | None = None
        self.fallback = False
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    # ---- input side ------------------------------------------------------------------
    def _on_channel(self, channel: RTCDataChannel) -> None:
        if channel.label == RELIABLE_CHANNEL:
            self.reliable = channel
        channel.on("message", lambda m: self._on_message(channel.label, m))

    def _on_message(self, label: str, message: bytes | str) -> None:
        if isinstance(message, str):
            self._on_control(message)
            return
        if label not in (LOWRES_CHANNEL, RELIABLE_CHANNEL) or len(message) > 300_000:
            return
        if label == RELIABLE_CHANNEL:
            whole = self.pieces.push(message)
            if whole is None:
                return
            message = whole
        self.tasks.append(asyncio.ensure_future(self._feed(message)))
        self.tasks = [t for t in self.tasks if not t.done()]

    def _on_control(self, text: str) -> None:
        try:
            msg = json.loads(text) if len(text) < 4096 else {}
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("type") == "epoch":
            epoch = msg.get("epoch_unix_ms")
            if isinstance(epoch, (int, float)) and abs(epoch / 1000 - time.time()) < 86400:
                self.epoch_unix_ms = self.playout.epoch_unix_ms = float(epoch)
                self._broadcast({"type": "epoch", "epoch_unix_ms": self.epoch_unix_ms})

    async def _feed(self, datagram: bytes) -> None:
        loop = asyncio.get_running_loop()
        frames = await loop.run_in_executor(self.executor, self.decoder.feed, datagram)
        for frame in frames:
            self._broadcast_lowres(frame)
        self.wake.set()

    def _request_intra(self) -> None:
        self._control({"type": "intra-request"})

    def _ack_identity(self) -> None:
        # The sender holds its 8x8 stream and speech until this (sender_link.py).
        self._control({"type": "identity-ack"})

    def _control(self, msg: dict) -> None:
        if self.reliable is not None and self.reliable.readyState == "open":
            self.reliable.send(json.dumps(msg))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        self.audio_track = track
        for rtp_receiver in self.pc.getReceivers():
            if rtp_receiver.track is track:
                _count_rtp_payload(rtp_receiver, self.audio_rate)
                # Decode each Opus packet on arrival; stamp it from the sender's reports.
                self.audio_clock = prompt_audio_receiver(rtp_receiver)
        self.viewer_audio = SyncedAudioTrack(self.playout)
        relayed = self.worker.relay.subscribe(track)
        self.tasks.append(asyncio.ensure_future(self._consume_audio(relayed)))
        for viewer in list(self.viewers):
            asyncio.ensure_future(self.worker.offer_view(viewer, self))

    def _audio_stream_ms(self, frame: Any) -> float | None:  # frame: an av.AudioFrame
        """Stream time (capture - epoch) of a decoded frame's first sample: from the
        sender's RTCP reports, or (before the first one) arrival time - duration."""
        if self.epoch_unix_ms is None:
            return None
        captured = self.audio_clock.capture_unix_ms(frame) if self.audio_clock else None
        if captured is None:
            captured = time.time() * 1000 - 1000.0 * frame.samples / frame.sample_rate
        return captured - self.epoch_unix_ms

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="flt", layout="mono", rate=16000)
        to_viewers = AudioResampler(format="s16", layout="mono", rate=SyncedAudioTrack.RATE)
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except Exception:  # noqa: BLE001 - track ended
                return
            stream_ms = self._audio_stream_ms(frame)
            if stream_ms is None:
                continue
            if self.viewer_audio is not None:
                for out in to_viewers.resample(frame):  # type: ignore[arg-type]
                    self.viewer_audio.push(out.to_ndarray().reshape(-1), stream_ms)
            pcm = np.concatenate([out.to_ndarray().reshape(-1).astype(np.float32)
                                  for out in resampler.resample(frame)] or [np.zeros(0, np.float32)])  # type: ignore[arg-type]
            if len(pcm):
                chunk = AudioChunk(samples=pcm, timestamp_ms=max(0, int(stream_ms)))
                await loop.run_in_executor(self.executor, self.receiver.push_audio, chunk)

    # ---- output side -----------------------------------------------------------------
    async def render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_stats = 0.0
        while self.pc.connectionState not in ("closed", "failed"):
            try:
                await asyncio.wait_for(self.wake.wait(), FRAME_S)
            except TimeoutError:
                pass
            self.wake.clear()
            t0 = time.perf_counter()
            # The presentation clock (stream time now) lets the receiver hold through loss
            # (low latency) and bounds the wait for the next 8x8 frame (interpolate).
            now_ms = None if self.epoch_unix_ms is None else time.time() * 1000 - self.epoch_unix_ms
            try:
                frames = await loop.run_in_executor(self.executor, self.receiver.pull, now_ms)
            except Exception:  # noqa: BLE001 - a broken receiver must not end the call
                log.exception("receiver %s failed; falling back to %s", self.receiver.name,
                              FALLBACK_RECEIVER)
                await loop.run_in_executor(self.executor, self._fall_back)
                continue
            if frames:
                self.render_ms = 1000 * (time.perf_counter() - t0) / len(frames)
            for f in frames:
                self._emit(f)
            if time.monotonic() - last_stats >= STATS_PERIOD_S:
                last_stats = time.monotonic()
                await self._send_stats()

    def _fall_back(self) -> None:
        """Replace the receiver by the cheap baseline (runs on the receiver thread)."""
        old = self.receiver
        if old.name == FALLBACK_RECEIVER:
            raise RuntimeError("the fallback receiver failed too")
        new = get_receiver(FALLBACK_RECEIVER, low_latency=old.low_latency)
        new.max_gap_ms = LIVE_MAX_LAG_MS
        if old.identity is not None:
            new.set_identity(old.identity)
        self.receiver = self.decoder.receiver = new
        self.fallback = True

    def _emit(self, frame: OutputFrame) -> None:
        if self.last_out_ms is not None:
            # Output frames the clock skipped (an outage, or a jump ahead of a slow CPU).
            gap = round((frame.timestamp_ms - self.last_out_ms) / FRAME_MS) - 1
            if 0 < gap < 10**6:
                self.frames_skipped += gap
        self.last_out_ms = frame.timestamp_ms
        self.frames_out += 1
        self.worker.frames_total += 1
        self.rendered.add(1)
        for track, _, _ in self.viewers.values():
            track.put(frame)

    def _broadcast(self, msg: dict) -> None:
        text = json.dumps(msg)
        for _, channel, _ in self.viewers.values():
            if channel.readyState == "open":
                channel.send(text)

    def _broadcast_lowres(self, frame: LowResFrame) -> None:
        pixels = np.clip(np.round(frame.pixels), 0, 255).astype(np.uint8)
        self._broadcast({"type": "lowres", "ts": frame.timestamp_ms, "size": pixels.shape[0],
                         "rgb": base64.b64encode(pixels.tobytes()).decode()})

    def _transport_bytes(self) -> int:
        if self.pc.sctp is None:
            return 0
        for stat in self.pc.sctp.transport._get_stats().values():
            if stat.type == "transport":
                return int(stat.bytesReceived)
        return 0

    async def figures(self) -> dict:
        """Live figures of this link, as measured at the receiver."""
        audio_bytes = audio_lost = audio_packets = 0
        transport_bytes = self._transport_bytes()
        now = time.monotonic()
        self.transport_history.append((now, transport_bytes))
        while len(self.transport_history) > 2 and self.transport_history[0][0] < now - 4.0:
            self.transport_history.popleft()
        (t0, b0), (t1, b1) = self.transport_history[0], self.transport_history[-1]
        transport_kbps = (b1 - b0) * 8 / (t1 - t0) / 1000 if t1 > t0 else 0.0
        for receiver in self.pc.getReceivers():
            if receiver.track is None or receiver.track.kind != "audio":
                continue
            for stat in (await receiver.getStats()).values():
                if stat.type == "inbound-rtp":
                    audio_packets += stat.packetsReceived
                    audio_lost += max(0, stat.packetsLost)
                elif stat.type == "remote-outbound-rtp":
                    # The sender's own count of Opus payload octets (RTCP sender reports).
                    audio_bytes += stat.bytesSent
        c = self.decoder.counters
        video_kbps = self.decoder.video_rate.bps() / 1000
        audio_kbps = self.audio_rate.bps() / 1000
        return {
            "type": "stats", "label": self.label,
            "video_kbps": video_kbps, "audio_kbps": audio_kbps,
            "code_kbps": self.decoder.code_rate.bps() / 1000,
            "total_kbps": video_kbps + audio_kbps, "transport_kbps": transport_kbps,
            "audio_bytes": audio_bytes, "audio_packets": audio_packets,
            "audio_loss": audio_lost / max(1, audio_lost + audio_packets),
            "transport_bytes": transport_bytes,
            "lowres_loss": self.decoder.loss_fraction(),
            "lowres_decoded": c.lowres_decoded, "corrupt": c.corrupt,
            "fps": self.rendered.bps() / 8, "render_ms": self.render_ms,
            "frames_out": self.frames_out, "receiver": self.receiver.name,
            "low_latency": self.worker.config.low_latency,
            "identity_bytes": c.bytes_by_kind["IDENTITY"],
            "server_unix_ms": time.time() * 1000,
        }

    async def _send_stats(self) -> None:
        try:
            figures = await self.figures()
        except Exception:  # noqa: BLE001 - a figure must never stop the link's rendering
            log.exception("link %s: live figures failed; rendering goes on", self.key)
            return
        self._broadcast(figures)

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.wake.set()
            asyncio.ensure_future(self.worker.drop_link(self))

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        if self.viewer_audio is not None:
            self.viewer_audio.stop()
        await close_peer_connection(self.pc)
        self.executor.shutdown(wait=False, cancel_futures=True)


def render_test_frame(receiver: Receiver) -> float:
    """Render one second of a synthetic stream (a gradient identity frame, flat 8x8 frames)
    with ``receiver``; returns ms per frame. Raises when nothing comes out right."""
    y, x = np.mgrid[0:receiver.canvas_size, 0:receiver.canvas_size]
    receiver.set_identity(IdentityFrame(image=np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)))
    for i in range(6):
        receiver.push_lowres(LowResFrame(pixels=np.full((8, 8, 3), 96.0 + 8 * i, np.float32),
                                         timestamp_ms=200 * i))
    t0 = time.perf_counter()
    frames = receiver.flush(end_ms=1000)
    ms = 1000 * (time.perf_counter() - t0) / max(1, len(frames))
    shape = (receiver.canvas_size, receiver.canvas_size, 3)
    if not frames or frames[0].image.shape != shape or frames[0].image.dtype != np.uint8:
        raise RuntimeError(f"receiver {receiver.name}: the test frame did not render")
    return ms


def self_test(receiver_name: str, low_latency: bool) -> float:
    """Fail now, not at the first call, when the receiver cannot be built here (e.g.
    TALKCODEC_DEVICE=cuda without a CUDA build of ONNX Runtime); then render a test frame,
    so that readiness means "models loaded and rendering". Returns ms per frame."""
    probe = get_receiver(receiver_name, low_latency=low_latency)
    ms = render_test_frame(probe)
    log.info("receiver %s on %s; test frame rendered in %.0f ms", receiver_name,
             ", ".join(getattr(probe, "providers", ["CPU"])), ms)
    return ms


def _count_rtp_payload(rtp_receiver: object, window: RateWindow) -> None:
    """Count the Opus RTP payload bytes this receiver gets, as they arrive."""
    handle = rtp_receiver._handle_rtp_packet  # type: ignore[attr-defined]

    async def counting(packet: Any, arrival_time_ms: int) -> Any:
        window.add(len(packet.payload))
        return await handle(packet, arrival_time_ms)

    rtp_receiver._handle_rtp_packet = counting  # type: ignore[attr-defined]


class ReceiverWorker:
    """Joins a room as ``receiver`` and serves every link and viewer in it."""

    def __init__(self, client: SignalClient, config: WorkerConfig | None = None,
                 self_test_ms: float | None = None) -> None:
        self.client = client
        self.config = config or WorkerConfig()
        self.receiver_name = self.config.receiver or default_receiver_name()
        if self_test_ms is None:  # given: the pool's worker tested once for all its rooms
            self_test_ms = self_test(self.receiver_name, self.config.low_latency)
        self.self_test_ms = self_test_ms
        self.joined = False  # in the room on signalling now
        self.draining = False  # after SIGTERM: no new links, running ones kept
        self.frames_total = 0
        # The counters of links that ended, so the exported totals never go down.
        self.ended_counts = dict.fromkeys([*LOWRES_DROPPED, "skipped"], 0)
        self.router = SessionRouter(client)
        self.router.on_offer = self._on_offer
        self.router.on_peer_joined = self._on_peer_joined
        self.router.on_peer_left = self._on_peer_left
        self.links: dict[str, LinkSession] = {}
        self.viewers: set[str] = set()
        self.relay = MediaRelay()

    async def run(self) -> None:
        peers = await self.client.connect()
        self.joined = True
        try:
            self.viewers = {p["peer"] for p in peers if p["role"] == "viewer"}
            await self.router.run()
        finally:
            self.joined = False

    def ice_servers(self) -> list | None:
        if self.config.ice_provider is not None:
            return self.config.ice_provider()
        return self.config.ice_servers

    def readiness(self) -> tuple[bool, str]:
        """Ready for new links: models loaded and a frame rendered (at construction),
        joined to signalling, not draining."""
        if self.draining:
            return False, "draining"
        if not self.joined:
            return False, "not joined to signalling"
        return True, ""

    def snapshot(self) -> dict[str, dict[tuple[str, ...], float]]:
        """The figures ``server.ops.RECEIVER_METRICS`` exports (taken on the event loop)."""
        links = list(self.links.values())
        rendering = [link.render_ms for link in links if link.frames_out]
        return {
            "talkcodec_receiver_links": {(): len(links)},
            "talkcodec_receiver_viewers": {(): sum(len(link.viewers) for link in links)},
            "talkcodec_receiver_render_fps": {(): sum(link.rendered.bps() / 8 for link in links)},
            "talkcodec_receiver_render_ms": {(): sum(rendering) / len(rendering)
                                             if rendering else 0.0},
            "talkcodec_receiver_frames": {(): self.frames_total},
            "talkcodec_receiver_fallbacks": {(): sum(link.fallback for link in links)},
            "talkcodec_receiver_draining": {(): float(self.draining)},
            "talkcodec_receiver_link_kbps": {
                ("video",): sum(link.decoder.video_rate.bps() for link in links) / 1000,
                ("code",): sum(link.decoder.code_rate.bps() for link in links) / 1000,
                ("audio",): sum(link.audio_rate.bps() for link in links) / 1000},
            "talkcodec_receiver_lowres_dropped": {
                (why,): self.ended_counts[why] + sum(getattr(link.decoder.counters, field)
                                                     for link in links)
                for why, field in LOWRES_DROPPED.items()},
            "talkcodec_receiver_frames_skipped": {
                (): self.ended_counts["skipped"] + sum(link.frames_skipped for link in links)},
        }

    async def drain(self, grace_s: float) -> None:
        """Take no new links; keep the running ones until they end or ``grace_s`` passes,
        then close them."""
        self.draining = True
        log.info("draining: %d links, up to %.0f s", len(self.links), grace_s)
        deadline = time.monotonic() + grace_s
        while self.links and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        if self.links:
            log.warning("drain: grace over, closing %d links", len(self.links))
        for link in list(self.links.values()):
            await self.drop_link(link)

    async def _on_offer(self, peer: str, session: str, data: dict) -> RTCPeerConnection | None:
        if not session.startswith("link:"):
            return None
        info = self.client.peers.get(peer, {})
        owner = session[len("link:"):]
        if info.get("role") == "agent":  # a browser camera: name the viewer it belongs to
            info = self.client.peers.get(owner, {"label": owner})
        label = info.get("label") or owner or peer
        if self.draining and f"{peer}/{session}" not in self.links:
            log.info("draining: refused new link %s/%s", peer, session)
            await self.client.signal(peer, {"session": session, "kind": "bye",
                                            "reason": "receiver draining"})
            return None
        old = self.links.pop(f"{peer}/{session}", None)
        if old is not None:
            await old.close()
        link = LinkSession(self, peer, session, label)
        self.links[link.key] = link
        link.tasks.append(asyncio.ensure_future(link.render_loop()))
        link.tasks.append(asyncio.ensure_future(self._offer_views_when_connected(link)))
        return link.pc

    async def _offer_views_when_connected(self, link: LinkSession) -> None:
        for _ in range(400):
            if link.pc.connectionState == "connected":
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # let the audio track appear first
        # A viewer who joined during the wait is offered here, not also by its peer-joined.
        link.views_open = True
        for viewer in list(self.viewers):
            if viewer not in link.viewers:
                await self.offer_view(viewer, link)

    async def offer_view(self, viewer: str, link: LinkSession) -> None:
        """Offer ``viewer`` the view of ``link``, or, while an offer of it is in flight,
        once more after that one."""
        if viewer in link.offering:
            link.offering[viewer] = True
            return
        link.offering[viewer] = False
        try:
            while True:
                await self._offer_view_once(viewer, link)
                if not link.offering.get(viewer) or self.links.get(link.key) is not link:
                    return
                link.offering[viewer] = False
        finally:
            link.offering.pop(viewer, None)

    async def _offer_view_once(self, viewer: str, link: LinkSession) -> None:
        pc = new_peer_connection(self.ice_servers())
        track = ReconstructedVideoTrack(clock=link.playout)
        pc.addTrack(track)
        if link.viewer_audio is not None:
            # aiortc gives both tracks the connection's one media stream (msid): browsers
            # lip-sync the tracks of a stream by the sender reports, and the worker already
            # sends them aligned (SyncedAudioTrack).
            audio = LiveRelayTrack(self.relay.subscribe(link.viewer_audio))
            pc.addTrack(audio)
            # aiortc does not stop a closed connection's tracks: the relay would go on
            # queueing this viewer's audio for nobody.
            pc.on("connectionstatechange", lambda: audio.stop()
                  if pc.connectionState in ("closed", "failed") else None)
        channel = pc.createDataChannel(VIEW_CHANNEL)
        link.viewers[viewer] = (track, channel, pc)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            # A viewer's stream that fails while both ends are still in the call is offered
            # again (the page cannot: the worker offers).
            if pc.connectionState == "failed" and link.viewers.get(viewer, (None,))[0] is track:
                log.warning("view of %s for %s failed; offering it again", link.label, viewer)
                link.tasks.append(asyncio.ensure_future(self._offer_again(viewer, link)))

        @channel.on("open")
        def on_open() -> None:
            channel.send(json.dumps({"type": "hello", "label": link.label, "link": link.key}))
            if link.epoch_unix_ms is not None:
                channel.send(json.dumps({"type": "epoch", "epoch_unix_ms": link.epoch_unix_ms}))

        try:
            await self.router.offer(viewer, f"view:{link.key}", pc)
        except (TimeoutError, ConnectionError):
            if link.viewers.get(viewer, (None,))[0] is track:
                link.viewers.pop(viewer, None)
            await close_peer_connection(pc)

    async def _offer_again(self, viewer: str, link: LinkSession, delay_s: float = 1.0) -> None:
        await asyncio.sleep(delay_s)
        if viewer in self.viewers and self.links.get(link.key) is link:
            await self.offer_view(viewer, link)

    async def _on_peer_joined(self, msg: dict) -> None:
        if msg.get("role") == "viewer":
            self.viewers.add(msg["peer"])
            for link in list(self.links.values()):
                if not link.views_open:
                    continue  # offered with the others once the link is connected
                # Not awaited here: the answer comes through this same message loop.
                link.tasks.append(asyncio.ensure_future(self.offer_view(msg["peer"], link)))

    async def _on_peer_left(self, msg: dict) -> None:
        peer = msg["peer"]
        self.viewers.discard(peer)
        for key in [k for k, link in self.links.items() if link.peer == peer]:
            await self.links.pop(key).close()
        for link in self.links.values():
            link.viewers.pop(peer, None)

    async def drop_link(self, link: LinkSession) -> None:
        if self.links.get(link.key) is link:
            self.links.pop(link.key)
            for why, field in LOWRES_DROPPED.items():
                self.ended_counts[why] += getattr(link.decoder.counters, field)
            self.ended_counts["skipped"] += link.frames_skipped
            log.warning("link %s (%s) ended: connection %s", link.key, link.label,
                        link.pc.connectionState)
        await link.close()
        for viewer, (_, _, pc) in list(link.viewers.items()):
            # Only its own views: a new link of the same sender (its page joined afresh)
            # may already have offered this viewer the same session.
            await self.router.close_session(viewer, f"view:{link.key}", only=pc)
        if self.router.pcs.get((link.peer, link.session)) is link.pc:
            # The sender hears it now and offers again (to another receiver of a pool).
            await self.router.close_session(link.peer, link.session)
