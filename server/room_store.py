"""Where signalling keeps the rooms the rooms API made (issue 15).

A small interface so that a shared store (Redis, for several signalling processes) can
replace the in-memory one of a single process without touching the API. Today it holds
the rooms made through ``POST /api/rooms`` with their expiry; membership and the receiver
registry are still the signalling process's own (``server/signalling.py``).

``StoreUnavailable``: the store cannot be reached; the API answers 503 with the reason
instead of making a room nobody else can see.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass


class StoreUnavailable(Exception):
    """The room store cannot be reached (the reason is the message)."""


@dataclass(frozen=True)
class RoomRecord:
    name: str
    expires_unix: int
    created_unix: int


class RoomStore(ABC):
    @abstractmethod
    async def create_room(self, record: RoomRecord) -> bool:
        """Store a new room; False when a live room of that name exists."""

    @abstractmethod
    async def get_room(self, name: str) -> RoomRecord | None:
        """The live (unexpired) room of that name, if any."""

    @abstractmethod
    async def count_rooms(self) -> int:
        """Live rooms made through the API."""


class MemoryStore(RoomStore):
    """The store of one signalling process (``talkcodec serve``, the demo, the tests)."""

    def __init__(self, max_rooms: int = 10_000) -> None:
        self.max_rooms = max_rooms
        self.rooms: dict[str, RoomRecord] = {}

    def _expire(self) -> None:
        now = time.time()
        for name in [n for n, r in self.rooms.items() if r.expires_unix < now]:
            del self.rooms[name]

    async def create_room(self, record: RoomRecord) -> bool:
        self._expire()
        if record.name in self.rooms:
            return False
        if len(self.rooms) >= self.max_rooms:
            raise StoreUnavailable(f"room limit reached ({self.max_rooms} live rooms)")
        self.rooms[record.name] = record
        return True

    async def get_room(self, name: str) -> RoomRecord | None:
        self._expire()
        return self.rooms.get(name)

    async def count_rooms(self) -> int:
        self._expire()
        return len(self.rooms)
