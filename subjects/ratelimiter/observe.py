"""One observation of the rate limiter: every node, Redis itself, and the counters of active keys.

Per tick, in this order (the order is what makes the counts exact):

1. Redis, directly (never through a node): one MULTI with ``TIME``, the node registry and, for
   the keys the nodes reported last tick, each key's log entries in the widest window any node
   uses, its meta and its configured limit. Atomic, so every count is taken at one instant T of
   Redis's clock. Beside it: the PING round trip, ``INFO`` (memory, clients) and a script probe (a
   no-op ``EVAL``: it stalls while Redis pauses writes, when PING still answers).
2. Every node known from the lab, the configured URLs and the registry, concurrently, with short
   timeouts: ``/api/stats?at_ms=T`` and ``/metrics``. A node that does not answer is ``down`` (or
   ``removed`` when it stopped cleanly and nobody expects it), never dropped.
3. Per key and node: the node's admissions in its window ending at T against the entries Redis
   holds that this node wrote (a log member names its node: `schema.member_node`). Admissions a
   node made that Redis never recorded came from its local cache or from failing open.

Observation failure (neither Redis nor any node answers) is ``reachable=False`` with the reason,
never an exception and never "all clear"; the nodes are then reported as unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from subjects import promtext
from subjects.base import Node, NodeState, Observation, Workload, utcnow
from subjects.ratelimiter.service import schema
from subjects.ratelimiter.stats_body import StatsBodyError, read_stats

LATENCY_FAMILY = "ratelimiter_check_latency_seconds"
MEMBER_CAP = 5000  # keys whose window holds more entries are counted, not attributed per node
NO_SCRIPT = "return 1"


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile (linear within a bucket) of cumulative (upper bound, count) pairs."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def histogram(text: str) -> tuple[list[tuple[float, float]], float]:
    """The check-latency histogram of one node's /metrics: cumulative buckets (seconds) and count."""
    buckets: dict[float, float] = {}
    count = 0.0
    for name, labels, value in promtext.parse(text, (LATENCY_FAMILY,)):
        if name == f"{LATENCY_FAMILY}_bucket":
            le = labels.get("le", "")
            bound = float("inf") if le in ("+Inf", "Inf") else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + value
        elif name == f"{LATENCY_FAMILY}_count":
            count += value
    return sorted(buckets.items()), count


def _bucket_delta(now: list[tuple[float, float]], then: list[tuple[float, float]]) -> list[tuple[float, float]]:
    before = dict(then)
    return [(b, max(0.0, c - before.get(b, 0.0))) for b, c in now]


def _merge(parts: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    total: dict[float, float] = {}
    for part in parts:
        for b, c in part:
            total[b] = total.get(b, 0.0) + c
    return sorted(total.items())


def _why(e: BaseException, timeout: float) -> str:
    if isinstance(e, httpx.ConnectError):
        if _refused(e):
            return "connection refused (nothing listens: the process is gone)"
        return f"cannot connect: {e}"
    if isinstance(e, httpx.ConnectTimeout):
        return f"connect timed out after {timeout:g} s"
    if isinstance(e, httpx.TimeoutException):
        return f"timed out after {timeout:g} s (the process accepts connections but does not answer: hung or paused)"
    if isinstance(e, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(e, httpx.HTTPStatusError):
        return f"{e.request.url.path} answered HTTP {e.response.status_code}"
    if isinstance(e, ValueError):  # a body that is not JSON
        return f"answered with a body that is not JSON: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _refused(e: BaseException) -> bool:
    """Whether a connect error was a refusal (the cause chain holds ECONNREFUSED)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError) or "refused" in str(cur).lower():
            return True
        for inner in getattr(cur, "exceptions", ()) or ():  # an ExceptionGroup of connect attempts
            if _refused(inner):
                return True
        cur = cur.__cause__ or cur.__context__
    return False


def _redis_why(e: BaseException, timeout: float) -> str:
    if isinstance(e, TimeoutError) or "Timeout" in type(e).__name__:
        return f"timed out after {timeout:g} s"
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@dataclass
class Target:
    """A node we know of, from the lab, the configured URLs and/or the registry."""

    id: str
    url: str | None
    sources: set[str] = field(default_factory=set)
    registry: dict[str, Any] | None = None


@dataclass
class RedisView:
    ok: bool = False
    error: str | None = None
    now_us: int | None = None
    registry: list[dict[str, Any]] = field(default_factory=list)
    registry_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    ping_ms: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    writes: str = "unknown"  # ok | stalled | error | unknown
    write_error: str | None = None
    script_ms: float | None = None


@dataclass
class NodeReply:
    target: Target
    stats: dict[str, Any] | None = None
    metrics_text: str | None = None
    metrics_error: str | None = None  # the node answered, but its /metrics could not be had
    error: str | None = None
    probe_ms: float = 0.0


class RateLimiterObserver:
    def __init__(self, *, nodes: list[str], redis_url: str | None, lab: Any = None, probe_timeout: float = 1.0,
                 max_keys: int = 200, latency_window_s: float = 5.0):
        self.configured = [u.rstrip("/") for u in nodes]
        self.redis_url = redis_url
        self.lab = lab
        self.probe_timeout = probe_timeout
        self.max_keys = max_keys
        self.latency_window_s = latency_window_s
        self.http = httpx.AsyncClient(timeout=probe_timeout, limits=httpx.Limits(max_connections=64,
                                                                                 max_keepalive_connections=32))
        self._redis: aioredis.Redis | None = None
        self._redis_for: str | None = None
        self._keys: dict[str, dict[str, int]] = {}  # key -> {"window_ms", "count"} from the last tick
        self._urls: dict[str, str] = {}  # node id -> URL, every one ever seen
        self._last_nodes: list[Node] = []
        self._counters: dict[str, tuple[float, int, dict[str, float]]] = {}  # node -> (mono, started, checks)
        self._latency: dict[str, deque[tuple[float, int, list[tuple[float, float]]]]] = {}
        self._quiet: dict[str, float] = {}  # key -> monotonic time until which its counts are settling
        self.latest: Observation | None = None

    # -- what to watch ------------------------------------------------------------------------

    def current_redis_url(self) -> str | None:
        if self.redis_url or self.lab is None:
            return self.redis_url
        try:
            return self.lab.redis_url()  # re-read: the lab may have been restarted on other ports
        except Exception:
            return self._redis_for

    def lab_nodes(self) -> dict[str, str]:
        if self.lab is None:
            return {}
        try:
            return self.lab.node_urls()
        except Exception:
            return {}

    def node_url(self, node_id: str) -> str | None:
        """The URL of a node by id (lab first, then whatever observation last saw)."""
        return self.lab_nodes().get(node_id) or self._urls.get(node_id)

    def quiet(self, key: str, seconds: float) -> None:
        """Our own change to a key (reset, new limit): its counts disagree by design for a window."""
        self._quiet[key] = max(self._quiet.get(key, 0.0), time.monotonic() + seconds)

    def _targets(self, registry: list[dict[str, Any]]) -> list[Target]:
        by_id: dict[str, Target] = {}
        by_url: dict[str, Target] = {}
        placeholders: set[str] = set()  # targets named by their address until their id is known

        def add(node_id: str | None, url: str | None, source: str, row: dict[str, Any] | None = None) -> None:
            url = url.rstrip("/") if url else None
            t = (by_id.get(node_id) if node_id else None) or (by_url.get(url) if url else None)
            if t is None:
                known = next((i for i, u in self._urls.items() if url and u == url), None)
                t = Target(id=node_id or known or (urlsplit(url).netloc if url else "?"), url=url)
                if not (node_id or known):
                    placeholders.add(t.id)
                by_id[t.id] = t
            elif node_id and t.id in placeholders:
                # The registry names a node we only knew by address: one node, under its own id.
                placeholders.discard(t.id)
                del by_id[t.id]
                t.id = node_id
                by_id[node_id] = t
            if url and not t.url:
                t.url = url
            if url:
                by_url[url] = t
            if row is not None:
                t.registry = row
            t.sources.add(source)

        for node_id, url in self.lab_nodes().items():
            add(node_id, url, "lab")
        for url in self.configured:
            add(None, url, "config")
        for row in registry:
            add(str(row.get("id")), row.get("url"), "registry", row)
        for node_id, url in self._urls.items():  # a node seen once stays watched
            if node_id not in by_id and url.rstrip("/") not in by_url:
                add(node_id, url, "seen")
        return sorted(by_id.values(), key=lambda t: t.id)

    # -- Redis --------------------------------------------------------------------------------

    def _client(self, url: str) -> aioredis.Redis:
        if self._redis is None or self._redis_for != url:
            if self._redis is not None:
                old = self._redis
                asyncio.get_running_loop().create_task(old.aclose())
            t = self.probe_timeout
            self._redis = aioredis.Redis.from_url(url, socket_timeout=t, socket_connect_timeout=t,
                                                  retry=Retry(NoBackoff(), 0), max_connections=16)
            self._redis_for = url
        return self._redis

    async def _read_redis(self, url: str) -> RedisView:
        view = RedisView()
        client = self._client(url)
        keys = list(self._keys.items())
        limit = self.probe_timeout * 2
        try:
            t0 = time.perf_counter()
            await asyncio.wait_for(client.ping(), limit)
            view.ping_ms = (time.perf_counter() - t0) * 1000
            async with client.pipeline(transaction=True) as pipe:
                pipe.time()
                pipe.hgetall(schema.NODES_KEY)
                pipe.hgetall(schema.HEARTBEATS_KEY)
                for key, known in keys:
                    pipe.hmget(schema.meta_key(key), ["limit", "window_ms"])
                    pipe.hmget(schema.limit_key(key), ["limit", "window_ms"])
                    pipe.zcard(schema.counter_key(key))
                    if known.get("count", 0) <= MEMBER_CAP:
                        # The newest entries with their scores; which fall in a window ending at TIME
                        # (read in this same transaction) is decided per node below.
                        pipe.zrevrangebyscore(schema.counter_key(key), "+inf", "-inf", start=0, num=MEMBER_CAP,
                                              withscores=True)
                    else:
                        pipe.zcard(schema.counter_key(key))
                raw = await asyncio.wait_for(pipe.execute(), limit)
            info = await asyncio.wait_for(client.info(), limit)
        except (RedisError, OSError, TimeoutError) as e:
            view.error = _redis_why(e, limit)
            return view
        view.ok = True
        seconds, micros = raw[0]
        view.now_us = int(seconds) * 1_000_000 + int(micros)
        now_ms = view.now_us // 1000
        infos, beats = raw[1], raw[2]
        view.registry = schema.registry_rows(infos, beats, now_ms)
        for node_id, text in infos.items():
            with contextlib.suppress(ValueError, TypeError):
                parsed = json.loads(text)
                if isinstance(parsed, dict):
                    view.registry_info[_text(node_id)] = parsed
        for i, (key, _known) in enumerate(keys):
            meta, configured, card, entries = raw[3 + 4 * i: 7 + 4 * i]
            whole = not isinstance(entries, int) and len(entries) >= int(card)
            view.keys[key] = {
                "meta_limit": _int(meta[0]), "meta_window_ms": _int(meta[1]),
                "configured_limit": _int(configured[0]), "configured_window_ms": _int(configured[1]),
                "card": int(card),
                # None: too many to read, so per-node attribution is not possible for this key.
                "entries": [(_text(m), int(sc)) for m, sc in entries] if whole else None,
            }
        view.info = {k: info.get(k) for k in ("used_memory", "maxmemory", "connected_clients", "blocked_clients",
                                              "redis_version", "uptime_in_seconds", "role")}
        return view

    async def _probe_writes(self, url: str, view: RedisView) -> None:
        """A no-op script: Redis runs it unless it pauses writes (CLIENT PAUSE WRITE, failover)."""
        if not view.ok:
            return
        client = self._client(url)
        limit = min(self.probe_timeout, 1.0)
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(client.eval(NO_SCRIPT, 0), limit)
        except (RedisError, OSError, TimeoutError) as e:
            timed_out = isinstance(e, TimeoutError) or "Timeout" in type(e).__name__
            view.writes = "stalled" if timed_out else "error"
            view.write_error = ("a no-op script did not run within "
                                f"{limit:g} s while PING answers: Redis is pausing writes") if timed_out \
                else _redis_why(e, limit)
            return
        view.writes = "ok"
        view.script_ms = (time.perf_counter() - t0) * 1000

    # -- nodes --------------------------------------------------------------------------------

    async def _ask(self, target: Target, at_ms: int | None) -> NodeReply:
        reply = NodeReply(target=target)
        if not target.url:
            reply.error = "no URL known for this node"
            return reply
        t0 = time.perf_counter()
        query = f"?at_ms={at_ms}" if at_ms is not None else ""
        for attempt in (1, 2):
            try:
                stats, metrics = await asyncio.gather(self.http.get(f"{target.url}/api/stats{query}"),
                                                      self.http.get(f"{target.url}/metrics"))
                stats.raise_for_status()
                reply.stats = read_stats(stats.json())
                if metrics.status_code == 200:
                    reply.metrics_text = metrics.text
                else:
                    reply.metrics_error = f"GET /metrics answered HTTP {metrics.status_code}"
                reply.error = None
                break
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
                # A kept-alive connection to a process that just died: ask once more on a fresh one,
                # which tells a refused port (gone) from a silent one (hung).
                reply.error = _why(e, self.probe_timeout)
                if attempt == 2:
                    break
            except StatsBodyError as e:
                reply.error = str(e)
                break
            except (httpx.HTTPError, ValueError) as e:
                reply.error = _why(e, self.probe_timeout)
                break
        reply.probe_ms = (time.perf_counter() - t0) * 1000
        return reply

    # -- the observation ----------------------------------------------------------------------

    async def aclose(self) -> None:
        await self.http.aclose()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    async def observe(self) -> Observation:
        t0 = time.monotonic()
        at = utcnow()
        try:
            obs = await self._observe(t0)
        except Exception as e:  # a bug here must read as "cannot tell", never as "all clear"
            obs = self._unreachable(f"observation failed: {type(e).__name__}: {e}", {})
        obs.at, obs.monotonic = at, t0
        obs.duration_ms = (time.monotonic() - t0) * 1000
        if obs.reachable:
            self._last_nodes = obs.nodes
        self.latest = obs
        return obs

    def _unreachable(self, error: str, details: dict[str, Any]) -> Observation:
        nodes = [n.model_copy(update={"state": NodeState.unknown,
                                      "state_detail": "not answering, nor is Redis: cannot tell whether it or the "
                                                      "network to it failed"})
                 for n in self._last_nodes]
        return Observation(subject="ratelimiter", reachable=False, error=error, nodes=nodes, details=details)

    async def _observe(self, t0: float) -> Observation:
        self._unread: dict[str, str] = {}  # node id -> why its metrics could not be read this time
        url = self.current_redis_url()
        view = await self._read_redis(url) if url else RedisView(error="no Redis URL configured")
        targets = self._targets(view.registry)
        at_ms = view.now_us // 1000 if view.now_us is not None else None
        probe = asyncio.create_task(self._probe_writes(url, view)) if url else None
        replies = await asyncio.gather(*(self._ask(t, at_ms) for t in targets))
        if probe is not None:
            await probe
        now = time.monotonic()
        answering = [r for r in replies if r.stats is not None]
        details: dict[str, Any] = {
            "redis_url": url,
            "lab_dir": str(self.lab.run_dir) if self.lab is not None else None,
            "redis": {"reachable": view.ok, "error": view.error, "ping_ms": _r(view.ping_ms),
                      "writes": view.writes if view.ok else "unknown", "write_error": view.write_error,
                      "script_ms": _r(view.script_ms), "now_ms": at_ms},
            "exact": at_ms is not None,
            "latency_window_s": self.latency_window_s,
        }
        if not view.ok and not answering:
            n = len(targets)
            return self._unreachable(
                f"Redis ({url or 'no URL'}) does not answer ({view.error}) and none of {n} known node"
                f"{'s' if n != 1 else ''} answers" + (f" ({replies[0].error})" if replies else ""), details)

        nodes: list[Node] = []
        expected = {"lab", "config"}
        for reply in replies:
            t = reply.target
            if reply.stats is not None:
                node_id = str(reply.stats.get("node_id") or t.id)
                # One URL, one node: forget the address it was known by before it said its id.
                self._urls = {i: u for i, u in self._urls.items() if u != t.url or i == node_id}
                self._urls[node_id] = t.url or ""
                nodes.append(self._node_up(node_id, reply, view, now))
            else:
                if t.url:
                    self._urls.setdefault(t.id, t.url)
                nodes.append(self._node_down(t, reply, expected, registry_read=view.ok))
        nodes.append(self._redis_node(url, view))

        keys = self._keys_view(answering, view, at_ms, now)
        details["keys"] = keys
        details["keys_tracked"] = len(keys)
        details["registry"] = view.registry
        details["nodes_answering"] = len(answering)
        if self._unread:
            details["metrics_missing"] = dict(self._unread)
        details["nodes_known"] = len(targets)
        details["quiet_keys"] = sorted(k for k, until in self._quiet.items() if until > now)
        self._quiet = {k: u for k, u in self._quiet.items() if u > now}

        qps = [n.metrics["qps"] for n in nodes if n.kind == "node" and "qps" in n.metrics]
        closed = [n.metrics.get("fail_closed_qps", 0.0) for n in nodes if n.kind == "node" and "qps" in n.metrics]
        total = sum(qps)
        p99 = self._cluster_p99(now, {n.id for n in nodes if n.kind == "node" and n.metrics.get("probe_ok") == 1})
        workload = Workload(qps=round(total, 2) if qps else None,
                            error_rate=round(sum(closed) / total, 4) if qps and total > 0 else (0.0 if qps else None),
                            p99_ms=p99)
        metrics = {"nodes": float(sum(1 for n in nodes if n.kind == "node")),
                   "nodes_answering": float(len(answering)),
                   "keys_tracked": float(len(keys))}
        return Observation(subject="ratelimiter", nodes=nodes, metrics=metrics, workload=workload, details=details)

    # -- nodes in the observation -------------------------------------------------------------

    def _node_up(self, node_id: str, reply: NodeReply, view: RedisView, now: float) -> Node:
        s = reply.stats or {}
        cache = s.get("cache") or {}
        checks = {k: float(v) for k, v in (s.get("checks") or {}).items()}
        started = int(s.get("started_ms") or 0)
        values: dict[str, float] = {
            "probe_ok": 1.0,
            "probe_ms": round(reply.probe_ms, 2),
            "redis_ok": 1.0 if s.get("redis_ok") else 0.0,
            "fail_open": 1.0 if s.get("fail_mode") == "open" else 0.0,
            "cache_ttl_ms": float(cache.get("ttl_ms") or 0),
            "cache_entries": float(cache.get("entries") or 0),
            "draining": 1.0 if s.get("draining") else 0.0,
            "keys_tracked": float(len(s.get("keys") or {})),
            "allowed_fail_open_total": checks.get("allowed_fail_open", 0.0),
            "denied_fail_closed_total": checks.get("denied_fail_closed", 0.0),
        }
        prev = self._counters.get(node_id)
        if prev is not None and prev[1] == started and now > prev[0]:
            dt = now - prev[0]
            delta = {k: max(0.0, v - prev[2].get(k, 0.0)) for k, v in checks.items()}
            values["qps"] = round(sum(delta.values()) / dt, 2)
            values["allowed_qps"] = round((delta.get("allowed", 0.0) + delta.get("allowed_fail_open", 0.0)) / dt, 2)
            values["fail_open_qps"] = round(delta.get("allowed_fail_open", 0.0) / dt, 2)
            values["fail_closed_qps"] = round(delta.get("denied_fail_closed", 0.0) / dt, 2)
        self._counters[node_id] = (now, started, checks)
        if reply.metrics_text is not None:
            try:
                p99, samples = self._node_p99(node_id, reply.metrics_text, started, now)
            except ValueError as e:  # promtext.ParseError, or a bucket bound that is not a number
                self._unread[node_id] = f"its /metrics is unreadable: {e}"
                p99, samples = None, 0.0
            values["latency_samples"] = float(samples)
            if p99 is not None:
                values["p99_ms"] = p99
        elif reply.metrics_error:
            self._unread[node_id] = reply.metrics_error
        row = next((r for r in view.registry if r.get("id") == node_id), None)
        if row is not None and row.get("heartbeat_age_ms") is not None:
            values["heartbeat_age_ms"] = float(row["heartbeat_age_ms"])
        labels = {"fail_mode": str(s.get("fail_mode")),
                  "cache": f"on, ttl {int(cache.get('ttl_ms') or 0)} ms" if cache.get("enabled") else "off",
                  "draining": "yes" if s.get("draining") else "no"}
        if row is not None:
            labels["registry"] = str(row.get("state"))
        if s.get("pid"):
            labels["pid"] = str(s["pid"])
        if not s.get("redis_ok"):
            state, detail = NodeState.degraded, f"cannot reach Redis: {s.get('redis_error') or 'unknown error'}"
        elif s.get("draining"):
            state, detail = NodeState.degraded, "draining (routers send it no traffic)"
        else:
            state, detail = NodeState.up, "serving"
        return Node(id=node_id, kind="node", name=f"node {node_id}", address=str(s.get("address") or ""),
                    state=state, state_detail=detail, role="limiter", labels=labels, metrics=values)

    def _node_down(self, t: Target, reply: NodeReply, expected: set[str], registry_read: bool) -> Node:
        row = t.registry or {}
        labels = {"sources": ",".join(sorted(t.sources))}
        if row:
            labels["registry"] = str(row.get("state"))
        values = {"probe_ok": 0.0, "probe_ms": round(reply.probe_ms, 2)}
        if row.get("heartbeat_age_ms") is not None:
            values["heartbeat_age_ms"] = float(row["heartbeat_age_ms"])
        self._counters.pop(t.id, None)
        self._latency.pop(t.id, None)
        address = urlsplit(t.url).netloc if t.url else str(row.get("address") or "")
        if row.get("stopped") and not (t.sources & expected):
            return Node(id=t.id, kind="node", name=f"node {t.id}", address=address, state=NodeState.removed,
                        state_detail="stopped cleanly (registry) and not expected by the lab or configuration",
                        role="limiter", labels=labels, metrics=values)
        if t.sources == {"seen"} and registry_read:
            return Node(id=t.id, kind="node", name=f"node {t.id}", address=address, state=NodeState.removed,
                        state_detail="taken out of the registry, and not expected by the lab or configuration",
                        role="limiter", labels=labels, metrics=values)
        detail = f"not answering: {reply.error}"
        if row.get("stopped"):
            detail += "; it stopped cleanly (registry)"
        return Node(id=t.id, kind="node", name=f"node {t.id}", address=address, state=NodeState.down,
                    state_detail=detail, role="limiter", labels=labels, metrics=values)

    def _redis_node(self, url: str | None, view: RedisView) -> Node:
        address = urlsplit(url).netloc if url else ""
        values: dict[str, float] = {"probe_ok": 1.0 if view.ok else 0.0}
        if view.ping_ms is not None:
            values["ping_ms"] = round(view.ping_ms, 3)
        if view.script_ms is not None:
            values["script_ms"] = round(view.script_ms, 3)
        for src, dst in (("used_memory", "used_memory_bytes"), ("maxmemory", "maxmemory_bytes"),
                         ("connected_clients", "connected_clients"), ("blocked_clients", "blocked_clients")):
            if view.info.get(src) is not None:
                values[dst] = float(view.info[src])
        labels = {k: str(view.info[k]) for k in ("redis_version", "role") if view.info.get(k) is not None}
        if not view.ok:
            state, detail = NodeState.down, f"not answering: {view.error}"
        elif view.writes == "stalled":
            state, detail = NodeState.degraded, f"writes stalled: {view.write_error}"
        elif view.writes == "error":
            state, detail = NodeState.degraded, f"scripts fail: {view.write_error}"
        else:
            state, detail = NodeState.up, "serving"
        return Node(id="redis", kind="redis", name="redis", address=address, state=state, state_detail=detail,
                    role="counter store", labels=labels, metrics=values)

    # -- latency ------------------------------------------------------------------------------

    def _node_p99(self, node_id: str, text: str, started: int, now: float) -> tuple[float | None, float]:
        """Raises ValueError (promtext.ParseError among them) when the page cannot be read."""
        buckets, _count = histogram(text)
        ring = self._latency.setdefault(node_id, deque())
        if ring and ring[-1][1] != started:
            ring.clear()  # restarted: its counters began again
        ring.append((now, started, buckets))
        while len(ring) > 2 and now - ring[1][0] >= self.latency_window_s:
            ring.popleft()
        if len(ring) < 2:
            return None, 0.0
        delta = _bucket_delta(buckets, ring[0][2])
        samples = delta[-1][1] if delta else 0.0
        value = quantile(0.99, delta)
        return (None if value is None else round(value * 1000, 2)), samples

    def _cluster_p99(self, now: float, live: set[str]) -> float | None:
        parts = []
        for node_id, ring in self._latency.items():
            if node_id in live and len(ring) >= 2:
                parts.append(_bucket_delta(ring[-1][2], ring[0][2]))
        merged = _merge(parts)
        value = quantile(0.99, merged)
        return None if value is None else round(value * 1000, 2)

    # -- counters -----------------------------------------------------------------------------

    def _keys_view(self, answering: list[NodeReply], view: RedisView, at_ms: int | None,
                   now: float) -> dict[str, dict[str, Any]]:
        per_key: dict[str, dict[str, dict[str, Any]]] = {}
        for reply in answering:
            node_id = str(reply.stats.get("node_id") or reply.target.id)
            for key, k in (reply.stats.get("keys") or {}).items():
                per_key.setdefault(key, {})[node_id] = k
        activity = {key: sum(int(v.get("admitted_in_window") or 0) for v in nodes.values())
                    for key, nodes in per_key.items()}
        chosen = sorted(per_key, key=lambda k: (-activity[k], k))[: self.max_keys]
        out: dict[str, dict[str, Any]] = {}
        next_keys: dict[str, dict[str, int]] = {}
        for key in chosen:
            nodes = per_key[key]
            redis_key = view.keys.get(key)
            windows = [int(v.get("window_ms") or 0) for v in nodes.values()]
            limits = [int(v.get("limit") or 0) for v in nodes.values() if v.get("limit")]
            record: dict[str, Any] = {"nodes": {}, "exact": at_ms is not None and redis_key is not None}
            meta_window = redis_key["meta_window_ms"] if redis_key else None
            if redis_key is not None:
                if redis_key["meta_limit"]:
                    limits.append(redis_key["meta_limit"])
                if redis_key["meta_window_ms"]:
                    windows.append(redis_key["meta_window_ms"])
                record["configured_limit"] = redis_key["configured_limit"]
            window = max(windows) if windows else 0
            limit = max(limits) if limits else None
            record.update({"limit": limit, "limits_seen": sorted(set(limits)), "window_ms": window})
            entries = redis_key.get("entries") if redis_key else None
            end_us = at_ms * 1000 if at_ms is not None else None
            if redis_key is not None and end_us is not None:
                if entries is not None:
                    record["redis_count"] = sum(1 for _m, sc in entries
                                                if end_us - window * 1000 < sc <= end_us)
                else:
                    record["redis_count"] = None  # too many entries to read whole
            admitted_sum = 0
            attributed = entries is not None and end_us is not None
            for node_id, k in sorted(nodes.items()):
                admitted = int(k.get("admitted_in_window") or 0)
                admitted_sum += admitted
                w = int(k.get("window_ms") or 0)
                item: dict[str, Any] = {"admitted": admitted, "limit": k.get("limit"), "window_ms": w,
                                        "local_count": k.get("local_count")}
                # Checks trim the log to their own window: a node counting over another window than
                # the key's last check cannot be compared entry for entry.
                if attributed and (meta_window is None or w == meta_window):
                    start = end_us - w * 1000
                    recorded = sum(1 for m, sc in entries
                                   if start < sc <= end_us and schema.member_node(m) == node_id)
                    item["recorded"] = recorded
                    item["unrecorded"] = admitted - recorded
                    if k.get("local_count") is not None:
                        item["redis_count"] = sum(1 for _m, sc in entries if start < sc <= end_us)
                record["nodes"][node_id] = item
            record["admitted"] = admitted_sum
            record["over_by"] = max(0, admitted_sum - limit) if limit else 0
            record["attributed"] = attributed
            record["quiet"] = self._quiet.get(key, 0.0) > now
            out[key] = record
            count = redis_key["card"] if redis_key else 0
            next_keys[key] = {"window_ms": window, "count": count}
        self._keys = next_keys
        return out


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
