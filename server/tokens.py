"""HMAC-signed room tokens: a caller may join a room only with a token made for it.

A room token is ``<expiry unix seconds>.<base64url HMAC-SHA256(secret, "room|expiry")>``:
it lets its holder join the room as a viewer or a sender. A *media* token,
``<expiry>.media.<HMAC(secret, "room|expiry|media")>``, is also needed for the roles that
receive other people's media (the receiver worker gets the senders' links, a sender agent
gets the browsers' cameras); it is never put in a page URL. The secret is generated at
server start (``new_secret``) or given by env ``TALKCODEC_SECRET``; it is never written to
the repository.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time

SECRET_ENV = "TALKCODEC_SECRET"
DEFAULT_TTL_S = 12 * 3600
SCOPE_ROOM = "room"
SCOPE_MEDIA = "media"
SCOPES = (SCOPE_ROOM, SCOPE_MEDIA)
_EXPIRY_RE = re.compile(r"[0-9]{1,12}")  # ASCII digits only (str.isdigit accepts "²")


def new_secret() -> bytes:
    """The server secret: env TALKCODEC_SECRET when set, else 32 fresh random bytes."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    return secrets.token_bytes(32)


def _mac(secret: bytes, room: str, expiry: int, scope: str = SCOPE_ROOM) -> str:
    message = f"{room}|{expiry}" if scope == SCOPE_ROOM else f"{room}|{expiry}|{scope}"
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_room_token(secret: bytes, room: str, ttl_s: int = DEFAULT_TTL_S,
                    scope: str = SCOPE_ROOM) -> str:
    """A token for ``room``; ``scope="media"`` also admits the media-receiving roles."""
    if scope not in SCOPES:
        raise ValueError(f"unknown token scope {scope!r}")
    expiry = int(time.time()) + int(ttl_s)
    middle = "" if scope == SCOPE_ROOM else f"{scope}."
    return f"{expiry}.{middle}{_mac(secret, room, expiry, scope)}"


def token_scope(secret: bytes, room: str, token: object, now: float | None = None) -> str | None:
    """The scope ("room" or "media") of a valid, unexpired token for ``room``; else None.

    Never raises, whatever ``token`` is."""
    if not isinstance(token, str) or len(token) > 128:
        return None
    parts = token.split(".")
    if len(parts) == 2:
        expiry_text, scope, mac = parts[0], SCOPE_ROOM, parts[1]
    elif len(parts) == 3 and parts[1] == SCOPE_MEDIA:
        expiry_text, scope, mac = parts
    else:
        return None
    if not _EXPIRY_RE.fullmatch(expiry_text) or not mac.isascii():
        return None
    expiry = int(expiry_text)
    if expiry < (time.time() if now is None else now):
        return None
    return scope if hmac.compare_digest(mac, _mac(secret, room, expiry, scope)) else None


def token_expiry(token: object) -> int | None:
    """The expiry (unix seconds) written in a token's first part, unchecked; None when the
    token has no such part. For showing it (the rooms API), never for trusting it."""
    if not isinstance(token, str) or len(token) > 128:
        return None
    head = token.split(".", 1)[0]
    return int(head) if _EXPIRY_RE.fullmatch(head) else None


def verify_room_token(secret: bytes, room: str, token: object, now: float | None = None,
                      scope: str | None = None) -> bool:
    """True when ``token`` was made with ``secret`` for ``room`` and has not expired (and,
    given ``scope``, has that scope; a media token is a room token as well)."""
    got = token_scope(secret, room, token, now)
    return got is not None and (scope is None or got == scope)
