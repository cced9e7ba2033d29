"""Everything a node asks Redis, each as one round trip (key layout: `schema`)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from subjects.ratelimiter.service import schema

# The sliding-window log, decided atomically on Redis's clock so every node agrees on "now".
# KEYS: counter log, meta hash, configured-limit hash.
# ARGV: request limit or "", request window_ms or "", default limit, default window_ms,
#       unique member token, now_us override or "" (tests pin the clock), "1" to return the log.
# Numbers go through string.format('%.0f') because Lua 5.1 prints large doubles in exponent form.
CHECK_LUA = """
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
if not limit or not window_ms then
  local cfg = redis.call('HMGET', KEYS[3], 'limit', 'window_ms')
  if not limit then limit = tonumber(cfg[1]) or tonumber(ARGV[3]) end
  if not window_ms then window_ms = tonumber(cfg[2]) or tonumber(ARGV[4]) end
end
local now = tonumber(ARGV[6])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local window = window_ms * 1000
local now_s = string.format('%.0f', now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now_s, now_s .. ':' .. ARGV[5])
  count = count + 1
  allowed = 1
end
local reset = 0
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then
  reset = tonumber(oldest[2]) + window - now
  redis.call('PEXPIRE', KEYS[1], window_ms + 1000)
end
redis.call('HSET', KEYS[2], 'limit', limit, 'window_ms', window_ms, 'last_us', now_s)
redis.call('PEXPIRE', KEYS[2], window_ms + 1000)
local out = {allowed, count, limit, window_ms, now_s, string.format('%.0f', reset)}
if ARGV[7] == '1' then
  local log = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 2, #log, 2 do out[#out + 1] = log[i] end
end
return out
"""

# The heartbeat stamps Redis's own clock, so a node's wall clock cannot make it look alive.
HEARTBEAT_LUA = """
local t = redis.call('TIME')
local ms = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ms)
return ms
"""


@dataclass(frozen=True)
class CheckOutcome:
    allowed: bool
    count: int  # entries in the window after this check
    limit: int
    window_ms: int
    now_us: int  # Redis's clock when the check ran
    reset_us: int  # until the oldest entry leaves the window (0 when the window is empty)
    log: tuple[int, ...] | None = None  # admission times in the window, when asked for

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)


class SourceBoundConnection(aioredis.Connection):
    """A Redis connection that leaves from a given local address: in a lab where every node has an
    address of its own, a node's traffic to Redis can then be told apart (and cut) by address."""

    def __init__(self, *, source_address: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.source_address = source_address

    def _connection_arguments(self) -> dict:
        arguments = super()._connection_arguments()
        if self.source_address:
            arguments["local_addr"] = (self.source_address, 0)
        return arguments


class RedisStore:
    """A node's Redis connection: short timeouts and no retries, so an outage shows at once."""

    def __init__(
        self, url: str, timeout_s: float = 0.5, max_connections: int = 64, source_address: str | None = None
    ) -> None:
        extra = {"connection_class": SourceBoundConnection, "source_address": source_address} if source_address else {}
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            **extra,
        )
        self.url = url
        self.timeout_s = timeout_s
        self.client = aioredis.Redis.from_pool(pool)
        self._check = self.client.register_script(CHECK_LUA)
        self._heartbeat = self.client.register_script(HEARTBEAT_LUA)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> None:
        await self.client.ping()

    async def now_us(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1_000_000 + int(micros)

    async def check(
        self,
        key: str,
        limit: int | None,
        window_ms: int | None,
        default_limit: int,
        default_window_ms: int,
        token: str,
        now_us: int | None = None,
        want_log: bool = False,
    ) -> CheckOutcome:
        raw = await self._check(
            keys=[schema.counter_key(key), schema.meta_key(key), schema.limit_key(key)],
            args=[
                "" if limit is None else limit,
                "" if window_ms is None else window_ms,
                default_limit,
                default_window_ms,
                token,
                "" if now_us is None else now_us,
                "1" if want_log else "0",
            ],
        )
        return CheckOutcome(
            allowed=int(raw[0]) == 1,
            count=int(raw[1]),
            limit=int(raw[2]),
            window_ms=int(raw[3]),
            now_us=int(raw[4]),
            reset_us=int(raw[5]),
            log=tuple(int(float(s)) for s in raw[6:]) if want_log else None,
        )

    async def get_limit(self, key: str) -> tuple[int, int] | None:
        limit, window_ms = await self.client.hmget(schema.limit_key(key), ["limit", "window_ms"])
        if limit is None or window_ms is None:
            return None
        return int(limit), int(window_ms)

    async def set_limit(self, key: str, limit: int, window_ms: int) -> None:
        await self.client.hset(schema.limit_key(key), mapping={"limit": limit, "window_ms": window_ms})

    async def delete_limit(self, key: str) -> bool:
        return bool(await self.client.delete(schema.limit_key(key)))

    async def reset(self, key: str) -> int:
        """Forget KEY's log; returns how many entries it held."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zcard(schema.counter_key(key))
            pipe.delete(schema.counter_key(key), schema.meta_key(key))
            held, _ = await pipe.execute()
        return int(held)

    async def counters_page(
        self, cursor: int, count: int, default_limit: int, default_window_ms: int
    ) -> tuple[int, list[dict], int]:
        """One SCAN page of counters with each key's count in its window.

        Returns (next cursor, 0 when done; rows; Redis time in ms). SCAN semantics: a key may
        appear on two pages if the keyspace is resized meanwhile, and a page may be short.
        """
        names: list[bytes] = []
        # A SCAN step can come back empty while keys remain; a few steps fill a page.
        for _ in range(32):
            cursor, batch = await self.client.scan(cursor=cursor, match=schema.COUNTER_MATCH, count=count)
            names.extend(batch)
            if cursor == 0 or len(names) >= count:
                break
        keys = list(dict.fromkeys(schema.key_from_counter(n) for n in names))
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            for key in keys:
                pipe.hmget(schema.meta_key(key), ["limit", "window_ms"])
                pipe.hmget(schema.limit_key(key), ["limit", "window_ms"])
            first = await pipe.execute()
        seconds, micros = first[0]
        now_us = int(seconds) * 1_000_000 + int(micros)
        rows = []
        for i, key in enumerate(keys):
            meta, configured = first[1 + 2 * i], first[2 + 2 * i]
            limit = _first_int(meta[0], configured[0], default_limit)
            window_ms = _first_int(meta[1], configured[1], default_window_ms)
            rows.append(
                {
                    "key": key,
                    "limit": limit,
                    "window_ms": window_ms,
                    "configured": configured[0] is not None,
                }
            )
        async with self.client.pipeline(transaction=False) as pipe:
            for row in rows:
                start = schema.window_start_us(now_us, row["window_ms"])
                pipe.zcount(schema.counter_key(row["key"]), f"({start}", "+inf")
            counts = await pipe.execute()
        for row, n in zip(rows, counts, strict=True):
            row["count"] = int(n)
        return int(cursor), rows, now_us // 1000

    async def heartbeat(self, node_id: str, info: dict) -> int:
        """Write this node's registry entry and stamp its heartbeat; returns Redis time in ms."""
        ms = await self._heartbeat(
            keys=[schema.NODES_KEY, schema.HEARTBEATS_KEY], args=[node_id, json.dumps(info, sort_keys=True)]
        )
        return int(ms)

    async def write_info(self, node_id: str, info: dict) -> None:
        """Update the registry entry without a heartbeat (used on a clean stop)."""
        await self.client.hset(schema.NODES_KEY, node_id, json.dumps(info, sort_keys=True))

    async def nodes(self) -> tuple[list[dict], int]:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.hgetall(schema.NODES_KEY)
            pipe.hgetall(schema.HEARTBEATS_KEY)
            (seconds, micros), infos, beats = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        return schema.registry_rows(infos, beats, now_ms), now_ms


def _first_int(*values: bytes | str | int | None) -> int:
    for v in values:
        if v is not None:
            return int(v)
    raise ValueError("no value")
