"""The rooms API's store in Redis (redis-py asyncio): the rooms that one signalling
process makes are seen by every other one given the same URL (issue 15).

A room is the key ``<prefix>room:<name>`` (a JSON record), made with ``SET NX`` and the
room's TTL as its expiry, so Redis forgets it when its tokens stop working. Any Redis
error is ``StoreUnavailable`` (the API answers 503 with it); redis-py connects again on
the next command, so the API recovers by itself when Redis is back.
"""

from __future__ import annotations

import json
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.room_store import RoomRecord, RoomStore, StoreUnavailable

REDIS_URL_ENV = "TALKCODEC_REDIS_URL"
PREFIX = "talkcodec:"


class RedisStore(RoomStore):
    def __init__(self, url: str, prefix: str = PREFIX, timeout_s: float = 2.0) -> None:
        self.url, self.prefix = url, prefix
        self.redis = aioredis.Redis.from_url(url, socket_timeout=timeout_s,
                                             socket_connect_timeout=timeout_s,
                                             decode_responses=True)

    def _key(self, name: str) -> str:
        return f"{self.prefix}room:{name}"

    async def create_room(self, record: RoomRecord) -> bool:
        ttl = max(1, int(record.expires_unix - time.time()))
        value = json.dumps({"name": record.name, "expires_unix": record.expires_unix,
                            "created_unix": record.created_unix})
        try:
            return bool(await self.redis.set(self._key(record.name), value, nx=True, ex=ttl))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def get_room(self, name: str) -> RoomRecord | None:
        try:
            raw = await self.redis.get(self._key(name))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        if raw is None:
            return None
        data = json.loads(raw)
        return RoomRecord(data["name"], int(data["expires_unix"]), int(data["created_unix"]))

    async def count_rooms(self) -> int:
        try:
            n = 0
            async for _ in self.redis.scan_iter(match=f"{self.prefix}room:*", count=500):
                n += 1
            return n
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def close(self) -> None:
        await self.redis.aclose()
