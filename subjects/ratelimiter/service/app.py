"""One rate limiter node: its state, its HTTP API, its heartbeat (contract: the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from subjects.ratelimiter.service import models, schema
from subjects.ratelimiter.service.metrics import NodeMetrics
from subjects.ratelimiter.service.models import CheckRequest, ConfigPatch, LimitBody, NodeSettings
from subjects.ratelimiter.service.store import RedisStore
from subjects.ratelimiter.service.tracking import RING, KeyTracker, LatencyWindow, LocalCache, RedisClock

log = logging.getLogger("ratelimiter.node")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# Admissions are recorded on an estimate of Redis's clock; concurrent checks may record them a
# little out of order, so counting walks back this far past the window's start.
ORDER_SLACK_US = 5_000_000


class RedisUnavailable(Exception):
    """A Redis round trip failed; the message says how (already counted and remembered)."""


class Node:
    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.address = settings.advertise or f"{settings.host}:{settings.port}"
        self.url = f"http://{self.address}"
        self.store = RedisStore(settings.redis_url, settings.redis_timeout_ms / 1000,
                                source_address=settings.source_address)
        self.fail_mode: str = settings.fail_mode
        self.cache = LocalCache(settings.cache_ttl_ms)
        self.draining = False
        self.stopped = False
        self.tracker = KeyTracker(settings.max_tracked_keys)
        self.latency = LatencyWindow()
        self.clock = RedisClock()
        self.metrics = NodeMetrics(self.node_id)
        self.checks = dict.fromkeys(schema.CHECK_RESULTS, 0)
        self.redis_ok = False
        self.redis_error: str | None = "no Redis round trip yet"
        self.started_ms = time.time_ns() // 1_000_000
        self._seq = 0
        self._sync_gauges()

    # -- Redis, with the outcome of every round trip remembered --------------------------------

    async def redis(self, call: Callable[[], Awaitable[T]]) -> T:
        # The client's own timeouts cover a silent socket; this one also covers waiting for a
        # pooled connection while every connection is stuck.
        limit = self.settings.redis_timeout_ms / 1000 * 2 + 0.5
        try:
            result = await asyncio.wait_for(call(), timeout=limit)
        except (RedisError, OSError, TimeoutError) as e:
            reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if self.redis_ok or self.redis_error != reason:
                log.warning("redis unavailable: %s", reason)
            self.redis_ok, self.redis_error = False, reason
            self.metrics.redis_errors.labels(self.node_id).inc()
            self.metrics.redis_ok.labels(self.node_id).set(0)
            raise RedisUnavailable(reason) from e
        if not self.redis_ok:
            log.info("redis reachable")
        self.redis_ok, self.redis_error = True, None
        self.metrics.redis_ok.labels(self.node_id).set(1)
        return result

    # -- registry ---------------------------------------------------------------------------------

    def info(self) -> dict:
        return {
            "id": self.node_id,
            "address": self.address,
            "url": self.url,
            "pid": os.getpid(),
            "started_ms": self.started_ms,
            "ttl_ms": self.settings.node_ttl_ms,
            "heartbeat_interval_ms": self.settings.heartbeat_ms,
            "draining": self.draining,
            "fail_mode": self.fail_mode,
            "cache_ttl_ms": self.cache.ttl_ms,
            "stopped": self.stopped,
        }

    async def heartbeat_once(self) -> None:
        ms = await self.redis(lambda: self.store.heartbeat(self.node_id, self.info()))
        self.clock.observe(ms * 1000)

    async def heartbeat_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # A failed beat is remembered in redis_ok/redis_error; the next one tries again.
            with contextlib.suppress(RedisUnavailable):
                await self.heartbeat_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.heartbeat_ms / 1000)

    async def announce_stop(self) -> None:
        """Tell the registry at once that this node is gone (a crash is left to the TTL)."""
        self.stopped = True
        try:
            await self.redis(lambda: self.store.write_info(self.node_id, self.info()))
        except RedisUnavailable:
            log.warning("could not mark the node stopped in the registry; it turns down after its TTL")

    # -- the check --------------------------------------------------------------------------------

    def _token(self) -> str:
        self._seq += 1
        return f"{self.node_id}:{os.getpid()}:{self._seq}"

    def _fallback_limit(self, req: CheckRequest) -> tuple[int, int]:
        known = self.tracker.last_limit(req.key)
        limit = req.limit or (known[0] if known else self.settings.default_limit)
        window_ms = req.window_ms or (known[1] if known else self.settings.default_window_ms)
        return limit, window_ms

    async def check(self, req: CheckRequest) -> dict:
        started = time.perf_counter()
        now_mono = time.monotonic()
        entry = self.cache.fresh(req.key, now_mono) if self.cache.enabled else None
        if (
            entry is not None
            and req.limit in (None, entry.limit)
            and req.window_ms in (None, entry.window_ms)
        ):
            now_us = self.clock.now_us()
            allowed, count, reset_us = self.cache.decide(entry, entry.limit, now_us)
            limit, window_ms = entry.limit, entry.window_ms
            result = "allowed" if allowed else "denied"
            remaining: int | None = max(0, limit - count)
            reset_ms: int | None = -(-reset_us // 1000)
            self.metrics.cache_hits.labels(self.node_id).inc()
        else:
            want_log = self.cache.enabled
            if want_log:
                self.metrics.cache_misses.labels(self.node_id).inc()
            try:
                out = await self.redis(
                    lambda: self.store.check(
                        req.key,
                        req.limit,
                        req.window_ms,
                        self.settings.default_limit,
                        self.settings.default_window_ms,
                        self._token(),
                        want_log=want_log,
                    )
                )
            except RedisUnavailable:
                limit, window_ms = self._fallback_limit(req)
                allowed = self.fail_mode == "open"
                result = "allowed_fail_open" if allowed else "denied_fail_closed"
                remaining, reset_ms, now_us = None, None, self.clock.now_us()
            else:
                self.clock.observe(out.now_us)
                if self.cache.enabled and out.log is not None:
                    self.cache.store(req.key, out.limit, out.window_ms, out.log, now_mono)
                allowed, limit, window_ms, now_us = out.allowed, out.limit, out.window_ms, out.now_us
                result = "allowed" if allowed else "denied"
                remaining, reset_ms = out.remaining, -(-out.reset_us // 1000)
        self.tracker.record(req.key, limit, window_ms, allowed, now_us)
        self.checks[result] += 1
        self.metrics.checks.labels(self.node_id, result).inc()
        elapsed = time.perf_counter() - started
        self.metrics.latency.labels(self.node_id).observe(elapsed)
        self.latency.add(elapsed)
        return {
            "allowed": allowed,
            "key": req.key,
            "limit": limit,
            "window_ms": window_ms,
            "remaining": remaining,
            "reset_ms": reset_ms,
            "node": self.node_id,
            "result": result,
        }

    # -- observation ------------------------------------------------------------------------------

    def stats(self, at_ms: int | None = None) -> dict:
        at_us = at_ms * 1000 if at_ms is not None else self.clock.now_us()
        keys = {}
        for key, st in self.tracker.keys.items():
            start = at_us - st.window_ms * 1000
            admitted = 0
            for t in reversed(st.admissions):
                if t < start - ORDER_SLACK_US:
                    break
                if start < t <= at_us:
                    admitted += 1
            keys[key] = {
                "limit": st.limit,
                "window_ms": st.window_ms,
                "admitted_in_window": admitted,
                "allowed_total": st.allowed_total,
                "denied_total": st.denied_total,
                "local_count": self.cache.local_count(key, at_us) if self.cache.enabled else None,
            }
        return {
            "node_id": self.node_id,
            "address": self.address,
            "url": self.url,
            "pid": os.getpid(),
            "started_ms": self.started_ms,
            "at_ms": at_us // 1000,
            "fail_mode": self.fail_mode,
            "redis_ok": self.redis_ok,
            "redis_error": self.redis_error,
            "draining": self.draining,
            "cache": {
                "enabled": self.cache.enabled,
                "ttl_ms": self.cache.ttl_ms,
                "entries": len(self.cache.entries),
            },
            "keys": keys,
            "checks": dict(self.checks),
            "latency_p99_ms": self.latency.p99_ms(),
            "ring_capacity": RING,
            "max_tracked_keys": self.tracker.max_keys,
        }

    def config(self) -> dict:
        return {
            "node_id": self.node_id,
            "fail_mode": self.fail_mode,
            "cache_ttl_ms": self.cache.ttl_ms,
            "draining": self.draining,
            "default_limit": self.settings.default_limit,
            "default_window_ms": self.settings.default_window_ms,
            "redis_url": self.settings.redis_url,
            "redis_timeout_ms": self.settings.redis_timeout_ms,
        }

    def _sync_gauges(self) -> None:
        self.metrics.draining.labels(self.node_id).set(1 if self.draining else 0)
        self.metrics.fail_open.labels(self.node_id).set(1 if self.fail_mode == "open" else 0)
        self.metrics.cache_ttl.labels(self.node_id).set(self.cache.ttl_ms)

    async def publish(self) -> None:
        """Push a changed drain/fail-mode to the registry now rather than at the next beat."""
        with contextlib.suppress(RedisUnavailable):  # the next beat carries it once Redis is back
            await self.heartbeat_once()


# -- HTTP -------------------------------------------------------------------------------------------


def _error(status: int, message: str, field: str | None = None, **extra) -> web.Response:
    return web.json_response({"error": message, "field": field, **extra}, status=status)


async def _json_object(request: web.Request) -> dict | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(422, "body must be a JSON object", None)
    if not isinstance(body, dict):
        return _error(422, "body must be a JSON object", None)
    return body


def _route_key(request: web.Request) -> str | web.Response:
    key = request.match_info["key"]
    problem = schema.key_problem(key)
    return _error(422, problem, "key") if problem else key


@web.middleware
async def _json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status >= 400 and e.content_type != "application/json":
            return _error(e.status, e.reason)
        raise
    except Exception as e:  # answer, log, keep serving: one bad request must not take the node down
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, f"internal error: {type(e).__name__}: {e}")


async def _validated(request: web.Request, model: type[M]) -> M | web.Response:
    """The JSON body as `model`, or the 422 that says what is wrong with it."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    try:
        return model.model_validate(body)
    except ValidationError as e:
        return web.json_response(models.describe(e), status=422)


def build_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[_json_errors])
    routes = web.RouteTableDef()

    @routes.post("/check")
    async def check(request: web.Request) -> web.Response:
        req = await _validated(request, CheckRequest)
        if isinstance(req, web.Response):
            return req
        out = await node.check(req)
        headers = {"X-RateLimit-Limit": str(out["limit"])}
        if out["remaining"] is not None:
            headers["X-RateLimit-Remaining"] = str(out["remaining"])
        if out["reset_ms"] is not None:
            seconds = -(-out["reset_ms"] // 1000)
            headers["X-RateLimit-Reset"] = str(seconds)
            if not out["allowed"]:
                headers["Retry-After"] = str(max(1, seconds))
        return web.json_response(out, status=200 if out["allowed"] else 429, headers=headers)

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        body = {"node_id": node.node_id, "fail_mode": node.fail_mode, "draining": node.draining}
        try:
            await node.redis(node.store.ping)
        except RedisUnavailable as e:
            return web.json_response(
                {"status": "unavailable", "redis_ok": False, "reason": f"redis unreachable: {e}", **body},
                status=503,
            )
        return web.json_response({"status": "ok", "redis_ok": True, "reason": None, **body})

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        node._sync_gauges()
        return web.Response(
            body=node.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    @routes.get("/api/stats")
    async def stats(request: web.Request) -> web.Response:
        raw = request.query.get("at_ms")
        if raw is not None and not raw.isdigit():
            return _error(422, "at_ms must be a non-negative integer (milliseconds, Redis clock)", "at_ms")
        return web.json_response(node.stats(int(raw) if raw is not None else None))

    @routes.get("/api/nodes")
    async def nodes(request: web.Request) -> web.Response:
        try:
            rows, now_ms = await node.redis(node.store.nodes)
        except RedisUnavailable as e:
            return _error(503, f"cannot read the node registry: redis unreachable: {e}")
        return web.json_response({"nodes": rows, "now_ms": now_ms, "served_by": node.node_id})

    @routes.get("/api/counters")
    async def counters(request: web.Request) -> web.Response:
        cursor_raw = request.query.get("cursor") or "0"
        count_raw = request.query.get("count") or "100"
        if not cursor_raw.isdigit():
            return _error(422, "cursor must be a non-negative integer (from next_cursor)", "cursor")
        if not count_raw.isdigit() or not 1 <= int(count_raw) <= 1000:
            return _error(422, "count must be an integer between 1 and 1000", "count")
        s = node.settings
        try:
            nxt, rows, now_ms = await node.redis(
                lambda: node.store.counters_page(
                    int(cursor_raw), int(count_raw), s.default_limit, s.default_window_ms
                )
            )
        except RedisUnavailable as e:
            return _error(503, f"cannot read counters: redis unreachable: {e}")
        return web.json_response(
            {
                "cursor": cursor_raw,
                "next_cursor": str(nxt) if nxt else None,
                "counters": rows,
                "now_ms": now_ms,
            }
        )

    @routes.post("/api/counters/{key:.+}/reset")
    async def reset(request: web.Request) -> web.Response:
        key = _route_key(request)
        if isinstance(key, web.Response):
            return key
        try:
            removed = await node.redis(lambda: node.store.reset(key))
        except RedisUnavailable as e:
            return _error(503, f"cannot reset {key!r}: redis unreachable: {e}")
        node.cache.flush(key)
        return web.json_response({"key": key, "reset": True, "removed": removed})

    @routes.get("/api/limits/{key:.+}")
    async def get_limit(request: web.Request) -> web.Response:
        key = _route_key(request)
        if isinstance(key, web.Response):
            return key
        try:
            found = await node.redis(lambda: node.store.get_limit(key))
        except RedisUnavailable as e:
            return _error(503, f"cannot read the limit of {key!r}: redis unreachable: {e}")
        if found is None:
            s = node.settings
            return web.json_response(
                {"key": key, "limit": s.default_limit, "window_ms": s.default_window_ms, "source": "default"}
            )
        return web.json_response(
            {"key": key, "limit": found[0], "window_ms": found[1], "source": "configured"}
        )

    @routes.put("/api/limits/{key:.+}")
    async def put_limit(request: web.Request) -> web.Response:
        key = _route_key(request)
        if isinstance(key, web.Response):
            return key
        spec = await _validated(request, LimitBody)
        if isinstance(spec, web.Response):
            return spec
        window_ms = spec.window_ms or node.settings.default_window_ms
        try:
            await node.redis(lambda: node.store.set_limit(key, spec.limit, window_ms))
        except RedisUnavailable as e:
            return _error(503, f"cannot set the limit of {key!r}: redis unreachable: {e}")
        return web.json_response(
            {"key": key, "limit": spec.limit, "window_ms": window_ms, "source": "configured"}
        )

    @routes.delete("/api/limits/{key:.+}")
    async def delete_limit(request: web.Request) -> web.Response:
        key = _route_key(request)
        if isinstance(key, web.Response):
            return key
        try:
            existed = await node.redis(lambda: node.store.delete_limit(key))
        except RedisUnavailable as e:
            return _error(503, f"cannot delete the limit of {key!r}: redis unreachable: {e}")
        return web.json_response({"key": key, "deleted": existed})

    @routes.get("/admin/config")
    async def get_config(request: web.Request) -> web.Response:
        return web.json_response(node.config())

    @routes.post("/admin/config")
    async def set_config(request: web.Request) -> web.Response:
        patch = await _validated(request, ConfigPatch)
        if isinstance(patch, web.Response):
            return patch
        previous = node.config()
        flushed = 0
        if patch.fail_mode is not None:
            node.fail_mode = patch.fail_mode
        if patch.cache_ttl_ms is not None:
            node.cache.ttl_ms = patch.cache_ttl_ms
            if patch.cache_ttl_ms == 0:
                # A disabled cache must not come back later with views that went stale meanwhile.
                flushed = node.cache.flush()
        if node.config() != previous:
            log.info("config changed: fail_mode=%s cache_ttl_ms=%s", node.fail_mode, node.cache.ttl_ms)
        node._sync_gauges()
        await node.publish()
        return web.json_response({"config": node.config(), "previous": previous, "flushed": flushed})

    @routes.post("/admin/cache/flush")
    async def flush(request: web.Request) -> web.Response:
        return web.json_response({"flushed": node.cache.flush(), "cache_ttl_ms": node.cache.ttl_ms})

    async def set_draining(value: bool) -> web.Response:
        previous = node.draining
        node.draining = value
        node._sync_gauges()
        await node.publish()
        return web.json_response({"node_id": node.node_id, "draining": value, "previous": previous})

    @routes.post("/admin/drain")
    async def drain(request: web.Request) -> web.Response:
        return await set_draining(True)

    @routes.post("/admin/undrain")
    async def undrain(request: web.Request) -> web.Response:
        return await set_draining(False)

    app.add_routes(routes)
    return app
