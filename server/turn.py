"""Time-limited TURN credentials: coturn's ``use-auth-secret`` (the "TURN REST API" scheme).

coturn and this server share one secret (env ``TALKCODEC_TURN_SECRET``; coturn's
``static-auth-secret``). A credential is

    username   = "<expiry unix seconds>:<name>"
    credential = base64(HMAC-SHA1(secret, username))

coturn recomputes the HMAC and refuses the username once its expiry has passed, so nothing
is stored and a leaked credential dies with its expiry. The page asks ``POST /api/ice``
with its room and room token (``server/app.py``); without a valid token it gets nothing.
The receiver worker mints its own from the same secret for each new peer connection.

Env: ``TALKCODEC_TURN_URL`` (one or more ``turn:`` / ``turns:`` URLs, comma-separated),
``TALKCODEC_TURN_SECRET``, ``TALKCODEC_TURN_TTL_S`` (default 4 hours: coturn also checks
the expiry when an allocation is refreshed, so a call that outlives its credential loses
its relay; pick the TTL above the longest call).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass

TURN_URL_ENV = "TALKCODEC_TURN_URL"
TURN_SECRET_ENV = "TALKCODEC_TURN_SECRET"
TURN_TTL_ENV = "TALKCODEC_TURN_TTL_S"
DEFAULT_TTL_S = 4 * 3600
MAX_TTL_S = 7 * 24 * 3600


def turn_credential(secret: bytes, name: str, ttl_s: int = DEFAULT_TTL_S,
                    now: float | None = None) -> tuple[str, str]:
    """``(username, credential)`` valid for ``ttl_s`` seconds from ``now``."""
    if ":" in name:
        raise ValueError("a TURN credential name may not contain ':'")
    expiry = int(time.time() if now is None else now) + int(ttl_s)
    username = f"{expiry}:{name}"
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def credential_valid(secret: bytes, username: str, credential: str,
                     now: float | None = None) -> bool:
    """What coturn checks: the HMAC matches and the expiry has not passed (for tests)."""
    expiry_text, _, _ = username.partition(":")
    if not expiry_text.isascii() or not expiry_text.isdigit():
        return False
    if int(expiry_text) < (time.time() if now is None else now):
        return False
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), credential)


@dataclass(frozen=True)
class TurnConfig:
    urls: tuple[str, ...] = ()
    secret: bytes | None = None
    ttl_s: int = DEFAULT_TTL_S

    @classmethod
    def from_env(cls) -> TurnConfig:
        urls = tuple(u.strip() for u in os.environ.get(TURN_URL_ENV, "").split(",") if u.strip())
        secret = os.environ.get(TURN_SECRET_ENV, "").encode() or None
        ttl = int(os.environ.get(TURN_TTL_ENV, "") or DEFAULT_TTL_S)
        if not 60 <= ttl <= MAX_TTL_S:
            raise ValueError(f"{TURN_TTL_ENV} must be 60..{MAX_TTL_S} seconds, not {ttl}")
        return cls(urls=urls, secret=secret, ttl_s=ttl)

    def ice_servers(self, name: str, now: float | None = None) -> list[dict]:
        """The RTCIceServer list for one peer: the ``stun:`` URLs as they are, the TURN URLs
        with fresh credentials. Without a secret the TURN URLs are left out (coturn refuses
        an allocation without credentials)."""
        stun = [u for u in self.urls if u.startswith("stun")]
        turn = [u for u in self.urls if not u.startswith("stun")]
        servers: list[dict] = [{"urls": stun}] if stun else []
        if turn and self.secret is not None:
            username, credential = turn_credential(self.secret, name, self.ttl_s, now)
            servers.append({"urls": turn, "username": username, "credential": credential})
        return servers
