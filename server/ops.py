"""The operations port: ``/livez``, ``/readyz`` and ``/metrics`` (Prometheus text format) on
an address of its own, apart from the public page and ``/ws``.

Room counts and load are not for anyone who can open the page (``/healthz`` on the public
port says only ``ok``), so they live on this port, which a Kubernetes Service keeps inside
the cluster (``deploy/``). It is a small threaded HTTP server from the standard library:
it answers even while the event loop is busy, and never takes SIGTERM from the process
(uvicorn's own server would, and the receiver's drain needs it).

- ``/livez``: 200 while the event loop beats (``beat`` runs on it every second), 503 once
  it has not for ``stall_s``: a wedged loop is restarted by the liveness probe.
- ``/readyz``: 200 when ``ready()`` says so, else 503 with the reason (the receiver worker:
  models loaded, a test frame rendered, joined to signalling, not draining).
- ``/metrics``: the values ``snapshot()`` returned at the last beat, taken on the event loop
  so no other thread walks the rooms or links while they change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BEAT_S = 1.0


@dataclass(frozen=True)
class Metric:
    """One exported metric: ``name`` (``_total`` is added to a counter's samples), kind
    ``gauge`` or ``counter``, its help text and label names."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()


# A snapshot: metric name -> {label values: value}; () for a metric without labels.
Snapshot = dict[str, dict[tuple[str, ...], float]]


class SnapshotCollector:
    """A prometheus_client collector that exports the last snapshot as it was taken."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics
        self.values: Snapshot = {}

    def collect(self) -> Any:
        values = self.values  # replaced whole on the loop, never changed in place
        for m in self.metrics:
            family: Any = (CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily)(
                m.name, m.help, labels=list(m.labels))
            for labels, value in sorted(values.get(m.name, {}).items()):
                family.add_metric(list(labels), value)
            yield family


class OpsServer:
    """Serves ``/livez``, ``/readyz``, ``/metrics`` on ``host:port`` from a thread."""

    def __init__(self, metrics: list[Metric], snapshot: Callable[[], Snapshot],
                 ready: Callable[[], tuple[bool, str]], host: str = "0.0.0.0", port: int = 0,
                 stall_s: float = 10.0) -> None:
        self.snapshot, self.ready, self.stall_s = snapshot, ready, stall_s
        self.collector = SnapshotCollector(metrics)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.last_beat = time.monotonic()
        self._ready: tuple[bool, str] = (False, "starting")
        ops = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                path = self.path.split("?", 1)[0]
                if path == "/livez":
                    stalled = time.monotonic() - ops.last_beat
                    ok = stalled < ops.stall_s
                    self._reply(200 if ok else 503, "ok\n" if ok else
                                f"event loop stalled for {stalled:.0f} s\n")
                elif path == "/readyz":
                    ok, why = ops._ready
                    self._reply(200 if ok else 503, "ready\n" if ok else f"not ready: {why}\n")
                elif path == "/metrics":
                    self._reply(200, generate_latest(ops.registry).decode(), CONTENT_TYPE)
                else:
                    self._reply(404, "not found\n")

            def _reply(self, status: int, text: str, kind: str = "text/plain") -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # probes every few seconds: no access log

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="ops-http",
                                        daemon=True)
        self._beat_task: asyncio.Task | None = None

    def beat_once(self) -> None:
        """Take the snapshot and readiness now (on the event loop)."""
        try:
            self.collector.values = self.snapshot()
            self._ready = self.ready()
        except Exception as exc:  # noqa: BLE001 - a broken metric must not kill the probe
            log.warning("ops: snapshot failed: %s: %.200s", type(exc).__name__, exc)
            self._ready = (False, f"snapshot failed: {type(exc).__name__}")
        self.last_beat = time.monotonic()

    async def _beat(self) -> None:
        while True:
            self.beat_once()
            await asyncio.sleep(BEAT_S)

    def start(self) -> OpsServer:
        """Serve from a thread and beat on the running event loop."""
        self._thread.start()
        self._beat_task = asyncio.ensure_future(self._beat())
        log.info("ops: /livez /readyz /metrics on port %d", self.port)
        return self

    async def stop(self) -> None:
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
        await asyncio.get_running_loop().run_in_executor(None, self.httpd.shutdown)
        self.httpd.server_close()


# ---- what each role exports -----------------------------------------------------------
SIGNALLING_METRICS = [
    Metric("talkcodec_signalling_rooms", "gauge", "Rooms with at least one peer."),
    Metric("talkcodec_signalling_peers", "gauge",
           "Joined peers by role (viewer: a page; sender; agent: serves browser cameras; "
           "receiver: a worker).", ("role",)),
    Metric("talkcodec_signalling_sockets", "gauge", "Open signalling WebSockets."),
    Metric("talkcodec_signalling_refused_sockets", "counter",
           "WebSockets refused for too many open from one address."),
    Metric("talkcodec_signalling_pool_receivers", "gauge",
           "Receivers registered in the pool: healthy (beating, not draining) and draining.",
           ("state",)),
    Metric("talkcodec_signalling_placed_links", "gauge", "Links placed on pool receivers."),
    Metric("talkcodec_signalling_placement_failures", "counter",
           "Links refused with 'no receiver available' (no healthy receiver with room)."),
]

RECEIVER_METRICS = [
    Metric("talkcodec_receiver_links", "gauge",
           "Active talkcodec links (streams) on this worker: the autoscaling metric."),
    Metric("talkcodec_receiver_viewers", "gauge", "Viewer streams sent, over all links."),
    Metric("talkcodec_receiver_render_fps", "gauge", "Frames rendered per second, all links."),
    Metric("talkcodec_receiver_render_ms", "gauge",
           "Render time per frame, mean over the links (last batch of each)."),
    Metric("talkcodec_receiver_frames", "counter", "Frames rendered since start."),
    Metric("talkcodec_receiver_fallbacks", "gauge",
           "Links whose receiver failed and now run the fallback baseline."),
    Metric("talkcodec_receiver_draining", "gauge", "1 while draining (after SIGTERM)."),
    Metric("talkcodec_receiver_link_kbps", "gauge",
           "Received talkcodec payload, kbit/s over the last 4 s, summed over the links: "
           "the 8x8 packets, the motion code inside them, and the speech.", ("stream",)),
    Metric("talkcodec_receiver_lowres_dropped", "counter",
           "8x8 frames lost on the way (sequence gaps), undecodable (after a gap, before "
           "the next intra frame) or corrupt, since start.", ("why",)),
    Metric("talkcodec_receiver_frames_skipped", "counter",
           "25 fps output frames never rendered (an outage, or the live clock jumping ahead "
           "of a slow CPU), since start."),
]
