"""Signalling and receivers beyond one process (issue 15), as real processes: a real Redis,
two signalling processes (``talkcodec serve --role signalling --redis-url``) and three
receiver workers (``--role receiver`` given both signalling URLs); in this process six
looping file senders in three rooms, each joined through one signalling process with the
other as its fallback, and a headless viewer.

- The 6 links are spread over the 3 receivers by load: 2 each.
- Killing (SIGKILL) the receiver that serves one of the viewer's links moves its links to
  the others, and the viewer's picture of that link returns within 5 s.
- Killing the signalling process the viewer and half the senders joined through: they
  rejoin through the other one, the room survives (its members, in Redis) and the picture
  keeps flowing; a new viewer joining through the survivor gets a picture.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from server.placement import VIRTUAL_PEER
from tests._call_media import CALL_CLIP
from tests._redis import REDIS, free_port, start_redis, wait_port

pytestmark = [
    pytest.mark.skipif(REDIS is None, reason="redis-server not installed "
                                             "(scripts/install_redis.sh)"),
    pytest.mark.skipif(not CALL_CLIP.exists(), reason="no call clip in ../shared/data"),
]

REPO = Path(__file__).resolve().parent.parent
SECRET = "multiprocess-test-secret"
ROOMS = ("room-0", "room-1", "room-2")
PREFIX = "talkcodec:"
BACK_S = 5.0  # the bar: the picture returns within this after a receiver dies


def _spawn(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "codec.cli", *args], cwd=REPO, env=env,
                            stdout=out, stderr=subprocess.STDOUT)


def _frames_of(viewer: Any, sender: str, since_ms: float) -> int:
    return sum(1 for key, rec in viewer.views.items() if f"{sender}/" in key
               for t, _ in rec.frames if t > since_ms)


async def _wait(cond: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.1)
    return bool(cond())


def _loads(r: Any) -> dict[str, int]:
    """Links per live receiver, from Redis (the pool's registry)."""
    return {rid: int(r.scard(f"{PREFIX}rxlinks:{rid}"))
            for rid in r.hkeys(f"{PREFIX}receivers")}


def _placed(r: Any, room: str) -> dict[str, str]:
    return dict(r.hgetall(f"{PREFIX}placed:{room}"))


@pytest.fixture()
def cluster(tmp_path: Path):  # noqa: ANN201
    """Redis, two signalling processes and three receivers: (redis client, ws URLs,
    receiver processes by id, signalling processes, tmp folder)."""
    import redis

    rport, ports = free_port(), [free_port(), free_port()]
    procs: list[subprocess.Popen] = [start_redis(tmp_path, rport)]
    url = f"redis://127.0.0.1:{rport}/0"
    env = {**os.environ, "TALKCODEC_SECRET": SECRET, "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1", "TALKCODEC_DEVICE": "cpu"}
    signalling = []
    for i, port in enumerate(ports):
        signalling.append(_spawn(["serve", "--role", "signalling", "--redis-url", url,
                                  "--port", str(port), "--log-level", "info"],
                                 tmp_path / f"signalling-{i}.log", env))
    procs += signalling
    urls = [f"ws://127.0.0.1:{p}/ws" for p in ports]
    receivers = {}
    try:
        for i, port in enumerate(ports):
            assert wait_port(port, 60, signalling[i]), (tmp_path / f"signalling-{i}.log").read_text()
        for i in range(3):
            rid = f"rx-{i}"
            receivers[rid] = _spawn(["serve", "--role", "receiver", "--signal-url",
                                     ",".join(urls[i % 2:] + urls[:i % 2]), "--receiver",
                                     "align", "--capacity", "3", "--receiver-id", rid,
                                     "--loopback", "--log-level", "info"],
                                    tmp_path / f"{rid}.log", env)
        procs += receivers.values()
        r = redis.Redis.from_url(url, decode_responses=True)
        deadline = time.monotonic() + 120
        while r.hlen(f"{PREFIX}receivers") < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.hlen(f"{PREFIX}receivers") == 3, "the receivers did not register"
        yield r, urls, receivers, signalling, tmp_path
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_six_calls_spread_survive_a_receiver_and_a_signalling_process(cluster) -> None:  # noqa: ANN001
    r, urls, receivers, signalling, tmp = cluster

    async def main() -> dict:
        from codec.sender.canvas import load_face_clip
        from codec.sender.sender import SenderConfig
        from server.aiortc_patches import enable_loopback_candidates
        from server.probe_viewer import ProbeViewer
        from server.sender_agent import FileSender
        from server.signal_client import SignalClient
        from server.tokens import make_room_token

        enable_loopback_candidates()
        clip = await asyncio.get_running_loop().run_in_executor(
            None, lambda: load_face_clip(CALL_CLIP, max_seconds=4.0))
        secret = SECRET.encode()
        # The motion code off: six senders' landmarks would not fit this CPU beside the rest.
        config = dataclasses.replace(SenderConfig.live(), motion=False)
        tokens = {room: make_room_token(secret, room) for room in ROOMS}

        def client(i: int, room: str, peer: str, role: str) -> SignalClient:
            order = urls[i % 2:] + urls[:i % 2]  # odd ones through signalling 1
            return SignalClient(order, room, tokens[room], peer, role, peer, reconnect_s=60)

        viewer = ProbeViewer(client(0, "room-0", "viewer-0", "viewer"))
        tasks = [asyncio.ensure_future(viewer.run())]
        senders = {}
        for i in range(6):
            name = f"sender-{i}"
            senders[name] = FileSender(client(i, ROOMS[i // 2], name, "sender"), clip,
                                       loop=True, config=config)
            tasks.append(asyncio.ensure_future(senders[name].run(max_seconds=120)))
            await asyncio.sleep(1.0)  # one placement at a time: spread by load
        out: dict[str, Any] = {}
        late = None
        try:
            assert await _wait(lambda: sum(_loads(r).values()) == 6, 60), (
                _loads(r), [t.exception() for t in tasks if t.done() and not t.cancelled()])
            out["loads"] = sorted(_loads(r).values())
            assert await _wait(lambda: all(_frames_of(viewer, s, 0) > 10
                                           for s in ("sender-0", "sender-1")), 60), \
                {k: len(v.frames) for k, v in viewer.views.items()}
            # A receiver dies: the one serving sender-0's link.
            where = _placed(r, "room-0")["sender-0/link:sender-0"]
            receivers[where].send_signal(signal.SIGKILL)
            gone = time.time() * 1000
            back = await _wait(lambda: _frames_of(viewer, "sender-0", gone + 200) > 5, 10)
            out["receiver_back_s"] = (time.time() * 1000 - gone) / 1000 if back else None
            # (15 s was not always enough on an overloaded box: a re-offer timed out once.)
            await _wait(lambda: sum(_loads(r).values()) == 6 and where not in _loads(r), 30)
            out["killed"], out["loads_after"] = where, _loads(r)
            # A signalling process dies: the one the viewer is on (through the first URL of
            # its list, or the other one when that refused it, as under a loaded CI run).
            clients = {"viewer-0": viewer.client,
                       **{name: sender.client for name, sender in senders.items()}}
            victim = urls.index(viewer.client.url)
            on_victim = sorted(n for n, c in clients.items() if c.url == urls[victim])
            out["on_killed"] = on_victim
            signalling[victim].send_signal(signal.SIGKILL)
            gone = time.time() * 1000
            # (20 s was not always enough under a loaded CI run: the rejoin retries back off.)
            out["rejoined"] = await _wait(
                lambda: all(clients[n].reconnects >= 1 for n in on_victim), 45)
            out["rejoined_s"] = round(time.time() - gone / 1000, 1)
            out["reconnects"] = {n: c.reconnects for n, c in clients.items()}
            out["flowing"] = await _wait(
                lambda: all(_frames_of(viewer, s, gone + 1000) > 10
                            for s in ("sender-0", "sender-1")), 15)
            out["flowing_s"] = round(time.time() - gone / 1000, 1)
            out["members"] = sorted(p["peer"] for p in viewer.client.peers.values())
            # A new viewer through the survivor sees the room and gets its picture.
            late = ProbeViewer(SignalClient([urls[1 - victim]], "room-0", tokens["room-0"],
                                            "viewer-9", "viewer"))
            tasks.append(asyncio.ensure_future(late.run()))
            out["late_picture"] = await _wait(
                lambda: all(_frames_of(late, s, 0) > 5 for s in ("sender-0", "sender-1")), 20)
            out["late_members"] = sorted(late.client.peers)
            return out
        finally:
            for t in tasks:
                t.cancel()
            await viewer.close()
            if late is not None:
                await late.close()
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        out = asyncio.run(asyncio.wait_for(main(), 300))
    except BaseException:
        for log in sorted(tmp.glob("*.log")):
            print(f"---- {log.name}\n{log.read_text()[-3000:]}")
        raise
    print(out)
    assert out["loads"] == [2, 2, 2], out
    assert out["receiver_back_s"] is not None and out["receiver_back_s"] < BACK_S + 0.5, out
    assert out["killed"] not in out["loads_after"], out
    assert sum(out["loads_after"].values()) == 6, out
    assert out["rejoined"], out
    assert out["flowing"], out
    assert set(out["members"]) - {VIRTUAL_PEER} == {"sender-0", "sender-1"}, out
    assert out["late_picture"] and {"sender-0", "sender-1", "viewer-0"} <= set(
        out["late_members"]), out
