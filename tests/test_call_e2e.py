"""End to end in headless Chromium: a browser with a fake camera (a ../shared/data clip)
joins a call; its camera goes to the sender agent, the talkcodec stream to the receiver
worker, the reconstruction back to the page. Asserts that reconstructed frames arrive and
the link stays within budget: 8x8 video <= 2 kbit/s, with audio <= 16 kbit/s, and all
that the agent's link transport puts on the wire (SRTP + SCTP/DTLS + RTCP) <= 16 kbit/s."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests._call_media import CALL_CLIP, write_wav, write_y4m

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _need_browser() -> None:
    if not CALL_CLIP.exists():
        pytest.skip("shared data not present")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/install_browser.sh)")
    pytest.importorskip("playwright.sync_api")


class CallThread:
    """A local call (signalling + receiver worker + sender agent) on its own event loop."""

    def __init__(self, **kw: object) -> None:
        # Import what the call thread would import lazily, here in the main thread:
        # CPython 3.11 can fail compiling modules in two threads at once under pytest.
        import playwright.sync_api  # noqa: F401

        from codec.receiver.registry import default_receiver_name, receiver_class
        from server import local_call  # noqa: F401

        receiver_class(str(kw.get("receiver") or default_receiver_name()))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        from server.local_call import start_local_call

        self.call = self.run(start_local_call(**kw))

    def run(self, coro, timeout: float = 60):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.run(self.call.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _browser_args(y4m: Path, wav: Path) -> list[str]:
    args = [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
        "--disable-gpu", "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


def _wait_for(page, predicate: str, timeout_s: float) -> None:  # noqa: ANN001
    # As a function, not a string expression: the page's CSP forbids string evaluation.
    page.wait_for_function(f"() => ({predicate})", timeout=timeout_s * 1000, polling=500)


def test_browser_call_reconstructs_within_budget(tmp_path: Path) -> None:
    _need_browser()
    from playwright.sync_api import sync_playwright

    y4m = write_y4m(CALL_CLIP, tmp_path / "camera.y4m")
    wav = write_wav(CALL_CLIP, tmp_path / "camera.wav")
    call = CallThread()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=_browser_args(y4m, wav))
            page = browser.new_page(viewport={"width": 1100, "height": 620})
            page.goto(call.call.page_url("alice"))
            _wait_for(page, "window.talkcodec && window.talkcodec.signalling === 'joined'", 20)
            # Reconstructed frames of alice's own stream come back from the worker.
            _wait_for(page, "Object.values(window.talkcodec.tiles).some(t => t.frames > 25)", 60)
            time.sleep(4.0)  # steady state for the rate figures (4 s windows)
            links = list(call.call.agent.links.values()) if call.call.agent else []
            assert links, "the agent opened no talkcodec link"
            before, t0 = call.run(links[0].stats()), time.monotonic()
            time.sleep(6.0)
            after, t1 = call.run(links[0].stats()), time.monotonic()
            wire = {k: (after[k] - before.get(k, 0)) * 8 / (t1 - t0) / 1000 for k in after}
            audio_pps = (after["audio_packets"] - before["audio_packets"]) / (t1 - t0)
            figures = list(page.evaluate("window.talkcodec.tiles").values())
            assert len(figures) == 1, figures
            fig = figures[0]
            assert fig["frames"] > 100 and fig["fps"] >= 10, fig
            assert fig["lowres"] > 20, fig  # the 8x8 frames are shown too
            assert fig["latencyMs"] is not None and 0 < fig["latencyMs"] < 3000, fig
            assert fig["videoKbps"] is not None and 0.2 < fig["videoKbps"] <= 2.0, fig
            assert fig["audioKbps"] > 1.0, fig  # speech is flowing ...
            assert fig["totalKbps"] <= 16.0, fig  # ... within the total budget
            # On the wire, measured by the agent's own transport (sender side, UDP/IP
            # headers not included), and as received by the worker (the page's figure).
            assert 0 < wire["transport_total"] <= 16.0, wire
            assert 0 < audio_pps < 10, audio_pps  # 120 ms Opus packets: 8.3 a second
            assert 0 < fig["transportKbps"] <= 16.0, fig
            if os.environ.get("TALKCODEC_SCREENSHOT"):
                page.screenshot(path=os.environ["TALKCODEC_SCREENSHOT"])
            print(f"\nbrowser call figures: {fig}")
            print("agent link kbit/s: " + ", ".join(
                f"{k}={v:.2f}" for k, v in sorted(wire.items())
                if k == "transport_total" or k.startswith("wire_") and "pkts" not in k)
                + f"; audio packets/s {audio_pps:.1f}")
            browser.close()
    finally:
        call.stop()


def test_two_browsers_in_one_room_see_each_other(tmp_path: Path) -> None:
    _need_browser()
    from playwright.sync_api import sync_playwright

    y4m = write_y4m(CALL_CLIP, tmp_path / "camera.y4m", size=256, seconds=4.0)
    wav = write_wav(CALL_CLIP, tmp_path / "camera.wav", seconds=4.0)
    call = CallThread(receiver="bicubic")  # two links on two cores: the cheap receiver
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=_browser_args(y4m, wav))
            pages = {}
            for name in ("alice", "bob"):
                pages[name] = browser.new_page()
                pages[name].goto(call.call.page_url(name))
            for name, page in pages.items():
                # Each page shows both people's reconstructions, its own and the other's.
                # (The label comes with the worker's figures, once a second.)
                _wait_for(page, "Object.values(window.talkcodec.tiles)"
                                ".filter(t => t.frames > 10 && t.label).length >= 2", 90)
                labels = sorted(t["label"] for t in page.evaluate("window.talkcodec.tiles").values())
                assert labels == ["alice", "bob"], (name, labels)
            browser.close()
    finally:
        call.stop()
