"""The FastAPI application: signalling rooms on ``/ws`` and the call page from ``client/``.

Every HTTP response carries ``SECURITY_HEADERS``: the page holds a room token and asks for
the camera, so it may not be framed, sniffed, leak its URL as a referrer, run inline or
foreign scripts, or connect anywhere but its own origin.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from server.signalling import RoomRegistry, SignallingConfig, add_signalling_routes

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


def ice_servers_from_env() -> list[dict]:
    """STUN/TURN servers for real networks: TALKCODEC_TURN_URL (+ _USER, _PASSWORD)."""
    servers: list[dict] = []
    url = os.environ.get("TALKCODEC_TURN_URL")
    if url:
        entry: dict = {"urls": [url]}
        if os.environ.get("TALKCODEC_TURN_USER"):
            entry["username"] = os.environ["TALKCODEC_TURN_USER"]
            entry["credential"] = os.environ.get("TALKCODEC_TURN_PASSWORD", "")
        servers.append(entry)
    return servers


def create_app(config: SignallingConfig, client_dir: Path = CLIENT_DIR) -> FastAPI:
    app = FastAPI(title="talkcodec call", docs_url=None, redoc_url=None, openapi_url=None)
    registry: RoomRegistry = add_signalling_routes(app, config)
    app.state.rooms = registry
    app.add_middleware(SecurityHeaders)

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(client_dir / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/ice")
    async def ice() -> JSONResponse:
        return JSONResponse({"iceServers": ice_servers_from_env()})

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
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("HTTP server did not start")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, task, int(bound)
