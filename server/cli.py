"""``talkcodec send | serve | demo``: ``add_subcommands`` is registered with the talkcodec
command as the entry point ``call`` of the group ``talkcodec.commands`` (pyproject.toml).

    talkcodec demo [--clip PATH | --no-clip] [--port 8000] [--low-latency] [--receiver NAME]
    talkcodec serve [--role all|signalling|receiver] [--host H] [--port P] [--room R]
                    [--origin https://call.example ...]
    talkcodec send SOURCE|--agent --url http://H:P --room R --token T [--loop] [--name N]

The server secret comes from env TALKCODEC_SECRET (all processes of one deployment share
it) or is generated at start; room tokens are printed, never stored. The page's room token
admits viewers and senders; a sender agent (``send --agent``) needs the media token that
``serve`` prints (the receiver worker makes its own from the secret). Browsers may open
the page from the served host:port (loopback names for a loopback or wildcard bind) and
from each ``--origin`` / env TALKCODEC_ORIGINS (comma-separated). With env
TALKCODEC_OPERATOR_KEY set, signalling serves the rooms API (``POST /api/rooms``,
``server/rooms_api.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from codec.cli import RUNS_RECEIVER, SERVICE
from codec.data import data_dir
from codec.errors import InputError, TalkcodecError
from server.link_audio import DEFAULT_AUDIO_FRAME_MS, OPUS_FRAME_MS, link_audio_frame_ms

REPO = Path(__file__).resolve().parent.parent
DEMO_CLIP = "clips/OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4"


REJOIN_S = 60.0  # a sender's signalling socket that drops rejoins for up to this long


def _ws_url(url: str) -> str:
    url = url.rstrip("/")
    if url.startswith(("ws://", "wss://")):
        return url if url.endswith("/ws") else url + "/ws"
    if url.startswith("http://"):
        return "ws://" + url[len("http://"):] + "/ws"
    if url.startswith("https://"):
        return "wss://" + url[len("https://"):] + "/ws"
    raise TalkcodecError(f"bad server URL {url!r} (http://host:port or ws://host:port/ws)")


ORIGINS_ENV = "TALKCODEC_ORIGINS"
DRAIN_ENV = "TALKCODEC_DRAIN_S"


def _origins(args: argparse.Namespace, port: int) -> frozenset[str]:
    """The browser origins a server accepts: the served host:port, --origin, env."""
    from server.signalling import default_origins

    extra = list(args.origin or [])
    extra += [o for o in os.environ.get(ORIGINS_ENV, "").split(",") if o.strip()]
    return default_origins(args.host, port) | {o.strip().rstrip("/") for o in extra}


def _run(coro: Any) -> int:
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        return 130
    except (ConnectionError, OSError) as exc:
        raise TalkcodecError(f"call failed: {exc}") from None
    return 0


def _load_clip(path: str, max_seconds: float | None) -> Any:
    from codec.sender.canvas import load_face_clip

    return load_face_clip(path, max_seconds=max_seconds)


# ---- demo ----------------------------------------------------------------------------
async def _demo(args: argparse.Namespace) -> None:
    from server.local_call import start_local_call
    from server.sender_agent import FileSender

    clip = None
    if not args.no_clip:
        path = Path(args.clip) if args.clip else data_dir() / DEMO_CLIP
        if not path.exists() and args.clip:
            raise InputError(f"{path}: clip not found")
        if not path.exists():
            # No sample data on this machine: the call still runs for browsers.
            print(f"sample clip {path} not found: browsers only (give --clip PATH to add one)",
                  flush=True)
        else:
            print(f"loading sample clip {path.name} ...", flush=True)
            clip = await asyncio.get_running_loop().run_in_executor(
                None, _load_clip, str(path), args.clip_seconds
            )
    frame_ms = args.audio_frame_ms or link_audio_frame_ms(args.low_latency)
    call = await start_local_call(host=args.host, port=args.port, receiver=args.receiver,
                                  low_latency=args.low_latency, audio_frame_ms=frame_ms,
                                  allowed_origins=_origins(args, args.port))
    print(f"talkcodec demo: receiver '{call.worker.receiver_name}'"
          f"{' (low latency)' if args.low_latency else ''}")
    print(f"open this URL in a browser: {call.page_url()}", flush=True)
    tasks = []
    if clip is not None:
        sender = FileSender(call.client("sender", "sample clip"), clip, loop=True,
                            audio_frame_ms=frame_ms)
        tasks.append(asyncio.ensure_future(sender.run()))
    try:
        await asyncio.Event().wait()
    finally:
        for t in tasks:
            t.cancel()
        await call.stop()


# ---- serve ---------------------------------------------------------------------------
async def _serve(args: argparse.Namespace) -> None:
    from server.aiortc_patches import enable_loopback_candidates
    from server.app import create_app, start_http
    from server.ops import RECEIVER_METRICS, SIGNALLING_METRICS, OpsServer
    from server.pool_worker import PooledReceiver
    from server.receiver_worker import WorkerConfig
    from server.sender_agent import SenderAgent
    from server.signal_client import SignalClient
    from server.signalling import SignallingConfig, SignallingLimits
    from server.tokens import SCOPE_MEDIA, make_room_token, new_secret
    from server.turn import TurnConfig

    secret = new_secret()
    turn = TurnConfig.from_env()
    metrics, snapshots, readiness = [], [], []
    token = make_room_token(secret, args.room)
    media_token = make_room_token(secret, args.room, scope=SCOPE_MEDIA)
    tasks = []
    url = _ws_url(args.signal_url) if args.signal_url else f"ws://127.0.0.1:{args.port}/ws"
    if args.role in ("all", "signalling"):
        redis_url = args.redis_url or os.environ.get("TALKCODEC_REDIS_URL", "")
        config = SignallingConfig(
            secret=secret, allowed_origins=_origins(args, args.port),
            limits=SignallingLimits(max_sockets_per_ip=args.max_connections_per_ip),
            receiver_pool=True, redis_url=redis_url)
        store = None
        if redis_url:  # rooms, membership and the pool, shared by every signalling process
            from server.redis_store import RedisStore

            store = RedisStore(redis_url)
        app = create_app(config, turn=turn, store=store)
        rooms = app.state.rooms
        metrics += SIGNALLING_METRICS
        snapshots.append(rooms.snapshot)
        server, task, port = await start_http(app, args.host, args.port)
        config.allowed_origins = config.allowed_origins | _origins(args, port)
        url = f"ws://127.0.0.1:{port}/ws"
        shown = "localhost" if args.host in ("0.0.0.0", "127.0.0.1") else args.host
        print(f"signalling on {args.host}:{port}; join: http://{shown}:{port}/?room={args.room}"
              f"&token={token}", flush=True)
        print(f"media token for `talkcodec send --agent` (keep it private; viewers must not "
              f"get it): {media_token}", flush=True)
        tasks.append(task)
    if args.role in ("all", "receiver"):
        if args.loopback:
            enable_loopback_candidates()
        # A pooled worker: registers with signalling and serves links of any room, placed
        # on it by load (server/placement.py, server/pool_worker.py).
        urls = ([_ws_url(u) for u in args.signal_url.split(",") if u.strip()]
                if args.signal_url and args.role == "receiver" else [url])
        worker = PooledReceiver(
            urls, secret,
            WorkerConfig(receiver=args.receiver, low_latency=args.low_latency,
                         ice_provider=lambda: turn.ice_servers("receiver")),
            receiver_id=args.receiver_id or "", capacity=args.capacity)
        metrics += RECEIVER_METRICS
        snapshots.append(worker.snapshot)
        readiness.append(worker.readiness)
        tasks.append(asyncio.ensure_future(worker.run()))
        print(f"receiver worker ('{worker.receiver_name}', id {worker.rid}, capacity "
              f"{worker.capacity}) in the pool of {', '.join(urls)}", flush=True)
        if args.agent:
            agent = SenderAgent(SignalClient(url, args.room, media_token, "agent", "agent",
                                             "agent", reconnect_s=REJOIN_S),
                                audio_frame_ms=args.audio_frame_ms
                                or link_audio_frame_ms(args.low_latency))
            tasks.append(asyncio.ensure_future(agent.run()))
    ops = None
    if args.ops_port is not None:
        def snapshot() -> dict:
            return {k: v for snap in snapshots for k, v in snap().items()}

        def ready() -> tuple[bool, str]:
            for check in readiness:
                ok, why = check()
                if not ok:
                    return ok, why
            return True, ""

        ops = OpsServer(metrics, snapshot, ready, args.ops_host, args.ops_port).start()
        print(f"ops (/livez /readyz /metrics) on {args.ops_host}:{ops.port}", flush=True)
    running: asyncio.Future[Any] = asyncio.gather(*tasks)
    if args.role == "receiver":
        # SIGTERM (Kubernetes stopping the pod): drain instead of dropping the calls.
        # Signalling's uvicorn handles its own SIGTERM, so only here.
        import signal

        term = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, term.set)
        stopper: asyncio.Future[Any] = asyncio.ensure_future(term.wait())
        await asyncio.wait([running, stopper], return_when=asyncio.FIRST_COMPLETED)
        if term.is_set():
            await worker.drain(args.drain_s)
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            if ops is not None:
                await ops.stop()
            return
        stopper.cancel()
    try:
        await running
    finally:
        if ops is not None:
            await ops.stop()


# ---- send ----------------------------------------------------------------------------
async def _send(args: argparse.Namespace) -> None:
    from server.aiortc_patches import enable_loopback_candidates
    from server.sender_agent import DeviceSender, FileSender, SenderAgent
    from server.signal_client import SignalClient

    if args.loopback:
        enable_loopback_candidates()
    # Several URLs (comma-separated) or one Service URL: a dropped socket rejoins the room
    # through the next one (server/signal_client.py).
    url = [_ws_url(u) for u in args.url.split(",") if u.strip()]
    name = args.name or f"sender-{secrets.token_hex(3)}"
    if args.agent:
        client = SignalClient(url, args.room, args.token, name, "agent", name,
                              reconnect_s=REJOIN_S)
        print(f"sender agent '{name}' serving browser cameras in room {args.room}", flush=True)
        await SenderAgent(client, audio_frame_ms=args.audio_frame_ms).run()
        return
    if not args.source:
        raise TalkcodecError("give a video file or camera device, or --agent")
    client = SignalClient(url, args.room, args.token, name, "sender", args.label or name,
                          reconnect_s=REJOIN_S)
    if args.source.startswith("/dev/video"):
        await DeviceSender(client, args.source).run()
        return
    clip = await asyncio.get_running_loop().run_in_executor(
        None, _load_clip, args.source, args.max_seconds
    )
    sender = FileSender(client, clip, loop=args.loop, audio_frame_ms=args.audio_frame_ms)
    print(f"sending {Path(args.source).name} ({clip.n_frames} frames) to room {args.room}",
          flush=True)
    await sender.run()
    print(f"sent {sender.frames_sent} frames", flush=True)


def add_subcommands(sub: Any) -> None:
    demo = sub.add_parser("demo", help="start a demo call on this machine and print its URL")
    demo.add_argument("--clip", help="video for the Python sender (default: a sample clip)")
    demo.add_argument("--no-clip", action="store_true", help="no Python sender, browsers only")
    demo.add_argument("--clip-seconds", type=float, default=20.0,
                      help="seconds of the clip the Python sender loops (default 20)")
    demo.add_argument("--host", default="127.0.0.1",
                      help="address to serve the page and rooms on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000,
                      help="port to serve on (default 8000; 0: any free port)")
    demo.add_argument("--origin", action="append",
                      help="another public origin browsers may open the page from (repeatable; "
                           "the served host:port is always allowed)")
    demo.add_argument("--receiver", default="", help="receiver name (default: best available)")
    demo.add_argument("--low-latency", action="store_true", help="no wait for the next 8x8 frame")
    demo.add_argument("--audio-frame-ms", type=int, choices=OPUS_FRAME_MS,
                      help="Opus packet length on the link (default 120, 60 with --low-latency)")
    demo.set_defaults(func=lambda a: _run(_demo(a)), **{SERVICE: True, RUNS_RECEIVER: True})

    serve = sub.add_parser("serve", help="signalling server and/or receiver worker")
    serve.add_argument("--role", choices=("all", "signalling", "receiver"), default="all",
                       help="signalling (rooms + page), receiver (a worker joining a "
                            "signalling server), or all of it in this process (default)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address signalling listens on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000,
                       help="port signalling listens on (default 8000)")
    serve.add_argument("--room", default="demo",
                       help="room whose tokens signalling prints (default demo); receivers "
                            "serve any room")
    serve.add_argument("--signal-url",
                       help="signalling server(s) for --role receiver, comma-separated: the "
                            "worker registers in the pool of the first that answers")
    serve.add_argument("--redis-url",
                       help="Redis for the rooms, their members, the receiver pool and the "
                            "relay between signalling processes, e.g. redis://redis:6379/0 (or "
                            "env TALKCODEC_REDIS_URL; default: this process's memory)")
    serve.add_argument("--capacity", type=int,
                       default=int(os.environ.get("TALKCODEC_RECEIVER_CAPACITY", 0) or 8),
                       help="links this receiver takes at most (default 8, or env "
                            "TALKCODEC_RECEIVER_CAPACITY)")
    serve.add_argument("--receiver-id", help="this receiver's id in the pool (default: "
                                             "host name + random)")
    serve.add_argument("--origin", action="append",
                       help="public origin browsers open the page from, e.g. "
                            "https://call.example (repeatable, or env TALKCODEC_ORIGINS; the "
                            "served host:port is always allowed)")
    serve.add_argument("--receiver", default="",
                       help="receiver name (default: neural if available, else align)")
    serve.add_argument("--low-latency", action="store_true",
                       help="no wait for the next 8x8 frame (holds the latest instead)")
    serve.add_argument("--agent", action="store_true", help="also serve browser cameras here")
    serve.add_argument("--audio-frame-ms", type=int, choices=OPUS_FRAME_MS,
                       help="the agent's Opus packets (default 120, 60 with --low-latency)")
    serve.add_argument("--loopback", action="store_true", help="offer 127.0.0.1 ICE candidates")
    serve.add_argument("--ops-port", type=int,
                       help="serve /livez, /readyz and /metrics on this port (default: off; "
                            "0: any free port)")
    serve.add_argument("--ops-host", default="0.0.0.0",
                       help="address of the ops port (default 0.0.0.0)")
    serve.add_argument("--max-connections-per-ip", type=int, default=32,
                       help="open signalling sockets one client address may hold (default 32; "
                            "0: no cap)")
    serve.add_argument("--drain-s", type=float, default=float(os.environ.get(DRAIN_ENV, 0) or 25),
                       help="on SIGTERM a receiver keeps its running links this long at most, "
                            "taking no new ones (default 25, or env TALKCODEC_DRAIN_S)")
    serve.set_defaults(func=lambda a: _run(_serve(a)), **{SERVICE: True, RUNS_RECEIVER: True})

    send = sub.add_parser("send", help="send a video file or camera over a call")
    send.add_argument("source", nargs="?", help="video file or /dev/videoN")
    send.add_argument("--agent", action="store_true", help="serve this machine's browser camera")
    send.add_argument("--url", required=True,
                      help="server, e.g. http://localhost:8000; several, comma-separated: "
                           "a dropped connection rejoins through the next")
    send.add_argument("--room", required=True, help="room to join")
    send.add_argument("--token", default=os.environ.get("TALKCODEC_TOKEN", ""),
                      help="room token (or env TALKCODEC_TOKEN); --agent needs the media "
                           "token `serve` prints")
    send.add_argument("--name", help="peer id")
    send.add_argument("--label", help="name shown to viewers")
    send.add_argument("--loop", action="store_true", help="repeat the file")
    send.add_argument("--audio-frame-ms", type=int, choices=OPUS_FRAME_MS,
                      default=DEFAULT_AUDIO_FRAME_MS,
                      help="Opus packet length on the link (60 for a low-latency receiver)")
    send.add_argument("--max-seconds", type=float,
                      help="send only the first N seconds of the file (default: all)")
    send.add_argument("--loopback", action="store_true", help="offer 127.0.0.1 ICE candidates")
    send.set_defaults(func=lambda a: _run(_send(a)), **{SERVICE: True})


if __name__ == "__main__":  # pragma: no cover - use the talkcodec command
    sys.exit("use: talkcodec send|serve|demo")
