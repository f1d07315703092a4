"""The FastAPI application: signalling rooms on ``/ws`` and the call page from ``client/``."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from server.signalling import RoomRegistry, SignallingConfig, add_signalling_routes

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client"


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

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(client_dir / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/ice")
    async def ice() -> JSONResponse:
        return JSONResponse({"iceServers": ice_servers_from_env()})

    @app.get("/healthz")
    async def health() -> JSONResponse:
        return JSONResponse({"ok": True, "rooms": len(registry.rooms)})

    app.mount("/static", StaticFiles(directory=client_dir), name="static")
    return app


async def start_http(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> tuple:
    """Serve ``app`` with uvicorn inside the running event loop.

    Returns ``(server, task, port)``; stop with ``server.should_exit = True; await task``.
    """
    import asyncio

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", ws_max_size=1 << 20,
                       lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("HTTP server did not start")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, task, int(bound)
