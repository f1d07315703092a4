"""HMAC-signed room tokens: a caller may join a room only with a token made for it.

A token is ``<expiry unix seconds>.<base64url HMAC-SHA256(secret, "room|expiry")>``. The
secret is generated at server start (``new_secret``) or given by env ``TALKCODEC_SECRET``;
it is never written to the repository.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

SECRET_ENV = "TALKCODEC_SECRET"
DEFAULT_TTL_S = 12 * 3600


def new_secret() -> bytes:
    """The server secret: env TALKCODEC_SECRET when set, else 32 fresh random bytes."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    return secrets.token_bytes(32)


def _mac(secret: bytes, room: str, expiry: int) -> str:
    digest = hmac.new(secret, f"{room}|{expiry}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_room_token(secret: bytes, room: str, ttl_s: int = DEFAULT_TTL_S) -> str:
    expiry = int(time.time()) + int(ttl_s)
    return f"{expiry}.{_mac(secret, room, expiry)}"


def verify_room_token(secret: bytes, room: str, token: str, now: float | None = None) -> bool:
    """True when ``token`` was made with ``secret`` for ``room`` and has not expired."""
    if not isinstance(token, str) or len(token) > 128 or "." not in token:
        return False
    expiry_text, mac = token.split(".", 1)
    if not expiry_text.isdigit() or len(expiry_text) > 12:
        return False
    expiry = int(expiry_text)
    if expiry < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac, _mac(secret, room, expiry))
