"""The rate limiter node: N stateless HTTP nodes sharing one Redis.

Run one node: ``python -m subjects.ratelimiter.service --node-id n1 --host 127.0.0.1 --port P
--redis redis://127.0.0.1:RP/0 [--fail-mode closed|open] [--local-cache-ms 0]
[--advertise HOST:PORT] [--default-limit 100] [--default-window-ms 1000] [--heartbeat-ms 1000]
[--node-ttl-ms 3000] [--redis-timeout-ms 500] [--max-tracked-keys 1000] [--log-level info]``.
SIGTERM/SIGINT stop it cleanly (it marks itself ``stopped`` in the registry first).

The algorithm is an exact sliding-window log run atomically in Redis (one Lua script, on
Redis's clock): entries at or before now-window leave; the request is admitted and logged iff
fewer than ``limit`` entries remain. Denied requests are not logged. Redis layout and how to read
it directly: `subjects.ratelimiter.service.schema`.

Observation contract (stable; the operator's adapter is built on it)
====================================================================

``POST /check`` body ``{"key": str, "limit"?: int > 0, "window_ms"?: int > 0}`` (unknown fields
rejected). Limit and window each resolve to the request's own, else the key's configured one
(``/api/limits/KEY``), else the node default.
  200 (admitted) / 429 (denied) with ``{"allowed", "key", "limit", "window_ms", "remaining",
  "reset_ms", "node", "result"}``; ``result`` is one of ``allowed``, ``denied``,
  ``allowed_fail_open``, ``denied_fail_closed``. ``reset_ms``: until the oldest entry in the window
  leaves. Headers ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset``
  (seconds until reset, rounded up) and, on 429, ``Retry-After``. When Redis is unreachable the
  node answers by its fail mode; ``remaining`` and ``reset_ms`` are then null and only
  ``X-RateLimit-Limit`` is sent.
  422 ``{"error": str, "field": str | null, "details"?: [{"field", "error"}]}`` for a body that is
  not a JSON object (field null), a missing/empty/non-string/too long (256)/control-character key,
  a non-integer or non-positive limit/window, an unknown field.

``GET /health`` 200 ``{"status": "ok", "redis_ok": true, "reason": null, "node_id", "fail_mode",
"draining"}``; 503 with ``"status": "unavailable"``, ``"redis_ok": false`` and ``"reason"`` when
a Redis PING through the node's own connection fails.

``GET /api/stats[?at_ms=MS]`` -> ``{"node_id", "address" ("host:port"), "url", "pid",
"started_ms", "at_ms", "fail_mode", "redis_ok", "redis_error", "draining",
"cache": {"enabled", "ttl_ms", "entries"}, "keys": {KEY: {"limit", "window_ms",
"admitted_in_window", "allowed_total", "denied_total", "local_count"}}, "checks": {RESULT: n},
"latency_p99_ms", "ring_capacity", "max_tracked_keys"}``.
  - ``keys`` holds the ``max_tracked_keys`` most recently checked keys on THIS node.
  - ``admitted_in_window``: requests this node admitted for the key (any way: Redis, cache,
    fail-open) in the window ending at ``at_ms``, on Redis's clock (estimated between round
    trips). Pass the same ``at_ms`` to every node to sum them exactly; over-admission is
    ``sum over nodes > limit``; drift is ``sum over nodes != ZCOUNT of the key in Redis``.
    Capped at ``ring_capacity`` (4096) per node and key.
  - ``allowed_total`` counts every admission (incl. fail-open), ``denied_total`` every denial
    (incl. fail-closed), since the node started.
  - ``local_count``: the key's count in this node's local cache view, null when the cache is off
    or holds no view of the key.
  - ``checks``: counts by result since start, all four results always present.
  - ``latency_p99_ms``: p99 of /check handling time over the last 60 s (last 2048), or null.
  - ``redis_ok`` / ``redis_error``: outcome of the last Redis round trip (heartbeats make it at
    most ``heartbeat_ms`` old).

``GET /api/nodes`` -> ``{"nodes": [{"id", "address", "url", "state": "up"|"down"|"draining",
"last_heartbeat_ms", "heartbeat_age_ms", "ttl_ms", "draining", "stopped", "fail_mode", "pid",
"started_ms"}], "now_ms", "served_by"}``: every node ever registered, dead ones as ``down``.
503 ``{"error"}`` when this node cannot reach Redis (ask another node, or read Redis directly).

``GET /api/counters?cursor=0&count=100`` (count 1..1000) -> ``{"cursor", "next_cursor" (null when
done), "counters": [{"key", "count", "limit", "window_ms", "configured"}], "now_ms"}``; SCAN
semantics (a key may repeat across pages; iterate until next_cursor is null). ``limit`` and
``window_ms`` are those of the key's last check.

``GET /api/limits/KEY`` -> ``{"key", "limit", "window_ms", "source": "configured"|"default"}``;
``PUT /api/limits/KEY`` ``{"limit", "window_ms"?}`` (window defaults to the node default);
``DELETE /api/limits/KEY`` -> ``{"key", "deleted"}``. ``POST /api/counters/KEY/reset`` ->
``{"key", "reset": true, "removed": n}`` (also drops this node's cached view of KEY).
KEY may contain slashes.

``GET /metrics``: Prometheus text; names in `subjects.ratelimiter.service.metrics`.

Admin (what actions use): ``GET /admin/config`` -> ``{"node_id", "fail_mode", "cache_ttl_ms",
"draining", "default_limit", "default_window_ms", "redis_url", "redis_timeout_ms"}``;
``POST /admin/config`` ``{"fail_mode"?: "closed"|"open", "cache_ttl_ms"?: 0..3600000}`` ->
``{"config", "previous", "flushed"}`` (turning the cache off flushes it);
``POST /admin/cache/flush`` -> ``{"flushed", "cache_ttl_ms"}``; ``POST /admin/drain`` and
``POST /admin/undrain`` -> ``{"node_id", "draining", "previous"}``. A draining node still
answers; the load generator (and any router) stops sending to it. Config lives in the process:
a restarted node starts again from its command line.

Errors on every route are JSON ``{"error", ...}``; 503 when Redis is needed and unreachable.
"""
