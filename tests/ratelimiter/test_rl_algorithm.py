"""The sliding-window log, run by the real Lua script on a real redis-server.

The script takes Redis's TIME unless a test pins "now", which lets these tests land exactly on
window edges (a microsecond before, at, and after the oldest entry leaves).
"""

from __future__ import annotations

import random

import redis
from rl_support import unique_key

from subjects.ratelimiter.service import schema
from subjects.ratelimiter.service.store import RedisStore

T0 = 1_700_000_000_000_000  # a pinned clock, in microseconds
MS = 1000


class Pinned:
    def __init__(
        self, store: RedisStore, key: str, limit: int | None = 3, window_ms: int | None = 1000
    ) -> None:
        self.store, self.key, self.limit, self.window_ms = store, key, limit, window_ms
        self.n = 0

    async def at(self, offset_us: int):
        self.n += 1
        return await self.store.check(
            self.key, self.limit, self.window_ms, 100, 1000, f"test:{self.n}", now_us=T0 + offset_us
        )


async def test_window_edges_are_exact(redis_server):
    store = RedisStore(redis_server)
    try:
        p = Pinned(store, unique_key("edge"))
        for i, t in enumerate((0, 100 * MS, 200 * MS)):
            out = await p.at(t)
            assert out.allowed and out.count == i + 1 and out.remaining == 2 - i
        out = await p.at(300 * MS)
        assert not out.allowed and out.remaining == 0
        assert out.reset_us == 700 * MS  # the entry at 0 leaves at 1000 ms
        assert not (await p.at(1000 * MS - 1)).allowed  # one microsecond early
        out = await p.at(1000 * MS)  # exactly when the oldest entry leaves
        assert out.allowed and out.count == 3
        assert not (await p.at(1000 * MS)).allowed  # the freed slot is taken
        assert not (await p.at(1100 * MS - 1)).allowed
        assert (await p.at(1100 * MS)).allowed
    finally:
        await store.close()


async def test_denied_requests_do_not_count(redis_server):
    store = RedisStore(redis_server)
    try:
        p = Pinned(store, unique_key("denied"), limit=1, window_ms=1000)
        assert (await p.at(0)).allowed
        for t in range(1, 50):
            assert not (await p.at(t * 10 * MS)).allowed  # 49 denials inside the window
        assert (await p.at(1000 * MS)).allowed  # they left no trace in the log
    finally:
        await store.close()


async def test_matches_a_reference_model_and_never_exceeds_the_limit(redis_server):
    store = RedisStore(redis_server)
    rng = random.Random(7)
    limit, window_us = 5, 1000 * MS
    try:
        p = Pinned(store, unique_key("model"), limit=limit, window_ms=window_us // MS)
        admitted: list[int] = []
        t = 0
        for _ in range(400):
            t += rng.choice((0, 1, 50 * MS, 120 * MS, 333 * MS, 999 * MS, 1000 * MS))
            in_window = sum(1 for a in admitted if t - window_us < a <= t)
            out = await p.at(t)
            assert out.allowed == (in_window < limit), f"at {t}: model has {in_window} in the window"
            if out.allowed:
                admitted.append(t)
        assert len(admitted) > 50  # the sequence exercised both outcomes
        for a in admitted:
            assert sum(1 for b in admitted if a - window_us < b <= a) <= limit
    finally:
        await store.close()


async def test_limit_resolution_request_then_configured_then_default(redis_server):
    store = RedisStore(redis_server)
    key = unique_key("resolve")
    try:
        out = await store.check(key, None, None, 9, 4000, "t:1")
        assert (out.limit, out.window_ms) == (9, 4000)  # node default
        await store.set_limit(key, 2, 5000)
        out = await store.check(key, None, None, 9, 4000, "t:2")
        assert (out.limit, out.window_ms) == (2, 5000)  # configured
        out = await store.check(key, 7, None, 9, 4000, "t:3")
        assert (out.limit, out.window_ms) == (7, 5000)  # request's own limit, configured window
        assert await store.get_limit(key) == (2, 5000)
        assert await store.delete_limit(key)
        assert await store.get_limit(key) is None
    finally:
        await store.close()


async def test_redis_layout_is_readable_directly(redis_server):
    """What the observer relies on: log scores in µs on Redis's clock, meta hash, expiry."""
    store = RedisStore(redis_server)
    key = unique_key("layout")
    try:
        outs = [await store.check(key, 10, 2000, 100, 1000, f"t:{i}") for i in range(4)]
        r = redis.Redis.from_url(redis_server)
        try:
            now_us = outs[-1].now_us
            start = schema.window_start_us(now_us, 2000)
            assert r.zcount(schema.counter_key(key), f"({start}", "+inf") == 4
            scores = [int(s) for _, s in r.zrange(schema.counter_key(key), 0, -1, withscores=True)]
            assert scores == sorted(o.now_us for o in outs)
            meta = {k.decode(): v.decode() for k, v in r.hgetall(schema.meta_key(key)).items()}
            assert meta["limit"] == "10" and meta["window_ms"] == "2000" and int(meta["last_us"]) == now_us
            assert 0 < r.pttl(schema.counter_key(key)) <= 3000
            seconds, micros = r.time()
            assert abs(seconds * 1_000_000 + micros - now_us) < 60_000_000  # Redis's clock, not a pinned one
        finally:
            r.close()
    finally:
        await store.close()


async def test_counters_page_and_reset(redis_server):
    store = RedisStore(redis_server)
    prefix = unique_key("page")
    keys = [f"{prefix}:{i}" for i in range(25)]
    try:
        for i, key in enumerate(keys):
            for _ in range(i % 3 + 1):
                await store.check(key, 50, 60_000, 100, 1000, "t")
        seen: dict[str, int] = {}
        cursor, pages = 0, 0
        while True:
            cursor, rows, _ = await store.counters_page(cursor, 10, 100, 1000)
            pages += 1
            for row in rows:
                seen[row["key"]] = row["count"]
            if cursor == 0:
                break
            assert pages < 100
        mine = {k: v for k, v in seen.items() if k.startswith(prefix)}
        assert mine == {k: i % 3 + 1 for i, k in enumerate(keys)}
        assert await store.reset(keys[2]) == 3
        assert await store.reset(keys[2]) == 0
    finally:
        await store.close()


def test_schema_node_state_and_key_rules():
    info = {"ttl_ms": 1000, "draining": False}
    assert schema.node_state(info, 10_000, 10_500) == "up"
    assert schema.node_state(info, 10_000, 11_001) == "down"
    assert schema.node_state({**info, "draining": True}, 10_000, 10_500) == "draining"
    assert schema.node_state({**info, "stopped": True}, 10_000, 10_000) == "down"
    assert schema.node_state(info, None, 10_000) == "down"
    rows = schema.registry_rows({b"a": b"{not json", b"b": b'{"ttl_ms": 1000}'}, {b"b": b"100"}, 200)
    assert [(r["id"], r["state"]) for r in rows] == [("a", "down"), ("b", "up")]
    assert "error" in rows[0]
    assert schema.key_problem("ok:key") is None
    for bad in ("", "   ", "x" * 257, "a\nb", 5):
        assert schema.key_problem(bad)
