"""The operations port (issue 15): /livez follows the event loop's beat, /readyz the
worker's readiness (models loaded and a test frame rendered, joined, not draining), and
/metrics exports the snapshot in the Prometheus text format. A draining receiver worker
refuses new links with a "bye" and is not ready."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

from server.ops import RECEIVER_METRICS, SIGNALLING_METRICS, Metric, OpsServer
from server.receiver_worker import ReceiverWorker, WorkerConfig


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ops_endpoints_follow_snapshot_readiness_and_beat() -> None:
    state = {"ready": (False, "starting"), "links": 0.0}
    metrics = [Metric("talkcodec_test_links", "gauge", "Links."),
               Metric("talkcodec_test_frames", "counter", "Frames.", ("role",))]

    def snapshot() -> dict:
        return {"talkcodec_test_links": {(): state["links"]},
                "talkcodec_test_frames": {("viewer",): 7.0}}

    async def scenario() -> list:
        ops = OpsServer(metrics, snapshot, lambda: state["ready"], "127.0.0.1", 0,
                        stall_s=0.5).start()
        await asyncio.sleep(0.05)
        got = [await asyncio.to_thread(_get, ops.port, "/readyz")]
        state["ready"], state["links"] = (True, ""), 3.0
        ops.beat_once()
        got += [await asyncio.to_thread(_get, ops.port, p) for p in ("/readyz", "/metrics",
                                                                     "/livez", "/nope")]
        ops.last_beat = time.monotonic() - 5  # a loop that stopped beating
        got.append(await asyncio.to_thread(_get, ops.port, "/livez"))
        await ops.stop()
        return got

    not_ready, ready, metrics_text, live, missing, stalled = asyncio.run(scenario())
    assert not_ready[0] == 503 and "starting" in not_ready[1]
    assert ready == (200, "ready\n")
    assert metrics_text[0] == 200
    assert "talkcodec_test_links 3.0" in metrics_text[1]
    assert 'talkcodec_test_frames_total{role="viewer"} 7.0' in metrics_text[1]
    assert live[0] == 200 and missing[0] == 404
    assert stalled[0] == 503 and "stalled" in stalled[1]


class _Client:
    """The SignalClient surface the worker uses, recording what it signals."""

    def __init__(self) -> None:
        self.peers: dict = {}
        self.sent: list = []

    async def signal(self, to: str, data: dict) -> None:
        self.sent.append((to, data))


def test_worker_readiness_metrics_and_drain() -> None:
    client = _Client()
    worker = ReceiverWorker(client, WorkerConfig(receiver="align"))  # type: ignore[arg-type]
    assert worker.self_test_ms > 0  # the test frame rendered at start
    assert worker.readiness() == (False, "not joined to signalling")
    worker.joined = True
    assert worker.readiness() == (True, "")
    snap = worker.snapshot()
    assert {m.name for m in RECEIVER_METRICS} == set(snap)
    assert snap["talkcodec_receiver_links"] == {(): 0} and snap["talkcodec_receiver_draining"] == {(): 0.0}

    async def scenario() -> object:
        await worker.drain(0.1)  # no links: returns at once
        return await worker._on_offer("alice", "link:1", {"sdp": "", "type": "offer"})

    assert asyncio.run(scenario()) is None
    assert worker.readiness() == (False, "draining")
    assert worker.snapshot()["talkcodec_receiver_draining"] == {(): 1.0}
    assert client.sent == [("alice", {"session": "link:1", "kind": "bye",
                                      "reason": "receiver draining"})]


def test_signalling_metrics_match_snapshot() -> None:
    from server.signalling import RoomRegistry, SignallingLimits

    snap = RoomRegistry(SignallingLimits()).snapshot()
    assert {m.name for m in SIGNALLING_METRICS} == set(snap)


def test_receiver_link_metrics_count_and_survive_the_link() -> None:
    """Output frames the clock skipped are counted at emission; an ended link's counts stay
    in the worker's totals (counters never go down); the pooled worker sums its rooms'."""
    import types

    import numpy as np

    from codec.types import OutputFrame
    from server.link_decoder import LinkCounters, RateWindow
    from server.receiver_worker import LinkSession

    worker = ReceiverWorker(_Client(), WorkerConfig(receiver="align"))  # type: ignore[arg-type]
    link = types.SimpleNamespace(
        worker=worker, viewers={}, rendered=RateWindow(), frames_out=0, frames_skipped=0,
        render_ms=5.0, fallback=False,
        last_out_ms=None, audio_rate=RateWindow(), key="alice/link:1",
        decoder=types.SimpleNamespace(counters=LinkCounters(lowres_lost=3, corrupt=1),
                                      video_rate=RateWindow(), code_rate=RateWindow()))
    image = np.zeros((256, 256, 3), np.uint8)
    for ts in (0, 40, 80, 400, 440):  # 7 frames missing between 80 and 400 ms
        LinkSession._emit(link, OutputFrame(image, ts))  # type: ignore[arg-type]
    assert link.frames_out == 5 and link.frames_skipped == 7
    link.decoder.video_rate.add(500)
    worker.links[link.key] = link  # type: ignore[assignment]
    snap = worker.snapshot()
    assert snap["talkcodec_receiver_frames_skipped"] == {(): 7}
    assert snap["talkcodec_receiver_lowres_dropped"] == {("lost",): 3, ("undecodable",): 0,
                                                         ("corrupt",): 1}
    assert snap["talkcodec_receiver_link_kbps"][("video",)] > 0

    async def end() -> None:
        link.close = _async_none
        link.viewers = {}
        link.peer, link.session, link.label = "alice", "link:1", "clip"
        link.pc = types.SimpleNamespace(connectionState="closed")
        await worker.drop_link(link)  # type: ignore[arg-type]

    asyncio.run(end())
    after = worker.snapshot()
    assert after["talkcodec_receiver_links"] == {(): 0}
    assert after["talkcodec_receiver_frames_skipped"] == {(): 7}
    assert after["talkcodec_receiver_lowres_dropped"][("lost",)] == 3


async def _async_none() -> None:
    return None
