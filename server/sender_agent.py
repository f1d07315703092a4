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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from codec import AUDIO_RATE, CANVAS_FPS, FRAME_MS
from codec.errors import InputError
from codec.sender.landmarks import load_models
from codec.sender.sender import Sender, SenderConfig
from codec.types import FaceClip
from server.audio_tracks import FedAudioTrack
from server.link_audio import DEFAULT_AUDIO_FRAME_MS
from server.link_emulator import LinkShape
from server.live_encoder import LiveEncoder, force_intra
from server.sender_link import SenderLink
from server.sessions import SessionRouter
from server.signal_client import SignalClient
from server.transport import close_peer_connection, new_peer_connection

log = logging.getLogger(__name__)
MAX_BEHIND_S = 0.2  # FileSender: canvas frames later than this are skipped


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
        self.config = config or SenderConfig.live()
        self.link_shape, self.ice_servers = link_shape, ice_servers
        self.router = SessionRouter(client)
        self.link: SenderLink | None = None
        self.frames_sent = 0
        self.frames_skipped = 0
        self.links_lost = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-sender")

    async def run(self, max_seconds: float | None = None) -> None:
        if self.config.motion:
            # dlib's models, before any link: their first load holds the GIL for ~0.8 s,
            # which would stall the link's first frames (issue 14's time to first face).
            await asyncio.get_running_loop().run_in_executor(self._executor, load_models)
        await self.client.connect()
        router_task = asyncio.ensure_future(self.router.run())
        try:
            started = time.monotonic()
            while True:
                receiver = await wait_for_receiver(self.client)
                # One frame per Opus packet: 6x fewer trips through the event loop and the
                # encoder's thread than 20 ms frames.
                audio = (FedAudioTrack(ptime_s=self.audio_frame_ms / 1000)
                         if self.clip.audio is not None else None)
                self.link = SenderLink(self.router, receiver, f"link:{self.client.peer}",
                                       audio_track=audio,
                                       audio_bitrate=self.config.audio_bitrate,
                                       audio_frame_ms=self.audio_frame_ms,
                                       link_shape=self.link_shape,
                                       ice_servers=self.ice_servers)
                try:
                    await self.link.open()
                except (TimeoutError, ConnectionError) as exc:
                    # Refused ("no receiver available") or no answer: a looping sender
                    # stays in the call and offers again.
                    await self.link.close()
                    self.link = None
                    if not self.loop:
                        raise ConnectionError(f"the talkcodec link did not open: {exc}") from exc
                    log.warning("talkcodec link of %s did not open (%s); offering again",
                                self.client.peer, exc or type(exc).__name__)
                    await asyncio.sleep(2.0)
                    continue
                left = None if max_seconds is None else max_seconds - (time.monotonic() - started)
                lost = await self._stream(self.link, audio, left)
                if not (lost and self.loop):
                    return
                # A looping sender (the demo's sample clip) stays in the call: a new link.
                log.warning("talkcodec link of %s ended (%s); opening a new one",
                            self.client.peer, self.link.pc.connectionState)
                self.links_lost += 1
                await self.link.close()
                self.link = None
                await asyncio.sleep(1.0)
        finally:
            if self.link is not None:
                await close_peer_connection(self.link.pc)
            await self.client.close()
            router_task.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _stream(self, link: SenderLink, audio: FedAudioTrack | None,
                      max_seconds: float | None) -> bool:
        """Stream until the clip ends (unless looping) or ``max_seconds``: False; or until
        the link drops: True."""
        sender = Sender(self.config)
        clip = self.clip
        per_frame = AUDIO_RATE // CANVAS_FPS
        # The encoder (identity frame, face landmarks for the motion code, 8x8 codec) runs
        # on its own thread, off the event loop that carries every call's media: on the
        # loop it took 37 % of a loaded demo's loop time (docs/CALL.md, Long calls).
        encode = self._executor.submit
        epoch = time.time() * 1000
        link.set_epoch(epoch)
        link.on_intra_request = lambda: force_intra(sender)
        # CONFIG at once and the 8x8 stream from the first frame (the receiver shows the
        # voice face); the identity frame, coded on a thread of its own, follows.
        link.send(await asyncio.wrap_future(encode(sender.start, None, 0)))
        loop = asyncio.get_running_loop()
        identity: asyncio.Future | None = loop.run_in_executor(
            None, sender.prepare_identity, clip.frames[0], 0)
        k = 0
        while link.connected:
            if identity is not None and identity.done():
                link.send(await asyncio.wrap_future(encode(sender.identity_packets,
                                                           identity.result())))
                identity = None
            i = k % clip.n_frames
            if k and i == 0 and not self.loop:
                return False
            ts = int(round(k * FRAME_MS))
            if max_seconds is not None and ts > max_seconds * 1000:
                return False
            delay = (epoch + ts) / 1000 - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if audio is not None and clip.audio is not None and k:
                # The previous frame's 40 ms of speech, now that it is all "captured" (its
                # frames then leave the track when their last sample is due).
                j = (k - 1) % clip.n_frames
                audio.feed(clip.audio[j * per_frame : (j + 1) * per_frame])
            if delay < -MAX_BEHIND_S:
                # Real time: a loaded CPU skips canvas frames (the speech goes on) rather
                # than falling further behind.
                self.frames_skipped += 1
                k += 1
                continue
            link.send(await asyncio.wrap_future(encode(sender.push_canvas_frame,
                                                       clip.frames[i], ts)))
            self.frames_sent += 1
            k += 1
        return not link.connected


async def _latest_frame(track: MediaStreamTrack) -> Any:  # an av.VideoFrame
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
        self.config = config or SenderConfig.live()
        self.ice_servers = ice_servers
        self.audio_frame_ms = audio_frame_ms
        self.router = SessionRouter(client)
        self.router.on_offer = self._on_offer
        self.relay = MediaRelay()
        self.links: dict[str, SenderLink] = {}
        self.encoders: dict[str, LiveEncoder] = {}
        self.links_lost = 0  # talkcodec links that dropped and were opened again

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
        """One browser camera, for as long as its connection lives: the talkcodec link is
        opened at the first face, and opened again (new identity frame) when it drops.
        Every end is logged; the page is told (``bye``) and reconnects by itself."""
        for _ in range(200):
            if pc.connectionState == "connected" and "video" in tracks:
                break
            await asyncio.sleep(0.05)
        video = tracks.get("video")
        reason = f"no video track (connection {pc.connectionState})"
        link: SenderLink | None = None
        audio: MediaStreamTrack | None = None
        try:
            if video is None:
                return
            encoder = LiveEncoder(self.config)
            loop = asyncio.get_running_loop()
            retry_at = 0.0
            reason = "closed"
            while pc.connectionState not in ("closed", "failed"):
                frame = await _latest_frame(video)
                rgb = frame.to_ndarray(format="rgb24")
                now = time.time() * 1000
                packets = await loop.run_in_executor(None, encoder.push, rgb, now)
                if link is not None and link.pc.connectionState in ("closed", "failed"):
                    log.warning("talkcodec link of %s ended (%s); opening a new one", viewer,
                                link.pc.connectionState)
                    await self._close_link(viewer, link, audio)
                    link = audio = None
                    self.links_lost += 1
                    encoder = LiveEncoder(self.config)  # the new link starts on an identity
                    continue
                if link is None and encoder.started and time.monotonic() >= retry_at:
                    audio = self.relay.subscribe(tracks["audio"]) if "audio" in tracks else None
                    link = SenderLink(self.router, await wait_for_receiver(self.client),
                                      f"link:{viewer}", audio_track=audio,
                                      audio_bitrate=self.config.audio_bitrate,
                                      audio_frame_ms=self.audio_frame_ms,
                                      ice_servers=self.ice_servers)
                    link.on_intra_request = encoder.request_intra
                    self.links[viewer] = link
                    self.encoders[viewer] = encoder
                    try:
                        await link.open()
                    except (TimeoutError, ConnectionError) as exc:
                        log.warning("talkcodec link of %s did not open (%s); retrying", viewer,
                                    exc or type(exc).__name__)
                        await self._close_link(viewer, link, audio)
                        link = audio = None
                        encoder = LiveEncoder(self.config)
                        retry_at = time.monotonic() + 2.0
                        continue
                    assert encoder.epoch_ms is not None
                    link.set_epoch(encoder.epoch_ms)
                    log.info("talkcodec link of %s open", viewer)
                if link is not None:
                    link.send(packets)
            reason = f"connection {pc.connectionState}"
        except MediaStreamError:
            reason = f"its video track ended (connection {pc.connectionState})"
        except Exception as exc:  # noqa: BLE001 - the camera went away: end this uplink only
            reason = f"{type(exc).__name__}: {exc}"
            log.debug("camera of %s", viewer, exc_info=True)
        finally:
            log.warning("camera of %s ended: %s", viewer, reason)
            if link is not None:
                await self._close_link(viewer, link, audio)
            # Tell the page (unless it already offered a new camera session).
            key = (viewer, f"camera:{viewer}")
            if self.router.pcs.get(key) is pc:
                await self.router.close_session(*key)

    async def _close_link(self, viewer: str, link: SenderLink,
                          audio: MediaStreamTrack | None) -> None:
        if self.links.get(viewer) is link:
            self.links.pop(viewer, None)
            self.encoders.pop(viewer, None)
        if audio is not None:
            audio.stop()  # its relay stops queueing the browser's audio for it
        await link.close()


class DeviceSender:
    """A local camera device (v4l2 through PyAV) -> the talkcodec link (video only)."""

    def __init__(self, client: SignalClient, device: str, *, config: SenderConfig | None = None,
                 ice_servers: list | None = None) -> None:
        if not Path(device).exists():
            raise InputError(f"{device}: no such camera device")
        self.client, self.device = client, device
        self.config = config or SenderConfig.live()
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
