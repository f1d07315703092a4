"""A Python peer's side of the signalling protocol (see ``signalling.py``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import websockets


class SignalClient:
    """Joins one room and exchanges JSON messages; ``async with`` closes it."""

    def __init__(self, url: str, room: str, token: str, peer: str, role: str, label: str = "") -> None:
        self.url, self.room, self.token = url, room, token
        self.peer, self.role, self.label = peer, role, label
        self.peers: dict[str, dict] = {}
        self._ws: Any = None

    async def connect(self) -> list[dict]:
        """Join the room; returns the peers already there. Raises ConnectionError on refusal."""
        self._ws = await websockets.connect(self.url, max_size=1 << 20)
        try:
            # The server may refuse before the join is sent (too many sockets from here).
            await self._ws.send(
                json.dumps(
                    {"type": "join", "room": self.room, "token": self.token, "peer": self.peer,
                     "role": self.role, "label": self.label}
                )
            )
            reply = json.loads(await self._ws.recv())
        except websockets.ConnectionClosed as exc:
            raise ConnectionError(f"signalling refused the join: {exc.rcvd}") from exc
        if reply.get("type") != "joined":
            raise ConnectionError(f"unexpected signalling reply: {reply}")
        for p in reply["peers"]:
            self.peers[p["peer"]] = p
        return list(reply["peers"])

    async def signal(self, to: str, data: dict) -> None:
        await self._ws.send(json.dumps({"type": "signal", "to": to, "data": data}))

    async def messages(self) -> AsyncIterator[dict]:
        """Incoming messages until the socket closes (keeps ``peers`` up to date)."""
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                if msg.get("type") == "peer-joined":
                    self.peers[msg["peer"]] = msg
                elif msg.get("type") == "peer-left":
                    self.peers.pop(msg.get("peer"), None)
                yield msg
        except websockets.ConnectionClosed:
            return

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def __aenter__(self) -> SignalClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
