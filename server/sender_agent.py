"""Python senders of a call.

- ``FileSender``: a video file -> face canvas (``load_face_clip``) -> the talkcodec link, paced
  in real time (optionally looping): a single person sees a reconstructed face.
- ``DeviceSender``: a camera device (``/dev/video0`` through PyAV/v4l2) -> ``LiveEncoder``.
- ``SenderAgent``: the browser's camera -> this process (same machine, loopback WebRTC) ->
  ``LiveEncoder`` -> the talkcodec link. The page's full-rate camera never leaves the
  sender's machine; only the talkcodec stream goes to the receiver (docs/CALL.md).

Each joins the room over signalling and offers ``link:<name>`` to the receiver worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from codec import AUDIO_RATE, CANVAS_FPS
from codec.errors import InputError
from codec.sender.sender import Sender, SenderConfig
from codec.types import FaceClip
from server.live_encoder import LiveEncoder, force_intra
from server.sender_link import SenderLink
from server.sessions import SessionRouter
from server.signal_client import SignalClient
from server.transport import (
    DEFAULT_AUDIO_FRAME_MS,
    LinkShape,
    PcmAudioTrack,
    close_peer_connection,
    new_peer_connection,
)

log = logging.getLogger(__name__)
FRAME_MS = 1000.0 / CANVAS_FPS


async def wait_for_receiver(client: SignalClient, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for peer, info in client.peers.items():
            if info.get("role") == "receiver":
                return peer
        await asyncio.sleep(0.1)
    raise ConnectionError("no receiver worker in the room")


class FileSender:
    """Streams one face clip over the link in real time."""

    def __init__(self, client: SignalClient, clip: FaceClip, *, loop: bool = False,
                 config: SenderConfig | None = None, link_shape: LinkShape | None = None,
                 audio_frame_ms: int = DEFAULT_AUDIO_FRAME_MS,
                 ice_servers: list | None = None) -> None:
        self.client, self.clip, self.loop = client, clip, loop
        self.audio_frame_ms = audio_frame_ms
        self.config = config or SenderConfig()
        self.link_shape, self.ice_servers = link_shape, ice_servers
        self.router = SessionRouter(client)
        self.link: SenderLink | None = None
        self.frames_sent = 0

    async def run(self, max_seconds: float | None = None) -> None:
        await self.client.connect()
        router_task = asyncio.ensure_future(self.router.run())
        try:
            receiver = await wait_for_receiver(self.client)
            audio = PcmAudioTrack() if self.clip.audio is not None else None
            self.link = SenderLink(self.router, receiver, f"link:{self.client.peer}",
                                   audio_track=audio, audio_bitrate=self.config.audio_bitrate,
                                   audio_frame_ms=self.audio_frame_ms, link_shape=self.link_shape, ice_servers=self.ice_servers)
            await self.link.open()
            await self._stream(self.link, audio, max_seconds)
        finally:
            if self.link is not None:
                await close_peer_connection(self.link.pc)
            await self.client.close()
            router_task.cancel()

    async def _stream(self, link: SenderLink, audio: PcmAudioTrack | None,
                      max_seconds: float | None) -> None:
        sender = Sender(self.config)
        clip = self.clip
        per_frame = AUDIO_RATE // CANVAS_FPS
        epoch = time.time() * 1000
        link.set_epoch(epoch)
        link.on_intra_request = lambda: force_intra(sender)
        link.send(sender.start(clip.frames[0], 0))
        k = 0
        while link.connected:
            i = k % clip.n_frames
            if k and i == 0 and not self.loop:
                break
            ts = int(round(k * FRAME_MS))
            if max_seconds is not None and ts > max_seconds * 1000:
                break
            delay = (epoch + ts) / 1000 - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if audio is not None and clip.audio is not None:
                audio.feed(clip.audio[i * per_frame : (i + 1) * per_frame])
            link.send(sender.push_canvas_frame(clip.frames[i], ts))
            self.frames_sent += 1
            k += 1


async def _latest_frame(track: MediaStreamTrack):  # noqa: ANN202 - av.VideoFrame
    """The next frame, skipping any that queued up while we were busy (stay real-time)."""
    frame = await track.recv()
    queue = getattr(track, "_queue", None)
    while queue is not None and queue.qsize() > 0:
        frame = await track.recv()
    return frame


class SenderAgent:
    """Serves browser cameras (sessions ``camera:<viewer>``) on this machine."""

    def __init__(self, client: SignalClient, *, config: SenderConfig | None = None,
                 ice_servers: list | None = None,
                 audio_frame_ms: int = DEFAULT_AUDIO_FRAME_MS) -> None:
        self.client = client
        self.config = config or SenderConfig()
        self.ice_servers = ice_servers
        self.audio_frame_ms = audio_frame_ms
        self.router = SessionRouter(client)
        self.router.on_offer = self._on_offer
        self.relay = MediaRelay()
        self.links: dict[str, SenderLink] = {}
        self.encoders: dict[str, LiveEncoder] = {}

    async def run(self) -> None:
        await self.client.connect()
        await self.router.run()

    async def _on_offer(self, peer: str, session: str, data: dict) -> RTCPeerConnection | None:
        if not session.startswith("camera:"):
            return None
        pc = new_peer_connection(self.ice_servers)
        tracks: dict[str, MediaStreamTrack] = {}
        pc.on("track", lambda t: tracks.__setitem__(t.kind, t))
        asyncio.ensure_future(self._serve_camera(peer, pc, tracks))
        return pc

    async def _serve_camera(self, viewer: str, pc: RTCPeerConnection,
                            tracks: dict[str, MediaStreamTrack]) -> None:
        for _ in range(200):
            if pc.connectionState == "connected" and "video" in tracks:
                break
            await asyncio.sleep(0.05)
        video = tracks.get("video")
        if video is None:
            return
        audio = self.relay.subscribe(tracks["audio"]) if "audio" in tracks else None
        encoder = LiveEncoder(self.config)
        loop = asyncio.get_running_loop()
        link: SenderLink | None = None
        try:
            while pc.connectionState not in ("closed", "failed"):
                frame = await _latest_frame(video)
                rgb = frame.to_ndarray(format="rgb24")
                now = time.time() * 1000
                packets = await loop.run_in_executor(None, encoder.push, rgb, now)
                if link is None and encoder.started:
                    receiver = await wait_for_receiver(self.client)
                    link = SenderLink(self.router, receiver, f"link:{viewer}", audio_track=audio,
                                      audio_bitrate=self.config.audio_bitrate,
                                      audio_frame_ms=self.audio_frame_ms,
                                      ice_servers=self.ice_servers)
                    link.on_intra_request = encoder.request_intra
                    self.links[viewer] = link
                    self.encoders[viewer] = encoder
                    await link.open()
                    assert encoder.epoch_ms is not None
                    link.set_epoch(encoder.epoch_ms)
                if link is not None:
                    link.send(packets)
        except Exception:  # noqa: BLE001 - the camera went away: end this uplink only
            log.info("camera of %s ended", viewer, exc_info=True)
        finally:
            if link is not None:
                await link.close()
            self.links.pop(viewer, None)
            self.encoders.pop(viewer, None)


class DeviceSender:
    """A local camera device (v4l2 through PyAV) -> the talkcodec link (video only)."""

    def __init__(self, client: SignalClient, device: str, *, config: SenderConfig | None = None,
                 ice_servers: list | None = None) -> None:
        if not Path(device).exists():
            raise InputError(f"{device}: no such camera device")
        self.client, self.device = client, device
        self.config = config or SenderConfig()
        self.ice_servers = ice_servers
        self.router = SessionRouter(client)

    async def run(self) -> None:
        import av

        await self.client.connect()
        router_task = asyncio.ensure_future(self.router.run())
        loop = asyncio.get_running_loop()
        container = await loop.run_in_executor(None, lambda: av.open(self.device, format="v4l2"))
        encoder = LiveEncoder(self.config)
        link: SenderLink | None = None
        try:
            frames = container.decode(video=0)
            while True:
                frame = await loop.run_in_executor(None, next, frames, None)
                if frame is None:
                    break
                rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                packets = await loop.run_in_executor(None, encoder.push, rgb, time.time() * 1000)
                if link is None and encoder.started:
                    link = SenderLink(self.router, await wait_for_receiver(self.client),
                                      f"link:{self.client.peer}", ice_servers=self.ice_servers)
                    link.on_intra_request = encoder.request_intra
                    await link.open()
                    assert encoder.epoch_ms is not None
                    link.set_epoch(encoder.epoch_ms)
                if link is not None:
                    if not link.connected:
                        break
                    link.send(packets)
        finally:
            container.close()
            if link is not None:
                await link.close()
            await self.client.close()
            router_task.cancel()
