"""A real call through the receiver pool (issue 15): two pooled workers on one signalling
process, a looping file sender and a headless viewer; the worker serving the link is
stopped mid-call, the link is placed on the other and the picture returns within 5 s."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.aiortc_patches import enable_loopback_candidates
from server.app import create_app, start_http
from server.pool_worker import PooledReceiver
from server.probe_viewer import ProbeViewer
from server.receiver_worker import WorkerConfig
from server.sender_agent import FileSender
from server.signal_client import SignalClient
from server.signalling import SignallingConfig
from server.tokens import make_room_token
from tests._call_media import CALL_CLIP

SECRET = b"pool-call-test-secret"


def _frames_since(viewer: ProbeViewer, since_ms: float) -> int:
    return sum(1 for rec in viewer.views.values() for t, _ in rec.frames if t > since_ms)


async def _wait(cond, timeout_s: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.1)
    return False


async def _pool_signalling() -> tuple:
    """The clip, and a signalling app with the pool on: (clip, app, server, task, ws url)."""
    from codec.sender.canvas import load_face_clip

    enable_loopback_candidates()
    clip = await asyncio.get_running_loop().run_in_executor(
        None, lambda: load_face_clip(CALL_CLIP, max_seconds=4.0))
    app = create_app(SignallingConfig(secret=SECRET, receiver_pool=True))
    server, task, port = await start_http(app)
    return clip, app, server, task, f"ws://127.0.0.1:{port}/ws"


@pytest.mark.skipif(not CALL_CLIP.exists(), reason="no call clip in ../shared/data")
def test_pooled_call_moves_when_its_receiver_goes() -> None:
    async def main() -> dict:
        clip, app, server, task, url = await _pool_signalling()
        pool = app.state.rooms.pool
        workers = [PooledReceiver([url], SECRET, WorkerConfig(receiver="align"),
                                  receiver_id=f"rx-{i}", capacity=4) for i in range(2)]
        tasks = {w.rid: asyncio.ensure_future(w.run()) for w in workers}
        token = make_room_token(SECRET, "room-a")
        viewer = ProbeViewer(SignalClient(url, "room-a", token, "viewer-1", "viewer"))
        viewer_task = asyncio.ensure_future(viewer.run())
        sender = FileSender(SignalClient(url, "room-a", token, "sender-1", "sender", "clip"),
                            clip, loop=True)
        sender_task = asyncio.ensure_future(sender.run(max_seconds=60))
        try:
            assert await _wait(lambda: len(pool.receivers) == 2, 20)
            assert await _wait(lambda: _frames_since(viewer, 0) > 10, 30), "no picture"
            (where,) = set(pool.placements.values())
            # Its /metrics figures, summed over its rooms (issue 15, item 4).
            metrics = next(w for w in workers if w.rid == where).snapshot()
            tasks.pop(where).cancel()  # the worker serving the link goes
            gone = time.time() * 1000
            await _wait(lambda: where not in pool.receivers, 5)
            back = await _wait(lambda: _frames_since(viewer, gone + 200) > 5, 8)
            return {"back": back, "after_s": (time.time() * 1000 - gone) / 1000,
                    "moved_to": set(pool.placements.values()), "was": where,
                    "links_lost": sender.links_lost, "metrics": metrics}
        finally:
            sender_task.cancel()
            await viewer.close()
            viewer_task.cancel()
            for t in tasks.values():
                t.cancel()
            server.should_exit = True
            await task

    out = asyncio.run(asyncio.wait_for(main(), 120))
    print(out)
    assert out["back"], out
    assert out["after_s"] < 5.0 + 0.2 + 1.0, out  # picture back within 5 s (+ polling)
    assert out["moved_to"] and out["was"] not in out["moved_to"], out
    assert out["links_lost"] >= 1, out
    metrics = out["metrics"]
    assert metrics["talkcodec_receiver_links"] == {(): 1}, metrics
    assert metrics["talkcodec_receiver_link_kbps"][("video",)] > 0.5, metrics
    assert set(metrics["talkcodec_receiver_lowres_dropped"]) == {
        ("lost",), ("undecodable",), ("corrupt",)}, metrics


@pytest.mark.skipif(not CALL_CLIP.exists(), reason="no call clip in ../shared/data")
def test_late_viewer_and_a_draining_receiver_moves_its_links() -> None:
    async def main() -> dict:
        clip, app, server, task, url = await _pool_signalling()
        pool = app.state.rooms.pool
        first = PooledReceiver([url], SECRET, WorkerConfig(receiver="align"), receiver_id="rx-a")
        tasks = [asyncio.ensure_future(first.run())]
        token = make_room_token(SECRET, "room-b")
        sender = FileSender(SignalClient(url, "room-b", token, "sender-2", "sender", "clip"),
                            clip, loop=True)
        sender_task = asyncio.ensure_future(sender.run(max_seconds=60))
        viewer = ProbeViewer(SignalClient(url, "room-b", token, "viewer-2", "viewer"))
        viewer_task = None
        try:
            assert await _wait(lambda: sender.link is not None and sender.link.connected, 30)
            viewer_task = asyncio.ensure_future(viewer.run())  # joins an ongoing call
            assert await _wait(lambda: _frames_since(viewer, 0) > 10, 20), "late viewer"
            second = PooledReceiver([url], SECRET, WorkerConfig(receiver="align"),
                                    receiver_id="rx-b")
            tasks.append(asyncio.ensure_future(second.run()))
            assert await _wait(lambda: len(pool.receivers) == 2, 20)
            ready_before = first.readiness()
            await first.drain(0.5)  # SIGTERM with a short grace: its link moves
            drained = time.time() * 1000
            back = await _wait(lambda: _frames_since(viewer, drained + 200) > 5, 8)
            return {"back": back, "ready_before": ready_before,
                    "ready_after": first.readiness(), "on": set(pool.placements.values()),
                    "draining": pool.receivers["rx-a"].draining}
        finally:
            sender_task.cancel()
            await viewer.close()
            if viewer_task is not None:
                viewer_task.cancel()
            for t in tasks:
                t.cancel()
            server.should_exit = True
            await task

    out = asyncio.run(asyncio.wait_for(main(), 120))
    assert out["back"], out
    assert out["ready_before"] == (True, "") and out["ready_after"] == (False, "draining")
    assert out["on"] == {"rx-b"} and out["draining"], out


def test_a_pooled_worker_lets_idle_rooms_go() -> None:
    """One room worker per room served, not per room ever served (a long-lived pool)."""
    async def main() -> tuple:
        pooled = PooledReceiver(["ws://127.0.0.1:9/ws"], SECRET, WorkerConfig(receiver="align"))
        for room in ("r1", "r2"):  # a signal of a new room starts its worker
            pooled._dispatch({"type": "signal", "room": room, "from": "s", "data": {}})
        await asyncio.sleep(0.05)
        busy, busy_task = pooled.rooms["r2"]
        busy.links["s/link:s"] = object()  # type: ignore[assignment]  # r2 has a link
        kept_fresh = await pooled.forget_idle_rooms()  # nothing idle long enough yet
        for room in pooled.room_seen:
            pooled.room_seen[room] -= 60
        gone = await pooled.forget_idle_rooms()
        r1_task = None if "r1" in pooled.rooms else True
        await asyncio.sleep(0.05)
        busy.links.clear()
        gone_later = await pooled.forget_idle_rooms()
        await asyncio.sleep(0.05)
        return kept_fresh, gone, r1_task, gone_later, busy_task.done(), pooled.rooms

    kept_fresh, gone, r1_gone, gone_later, busy_ended, rooms = asyncio.run(main())
    assert kept_fresh == [] and gone == ["r1"] and r1_gone
    assert gone_later == ["r2"] and busy_ended and rooms == {}
