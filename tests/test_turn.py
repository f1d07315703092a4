"""TURN credentials (issue 15): coturn's use-auth-secret scheme (the TURN REST API), minted
only for holders of a valid room token, and expiring; the page asks with POST, so the token
stays out of URLs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

import pytest

from server.app import create_app, start_http
from server.signalling import SignallingConfig
from server.tokens import SCOPE_MEDIA, make_room_token
from server.turn import TurnConfig, credential_valid, turn_credential

SECRET = b"room-token-secret"
TURN_SECRET = b"turn-shared-secret"
TURN = TurnConfig(urls=("stun:turn.example:3478", "turn:turn.example:3478?transport=udp"),
                  secret=TURN_SECRET, ttl_s=600)


def test_credential_is_coturns_rest_scheme() -> None:
    username, credential = turn_credential(TURN_SECRET, "room1", ttl_s=600, now=1_000_000)
    assert username == "1000600:room1"
    # What coturn computes with static-auth-secret: base64(HMAC-SHA1(secret, username)).
    expected = base64.b64encode(hmac.new(TURN_SECRET, username.encode(), hashlib.sha1).digest())
    assert credential == expected.decode()
    assert credential_valid(TURN_SECRET, username, credential, now=1_000_599)
    assert not credential_valid(TURN_SECRET, username, credential, now=1_000_601)  # expired
    assert not credential_valid(b"other", username, credential, now=1_000_000)
    assert not credential_valid(TURN_SECRET, "2000000:room1", credential, now=1_000_000)
    with pytest.raises(ValueError):
        turn_credential(TURN_SECRET, "a:b")


def test_ice_servers_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    servers = TURN.ice_servers("r", now=1_000_000)
    assert servers[0] == {"urls": ["stun:turn.example:3478"]}
    assert servers[1]["urls"] == ["turn:turn.example:3478?transport=udp"]
    assert servers[1]["username"] == "1000600:r"
    # No secret: the TURN URLs are left out (coturn would refuse them), STUN stays.
    assert TurnConfig(urls=TURN.urls).ice_servers("r") == [{"urls": ["stun:turn.example:3478"]}]
    monkeypatch.setenv("TALKCODEC_TURN_URL", "turn:a:3478, turns:a:5349")
    monkeypatch.setenv("TALKCODEC_TURN_SECRET", "s3")
    monkeypatch.setenv("TALKCODEC_TURN_TTL_S", "120")
    env = TurnConfig.from_env()
    assert env.urls == ("turn:a:3478", "turns:a:5349") and env.secret == b"s3" and env.ttl_s == 120
    monkeypatch.setenv("TALKCODEC_TURN_TTL_S", "5")
    with pytest.raises(ValueError):
        TurnConfig.from_env()


def _post(url: str, body: bytes | None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_api_ice_only_for_room_token_holders() -> None:
    async def scenario() -> dict:
        app = create_app(SignallingConfig(secret=SECRET), turn=TURN)
        server, task, port = await start_http(app)
        url = f"http://127.0.0.1:{port}/api/ice"
        expired = f"{int(time.time()) - 5}.{make_room_token(SECRET, 'r').split('.')[1]}"
        cases = {
            "valid": json.dumps({"room": "r", "token": make_room_token(SECRET, "r")}),
            "media": json.dumps({"room": "r", "token": make_room_token(SECRET, "r",
                                                                        scope=SCOPE_MEDIA)}),
            "other room": json.dumps({"room": "q", "token": make_room_token(SECRET, "r")}),
            "no token": json.dumps({"room": "r"}),
            "expired": json.dumps({"room": "r", "token": expired}),
            "bad room": json.dumps({"room": "r:x", "token": make_room_token(SECRET, "r:x")}),
            "not json": "{",
            "list": "[1]",
            "huge": json.dumps({"room": "r", "token": "x" * 5000}),
            "empty": None,
        }
        got = {}
        for name, body in cases.items():
            got[name] = await asyncio.to_thread(_post, url, body.encode() if body else None)
        get_status = await asyncio.to_thread(_status_of_get, url)
        server.should_exit = True
        await task
        return {"cases": got, "get": get_status}

    out = asyncio.run(asyncio.wait_for(scenario(), 60))
    cases = out["cases"]
    for name in ("valid", "media"):
        status, body = cases[name]
        assert status == 200, (name, body)
        turn = body["iceServers"][1]
        assert turn["username"].endswith(":r")
        expiry = int(turn["username"].split(":")[0])
        assert 0 < expiry - time.time() <= 600
        assert credential_valid(TURN_SECRET, turn["username"], turn["credential"])
    for name in ("other room", "no token", "expired", "bad room", "not json", "list", "huge",
                 "empty"):
        status, body = cases[name]
        assert status == 403, (name, status, body)
        assert "iceServers" not in body and body["error"], name
    assert out["get"] == 405  # the old GET that gave credentials to anyone is gone


def _status_of_get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
