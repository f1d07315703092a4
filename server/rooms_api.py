"""The rooms API (issue 15): an operator creates a room and gets its join links and tokens.

    POST /api/rooms   Authorization: Bearer <TALKCODEC_OPERATOR_KEY>
    body (optional JSON): {"name": "standup-42", "ttl_s": 3600}
    -> 201 {"room", "expires_unix", "ttl_s", "token", "media_token", "join_url",
            "sender": {"url", "room", "token"}}

The tokens are the HMAC room tokens of ``server/tokens.py``: they carry their expiry, so
any signalling process with the same secret admits them without a lookup, and they stop
working at ``expires_unix``. ``token`` is the page's (viewers and senders); ``media_token``
is for a sender agent (``talkcodec send --agent``) and must never go into a page URL.

Without an operator key configured the API answers 404 (off); a wrong key 401; the key is
compared in constant time. A room name the caller gives must match the signalling name
rule; a live room of that name is 409. A store that cannot be reached is 503 with the
reason (``StoreUnavailable``).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from server.room_store import RoomRecord, RoomStore, StoreUnavailable
from server.signalling import NAME_RE
from server.tokens import SCOPE_MEDIA, make_room_token, token_expiry

OPERATOR_KEY_ENV = "TALKCODEC_OPERATOR_KEY"
MAX_BODY = 1024
MIN_TTL_S, MAX_TTL_S, DEFAULT_ROOM_TTL_S = 60, 7 * 24 * 3600, 4 * 3600
NO_STORE = {"Cache-Control": "no-store"}


def operator_key_from_env() -> str:
    return os.environ.get(OPERATOR_KEY_ENV, "")


def _error(status: int, why: str) -> JSONResponse:
    return JSONResponse({"error": why}, status_code=status, headers=NO_STORE)


def _authorized(request: Request, key: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              key.encode())


async def _body(request: Request) -> dict | str:
    """The request's JSON object ({} when empty), or why it is not one."""
    try:
        length = int(request.headers.get("content-length") or 0)
    except ValueError:
        return "bad Content-Length"
    if length == 0:
        return {}
    if not 0 < length <= MAX_BODY:
        return f"body over {MAX_BODY} bytes"
    try:
        body = json.loads(await request.body())
    except ValueError:
        return "body is not JSON"
    return body if isinstance(body, dict) else "body must be a JSON object"


def add_rooms_routes(app: FastAPI, secret: bytes, store: RoomStore,
                     operator_key: str | None = None) -> None:
    """Mount ``POST /api/rooms``; ``operator_key`` default: env TALKCODEC_OPERATOR_KEY."""
    key = operator_key if operator_key is not None else operator_key_from_env()

    @app.post("/api/rooms")
    async def create_room(request: Request) -> JSONResponse:
        if not key:
            return _error(404, f"rooms API off: set {OPERATOR_KEY_ENV}")
        if not _authorized(request, key):
            return _error(401, "operator key required (Authorization: Bearer ...)")
        body = await _body(request)
        if isinstance(body, str):
            return _error(400, body)
        name = body.get("name", f"room-{secrets.token_hex(6)}")
        if not isinstance(name, str) or not NAME_RE.match(name):
            return _error(400, "bad room name (1-64 of A-Z a-z 0-9 _ . -)")
        ttl = body.get("ttl_s", DEFAULT_ROOM_TTL_S)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not MIN_TTL_S <= ttl <= MAX_TTL_S:
            return _error(400, f"ttl_s must be an integer from {MIN_TTL_S} to {MAX_TTL_S}")
        token = make_room_token(secret, name, ttl_s=ttl)
        now = int(time.time())
        record = RoomRecord(name=name, expires_unix=token_expiry(token) or now + ttl,
                            created_unix=now)
        try:
            if not await store.create_room(record):
                return _error(409, f"room {name} exists")
        except StoreUnavailable as exc:
            return _error(503, f"room store unavailable: {exc}")
        base = str(request.base_url).rstrip("/")
        return JSONResponse({
            "room": name, "expires_unix": record.expires_unix, "ttl_s": ttl,
            "token": token,
            "media_token": make_room_token(secret, name, ttl_s=ttl, scope=SCOPE_MEDIA),
            "join_url": f"{base}/?room={name}&token={token}",
            "sender": {"url": base, "room": name, "token": token},
        }, status_code=201, headers=NO_STORE)
