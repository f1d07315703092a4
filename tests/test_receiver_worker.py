"""The receiver worker in a Python-only call on loopback: a viewer that joins after the
sender still gets the stream, hostile datagrams on the link are counted and ignored, the
8x8 frames and figures reach the viewer, and a receiver that raises is replaced by the
baseline instead of ending the call; the viewer's audio is delayed to match the video
(lip sync)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from codec.receiver.bicubic import BicubicReceiver
from codec.receiver.registry import register_receiver
from server.local_call import start_local_call
from server.probe_viewer import ProbeViewer
from server.sender_agent import FileSender
from tests._call_media import CALL_CLIP


class BrokenReceiver(BicubicReceiver):
    """Fails on its 40th frame, like a model that breaks mid-call: past the worker's
    start-up test frame (one second, 25 frames; server/receiver_worker.render_test_frame)."""

    name = "broken-test"

    def render(self, t_ms: float):  # noqa: ANN201
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls >= 40:
            raise ValueError("model input missing")
        return super().render(t_ms)


register_receiver("broken-test", "tests.test_receiver_worker:BrokenReceiver")


async def _late_viewer_call(receiver: str) -> dict:
    from codec.sender.canvas import load_face_clip

    clip = await asyncio.get_running_loop().run_in_executor(
        None, lambda: load_face_clip(CALL_CLIP, max_seconds=4.0))
    call = await start_local_call(with_agent=False, receiver=receiver)
    sender = FileSender(call.client("sender", "clip"), clip, loop=True)
    sender_task = asyncio.ensure_future(sender.run(max_seconds=40))
    viewer = ProbeViewer(call.client("viewer", "late"))
    viewer_task = None
    try:
        for _ in range(200):
            if sender.link is not None and sender.link.connected:
                break
            await asyncio.sleep(0.1)
        assert sender.link is not None and sender.link.connected
        await asyncio.sleep(2.0)
        viewer_task = asyncio.ensure_future(viewer.run())  # joins an ongoing call
        hostile = [b"", b"\x00" * 40, b"\xc5\x12" + b"\xff" * 300, bytes(range(256)) * 4]
        for data in hostile:
            sender.link.lowres.send(data)
            sender.link.reliable.send(data or b"\x01")
        await asyncio.sleep(6.0)
        link = next(iter(call.worker.links.values()))
        return {"views": dict(viewer.views), "counters": link.decoder.counters,
                "fallback": link.fallback, "receiver": link.receiver.name}
    finally:
        sender_task.cancel()
        await viewer.close()
        if viewer_task is not None:
            viewer_task.cancel()
        await call.stop()


@pytest.mark.parametrize("receiver", ["bicubic", "broken-test"])
def test_late_viewer_and_hostile_datagrams(receiver: str) -> None:
    if not CALL_CLIP.exists():
        pytest.skip("shared data not present")
    out = asyncio.run(asyncio.wait_for(_late_viewer_call(receiver), timeout=90))
    assert out["fallback"] == (receiver == "broken-test"), out["receiver"]
    assert len(out["views"]) == 1
    record = next(iter(out["views"].values()))
    assert len(record.frames) > 60, len(record.frames)
    stamps = np.array([ts for _, ts in record.frames])
    assert np.all(np.diff(stamps) > 0)  # stamps read back in order: frames are the real ones
    assert record.lowres > 10 and record.stats, "8x8 frames / figures did not reach the viewer"
    assert record.stats[-1]["video_kbps"] > 0
    assert out["counters"].corrupt >= 3  # counted, ignored, and the call went on


async def _beep_call(seconds: float) -> dict:
    from codec.sender.canvas import load_face_clip
    from server.probe_viewer import av_offset, beep_clip, probe_call

    clip = await asyncio.get_running_loop().run_in_executor(
        None, lambda: load_face_clip(CALL_CLIP, max_seconds=4.0))
    async with probe_call(beep_clip(clip), receiver="bicubic") as (call, viewer, _):
        for _ in range(600):
            if viewer.views and next(iter(viewer.views.values())).frames:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0 + seconds)  # first sender reports, then the window
        link = next(iter(call.worker.links.values()))
        out = av_offset(next(iter(viewer.views.values())), seconds)
        out["video_delay"] = link.playout.video_delay_ms
        out["audio_delay"] = link.viewer_audio.delay_ms
        return out


def test_viewer_audio_is_delayed_to_match_the_video() -> None:
    """Lip sync: a beep every second on the clip's video; at the viewer each beep's
    latency matches the video's (interpolate mode waits ~200 ms for the next 8x8 frame,
    which the speech does not), within what viewers do not notice (ITU-R BT.1359: sound
    up to 45 ms early or 125 ms late)."""
    if not CALL_CLIP.exists():
        pytest.skip("shared data not present")
    out = asyncio.run(asyncio.wait_for(_beep_call(6.0), timeout=120))
    print(f"\nA/V at the viewer: {out}")
    assert out["av_n"] >= 4, out
    assert -45.0 <= out["av_offset_med"] <= 90.0, out
    # The audio was held back for the video (the speech path alone is ~130 ms; on a quiet
    # box the video's own latency, and so the held-back audio's, is 180-185 ms).
    assert out["audio_lat_med"] > 160.0, out
    # ... by the video's delay, less the Opus delay of the viewer's leg (6.5 ms).
    assert out["audio_delay"] is not None and out["audio_delay"] >= out["video_delay"] - 8, out
