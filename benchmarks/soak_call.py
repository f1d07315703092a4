"""Soak: a browser call that runs for minutes to hours, with its memory and frame figures.

A local call (signalling + receiver worker + sender agent, ``server.local_call``) and
headless Chromium with a ../shared/data clip as its fake camera and microphone (looped by
Chromium): the camera goes to the sender agent, the talkcodec link to the worker, the
reconstruction back to the page. Optionally the demo's Python sender streams the sample
clip too (``--clip-sender``: two links, as in ``talkcodec demo``). Every ``--interval``
seconds one line: memory (RSS) of the call process and of the browser, and per link the
frames the page showed in the interval, the 8x8 frames, the link's audio and wire kbit/s,
and how often the page's camera link ended and reconnected.

    python -m benchmarks.soak_call --minutes 60                 # the 1-hour soak
    python -m benchmarks.soak_call --minutes 10 --receiver bicubic --interval 30

Exit status 1 when a link showed no new frame for a whole interval.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.exit("run it from the repository root as: python -m benchmarks.soak_call ...")

REPO = Path(__file__).resolve().parents[1]

from tests._browser_call import (  # noqa: E402
    CHROMIUM,
    CallThread,
    browser_args,
    process_rss_mb,
    start_clip_sender,
    tree_pss_mb,
    wait_for,
)
from tests._call_media import CALL_CLIP, write_wav, write_y4m  # noqa: E402


def _page_figures(page) -> dict:  # noqa: ANN001
    return page.evaluate("""() => ({
        camera: window.talkcodec.camera, cameraEnds: window.talkcodec.cameraEnds || 0,
        selfFrames: window.talkcodec.selfFrames || 0,
        tiles: window.talkcodec.tiles })""")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=60.0, help="seconds between lines")
    ap.add_argument("--receiver", default="", help="receiver name (default: best available)")
    ap.add_argument("--camera-seconds", type=float, default=20.0,
                    help="length of the fake camera's clip (Chromium loops it)")
    ap.add_argument("--clip-sender", action="store_true",
                    help="also stream the sample clip with the Python sender (two links)")
    ap.add_argument("--verbose", action="store_true", help="log aiortc/aioice too")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if not args.verbose:
        for name in ("aioice", "aiortc", "uvicorn", "uvicorn.access", "websockets"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if not CALL_CLIP.exists():
        sys.exit(f"{CALL_CLIP} not found (../shared/data)")
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="soak_call_"))
    y4m = write_y4m(CALL_CLIP, tmp / "camera.y4m", seconds=args.camera_seconds)
    wav = write_wav(CALL_CLIP, tmp / "camera.wav", seconds=args.camera_seconds)
    call = CallThread(receiver=args.receiver)
    sender_task = None
    sender_box: list = []
    lag = LoopLag()
    lag_task = call.run(_start_lag(lag))
    print(f"# soak_call: {args.minutes:g} min, receiver '{call.call.worker.receiver_name}', "
          f"camera clip {args.camera_seconds:g} s looped, clip sender {args.clip_sender}; "
          f"{platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    failed = False
    try:
        if args.clip_sender:
            sender, sender_task = start_clip_sender(call)
            sender_box.append(sender)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=browser_args(y4m, wav))
            page = browser.new_page(viewport={"width": 1100, "height": 620})
            page.goto(call.call.page_url("soak"))
            wait_for(page, "window.talkcodec && window.talkcodec.signalling === 'joined'", 30)
            n_links = 2 if args.clip_sender else 1
            wait_for(page, "Object.values(window.talkcodec.tiles).filter(t => t.frames > 25)"
                           f".length >= {n_links}", 120)
            t0 = time.monotonic()
            last = _page_figures(page)
            sent_last = call.run(_sent_bytes(call, sender_box))
            print("t_s  rss_call_MB  pss_browser_MB  camera(ends)  self_fps  "
                  "loop_lag_ms(median max)  "
                  "per link: label fps 8x8/s audio_kbps wire_kbps", flush=True)
            k = 0
            while time.monotonic() - t0 < args.minutes * 60:
                k += 1
                time.sleep(max(0.0, t0 + k * args.interval - time.monotonic()))
                now = _page_figures(page)
                rss_call = process_rss_mb()
                pss_browser = tree_pss_mb(os.getpid()) - process_rss_mb(field="Pss")
                sent_now = call.run(_sent_bytes(call, sender_box))
                cells = []
                for session, fig in sorted(now["tiles"].items()):
                    prev = last["tiles"].get(session, {"frames": 0, "lowres": 0})
                    fps = (fig["frames"] - prev["frames"]) / args.interval
                    lowres = (fig["lowres"] - prev["lowres"]) / args.interval
                    if fps <= 0:
                        failed = True
                    cells.append(f"{fig['label'] or session}: {fps:.1f} {lowres:.1f} "
                                 f"{fig['audioKbps']:.2f} {fig['transportKbps']:.2f}")
                for name, (audio, wire, late) in sorted(sent_now.items()):
                    a0, w0, l0 = sent_last.get(name, (audio, wire, late))
                    if audio >= a0 and wire >= w0:  # not a new link
                        cells.append(f"sent by {name}: audio {(audio - a0) * 8e-3 / args.interval:.2f}"
                                     f" wire {(wire - w0) * 8e-3 / args.interval:.2f}"
                                     f" late-dropped {late - l0}")
                sent_last = sent_now
                if len(now["tiles"]) < n_links:
                    failed = True
                lag_median, lag_max = lag.take()
                self_fps = (now["selfFrames"] - last["selfFrames"]) / args.interval
                print(f"{time.monotonic() - t0:5.0f} {rss_call:8.0f} {pss_browser:10.0f}  "
                      f"{now['camera']}({now['cameraEnds']})  {self_fps:5.1f}  "
                      f"{lag_median:4.0f} {lag_max:5.0f}  "
                      + " | ".join(cells), flush=True)
                last = now
            browser.close()
    finally:
        if sender_task is not None:
            call.loop.call_soon_threadsafe(sender_task.cancel)
        call.loop.call_soon_threadsafe(lag_task.cancel)
        call.stop()
    print("# result: " + ("a link stopped" if failed else "frames flowed on every link"),
          flush=True)
    return 1 if failed else 0


class LoopLag:
    """How late the call's event loop runs a 20 ms timer: everything of the call (signalling,
    ICE consent, RTP/SCTP, the agent, the worker) waits this long when the loop is busy
    or another thread holds the GIL."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.02)
            self.samples.append((loop.time() - t - 0.02) * 1000)

    def take(self) -> tuple[float, float]:
        """(median, max) lag in ms since the last call."""
        got, self.samples = sorted(self.samples), []
        return (got[len(got) // 2], got[-1]) if got else (0.0, 0.0)


async def _start_lag(lag: LoopLag):  # noqa: ANN202
    import asyncio

    return asyncio.ensure_future(lag.run())


async def _sent_bytes(call: CallThread, senders: list) -> dict[str, tuple[int, int, int]]:
    """(Opus payload bytes, wire bytes, late speech frames dropped) sent so far by each link's sender end (the agent's
    links and the clip sender's), as its own transport counts them."""
    links = {name: link for name, link in (call.call.agent.links.items() if call.call.agent else ())}
    for sender in senders:
        if sender.link is not None:
            links["clip"] = sender.link
    out = {}
    for name, link in links.items():
        stats = await link.stats()
        out[name] = (stats["audio_rtp_payload"], stats["transport_total"],
                     stats["late_audio_frames"])
    return out


if __name__ == "__main__":
    sys.exit(main())
