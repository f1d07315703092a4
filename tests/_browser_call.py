"""A local call driven by headless Chromium (Playwright): the helpers the browser tests and
``benchmarks/soak_call.py`` share. The call (signalling + receiver worker + sender agent,
``server.local_call``) runs on its own event loop in a thread; the browser gets a data clip
as its fake camera and microphone."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


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


def need_browser() -> None:
    """Skip the calling test where the shared clip, Debian's chromium or Playwright is missing."""
    import pytest

    from tests._call_media import CALL_CLIP

    if not CALL_CLIP.exists():
        pytest.skip("shared data not present")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (scripts/install_browser.sh)")
    pytest.importorskip("playwright.sync_api")


def browser_args(y4m: Path, wav: Path) -> list[str]:
    """Chromium flags: the clip as fake camera + microphone (Chromium loops both files)."""
    args = [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
        "--disable-gpu", "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


def wait_for(page, predicate: str, timeout_s: float) -> None:  # noqa: ANN001
    """Poll a JS expression until it is true. Evaluated through Playwright's
    ``page.evaluate`` (DevTools), not ``wait_for_function``: the page's
    Content-Security-Policy forbids the string evaluation that one needs."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s:g} s: {predicate}")
        page.wait_for_timeout(500)


def process_rss_mb(pid: int | None = None, field: str = "VmRSS") -> float:
    """Resident memory of one process (this one by default), MB. ``field="Pss"``: its
    proportional share (shared pages divided among the processes that map them)."""
    name = "smaps_rollup" if field == "Pss" else "status"
    for line in Path(f"/proc/{pid or os.getpid()}/{name}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_pss_mb(root_pid: int) -> float:
    """Proportional memory (PSS) of a process and all its descendants (e.g. a browser's
    many processes, whose shared pages a sum of RSS would count many times), MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            total += process_rss_mb(pid, "Pss")
        except OSError:
            continue
        todo += children.get(pid, [])
    return total


async def _clip_sender(call, box: list, seconds: float):  # noqa: ANN001, ANN202 - asyncio.Task
    from codec.data import data_dir
    from server.cli import DEMO_CLIP, _load_clip
    from server.sender_agent import FileSender

    clip = await asyncio.get_running_loop().run_in_executor(
        None, _load_clip, str(data_dir() / DEMO_CLIP), seconds)
    sender = FileSender(call.call.client("sender", "sample clip"), clip, loop=True)
    box.append(sender)
    return asyncio.ensure_future(sender.run())


def start_clip_sender(call: CallThread, seconds: float = 20.0):  # noqa: ANN201
    """The demo's Python sender (the sample clip, looped) in ``call``: (sender, task)."""
    box: list = []
    task = call.run(_clip_sender(call, box, seconds), timeout=120)
    return box[0], task
