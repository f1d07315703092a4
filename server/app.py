"""The FastAPI application: signalling rooms on ``/ws`` and the call page from ``client/``.

Every HTTP response carries ``SECURITY_HEADERS``: the page holds a room token and asks for
the camera, so it may not be framed, sniffed, leak its URL as a referrer, run inline or
foreign scripts, or connect anywhere but its own origin.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from server.room_store import MemoryStore, RoomStore
from server.rooms_api import add_rooms_routes
from server.signalling import NAME_RE, RoomRegistry, SignallingConfig, add_signalling_routes
from server.tokens import token_scope
from server.turn import TurnConfig

MAX_ICE_BODY = 1024

# The call page: an installed wheel carries it inside the package (setup.py); the source
# tree (and an editable install) has it at the repository root.
_PACKAGED_CLIENT = Path(__file__).resolve().parent / "_client"
CLIENT_DIR = (_PACKAGED_CLIENT if _PACKAGED_CLIENT.is_dir()
              else Path(__file__).resolve().parent.parent / "client")

# client/*.js are same-origin files (no inline script or style, no eval); the page talks
# to /api and /ws on its own origin ('self' covers ws:/wss: to the same host in CSP 3);
# the 8x8 preview is drawn on a canvas, the videos are MediaStreams (srcObject).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=(), payment=(), "
                          "usb=(), display-capture=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware: adds ``SECURITY_HEADERS`` to every HTTP response (not WebSocket)."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.raw = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in self.raw if h[0] not in names)]}
            await send(message)  # type: ignore[operator]

        await self.app(scope, receive, send_with_headers)  # type: ignore[operator]


def ice_servers_from_env(name: str = "receiver") -> list[dict]:
    """STUN/TURN servers for a Python peer, with TURN credentials minted now from
    TALKCODEC_TURN_SECRET (``server/turn.py``)."""
    return TurnConfig.from_env().ice_servers(name)


async def _ice_request(request: Request, secret: bytes) -> tuple[str | None, str]:
    """The room of a valid ``POST /api/ice`` body ``{"room", "token"}``, or ``(None, why)``."""
    try:
        length = int(request.headers.get("content-length") or 0)
    except ValueError:
        length = -1
    if not 0 < length <= MAX_ICE_BODY:
        return None, "send {room, token} as JSON"
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None, "send {room, token} as JSON"
    if not isinstance(body, dict):
        return None, "send {room, token} as JSON"
    room, token = body.get("room"), body.get("token")
    if not isinstance(room, str) or not NAME_RE.match(room):
        return None, "bad room name"
    if token_scope(secret, room, token) is None:
        return None, "bad or expired room token"
    return room, ""


def create_app(config: SignallingConfig, client_dir: Path = CLIENT_DIR,
               turn: TurnConfig | None = None, store: RoomStore | None = None,
               operator_key: str | None = None) -> FastAPI:
    """The app; ``turn`` (default: from the environment) mints the page's TURN credentials;
    ``store`` keeps the rooms of ``POST /api/rooms`` (default: this process's memory),
    which ``operator_key`` (default: env TALKCODEC_OPERATOR_KEY; none: off) guards."""
    turn_config = turn if turn is not None else TurnConfig.from_env()
    app = FastAPI(title="talkcodec call", docs_url=None, redoc_url=None, openapi_url=None)
    registry: RoomRegistry = add_signalling_routes(app, config)
    app.state.rooms = registry
    app.state.store = store if store is not None else MemoryStore()
    add_rooms_routes(app, config.secret, app.state.store, operator_key)
    app.add_middleware(SecurityHeaders)

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(client_dir / "index.html", headers={"Cache-Control": "no-store"})

    # TURN credentials only for holders of a valid room token, and time-limited
    # (server/turn.py). POST: the token stays out of URLs and access logs.
    @app.post("/api/ice")
    async def ice(request: Request) -> JSONResponse:
        room, why = await _ice_request(request, config.secret)
        if room is None:
            return JSONResponse({"error": why}, status_code=403,
                                headers={"Cache-Control": "no-store"})
        return JSONResponse({"iceServers": turn_config.ice_servers(room)},
                            headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("ok")  # nothing about the rooms: anyone can ask

    app.mount("/static", StaticFiles(directory=client_dir), name="static")
    return app


async def start_http(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> tuple:
    """Serve ``app`` with uvicorn inside the running event loop.

    Returns ``(server, task, port)``; stop with ``server.should_exit = True; await task``.
    """
    import asyncio

    import uvicorn

    server = uvicorn.Server(
        # log_config=None: uvicorn's records go to the root logger's handler (the CLI's
        # --log-format), not to its own text handlers.
        uvicorn.Config(app, host=host, port=port, log_level="warning", ws_max_size=1 << 20,
                       lifespan="off", log_config=None)
    )
    async def serve() -> None:
        try:
            await server.serve()
        finally:  # the signalling registry's background tasks go with the server
            registry = getattr(app.state, "rooms", None)
            if registry is not None:
                await registry.close()

    task = asyncio.create_task(serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("HTTP server did not start")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, task, int(bound)
