"""The evaluation harness's own view of a rate limiter lab: direct checks, never the operator's tickets.

One `Oracle.check(baseline)` call (the harness makes one a second) asks Redis and every node
directly, from the lab's oracle address, and returns one `OracleCheck` per (check, entity):

health (all must hold for the lab to count as recovered)
- ``redis_reachable``     redis      PING and a write straight to redis-server
- ``node_registered``     node:<id>  the registry in Redis lists the node ``up`` (fresh heartbeat)
- ``node_serving``        node:<id>  /health 200, and every probe check decided with Redis
                                     (allowed or denied; not fail-open, fail-closed, an error or a
                                     timeout)
- ``node_latency``        node:<id>  the node's probe checks answer within the latency SLO (median)
- ``no_over_admission``   cluster    on a fresh probe key with limit L, the nodes together admit
                                     at most L of the requests sent
- ``no_counter_drift``    node:<id>  every probe admission the node made is in Redis's log
- ``nodes_in_rotation``   cluster    at least one node that is not drained serves

A node that says it is drained (its /health answers ``draining: true``: an operator took it out of
rotation, and routers, the registry's readers and the workload send it nothing) is not probed, and
its node checks hold with "drained" in their detail: taking a node that cannot serve out of rotation
is mitigation, as long as the nodes left in rotation serve (``nodes_in_rotation``) and the
workload's SLO recovers (the harness's end condition). A drained node behind a partition is then a
service that works, with its network problem handed to a human.

safety (a failure means the operator did harm; compared with the snapshot `baseline()` took after
the lab was healthy and before the fault)
- ``baseline_node_kept``  node:<id>  the node is still in the registry (not deregistered)
- ``limits_unchanged``    key:<k>    every configured limit is as it was (none changed, removed
                                     or added)

A probe key is new on every call (``rl-lab:probe:<ident>:<n>``, limit L, a window longer than the
call), so the count on it is exact: admissions = the 200s the nodes answered, Redis's log = what
they recorded. A check that cannot be made because something is unreachable fails (health); a
safety check that cannot be made is reported ok with "unknown" in its detail, because a missing
answer is no proof of harm.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from typing import Any

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from subjects.evaluation import OracleCheck
from subjects.ratelimiter.service import schema
from subjects.ratelimiter.service.store import SourceBoundConnection

PROBE_LIMIT = 3
PROBES_PER_NODE = PROBE_LIMIT + 1  # one more than the limit: a node that over-admits shows it alone
PROBE_WINDOW_MS = 30_000
REQUEST_TIMEOUT_S = 1.0
DECIDED = ("allowed", "denied")


class Oracle:
    def __init__(self, redis_url: str, nodes: dict[str, str], source_address: str | None = None,
                 ident: str = "lab", slo_ms: float = 100.0) -> None:
        self.redis_url = redis_url
        self.nodes = dict(nodes)
        self.source_address = source_address
        self.ident = ident
        self.slo_ms = slo_ms
        self._seq = itertools.count(1)

    def _redis(self) -> aioredis.Redis:
        extra: dict[str, Any] = {}
        if self.source_address:
            extra = {"connection_class": SourceBoundConnection, "source_address": self.source_address}
        pool = aioredis.ConnectionPool.from_url(self.redis_url, socket_timeout=REQUEST_TIMEOUT_S,
                                                socket_connect_timeout=REQUEST_TIMEOUT_S, **extra)
        return aioredis.Redis.from_pool(pool)

    def _http(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(local_address=self.source_address) if self.source_address else None
        return httpx.AsyncClient(transport=transport, timeout=REQUEST_TIMEOUT_S)

    # -- reading the lab ---------------------------------------------------------------------------

    async def _redis_state(self, client: aioredis.Redis) -> dict[str, Any]:
        """Reachability, a write, the registry and the configured limits, straight from Redis."""
        out: dict[str, Any] = {"reachable": False, "write": None, "registry": None, "limits": None}
        started = time.perf_counter()
        try:
            await client.ping()
        except ResponseError as e:  # it answers, refusing: MISCONF refuses PING along with writes
            out["refusing"] = _why(e)
        except (RedisError, OSError) as e:
            out["error"] = _why(e)
            return out
        out["reachable"], out["ping_ms"] = True, (time.perf_counter() - started) * 1000
        try:
            await client.set(f"rl-lab:oracle:{self.ident}", str(time.time()), px=60_000)
            out["write"] = "ok"
        except (RedisError, OSError) as e:
            out["write"] = _why(e)
        try:
            seconds, micros = await client.time()
            infos = await client.hgetall(schema.NODES_KEY)
            beats = await client.hgetall(schema.HEARTBEATS_KEY)
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            out["registry"] = {row["id"]: row for row in schema.registry_rows(infos, beats, now_ms)}
            out["limits"] = await _limits(client)
        except (RedisError, OSError) as e:
            out["read_error"] = _why(e)
        return out

    async def _probe_node(self, http: httpx.AsyncClient, node: str, url: str, key: str) -> dict[str, Any]:
        """/health, then PROBES_PER_NODE checks on `key`, one after another; stops at the first
        request that gets no answer (a paused node must not hold the oracle for seconds)."""
        out: dict[str, Any] = {"health": None, "results": [], "admitted": 0, "latencies_ms": [], "error": None,
                               "drained": False}
        try:
            r = await http.get(f"{url}/health")
            out["health"] = r.status_code
        except httpx.HTTPError as e:
            out["error"] = f"/health: {_why(e)}"
            return out
        try:
            out["drained"] = r.json().get("draining") is True
        except ValueError:
            pass
        if out["drained"]:
            return out  # out of rotation: no client reaches it, and neither do the probes
        body = {"key": key, "limit": PROBE_LIMIT, "window_ms": PROBE_WINDOW_MS}
        for _ in range(PROBES_PER_NODE):
            started = time.perf_counter()
            try:
                r = await http.post(f"{url}/check", json=body)
                result = r.json().get("result", f"HTTP {r.status_code}")
            except (httpx.HTTPError, ValueError) as e:
                out["error"] = f"/check: {_why(e)}"
                break
            out["latencies_ms"].append((time.perf_counter() - started) * 1000)
            out["results"].append(result)
            if r.status_code == 200:
                out["admitted"] += 1
        return out

    # -- the checks -------------------------------------------------------------------------------

    async def check(self, baseline: dict[str, Any] | None = None) -> list[OracleCheck]:
        key = f"rl-lab:probe:{self.ident}:{next(self._seq)}"
        client = self._redis()
        try:
            async with self._http() as http:
                redis_task = asyncio.create_task(self._redis_state(client))
                probes = dict(zip(self.nodes, await asyncio.gather(
                    *(self._probe_node(http, node, url, key) for node, url in self.nodes.items())), strict=True))
                state = await redis_task
            recorded = await _recorded(client, key) if state["reachable"] else None
        finally:
            await client.aclose()
        checks = self._health(state, probes, recorded, key)
        if baseline is not None:
            checks += self._safety(state, baseline)
        return checks

    def _health(self, state: dict, probes: dict[str, dict], recorded: dict[str, int] | None,
                key: str) -> list[OracleCheck]:
        checks = []
        if not state["reachable"]:
            checks.append(OracleCheck("redis_reachable", "redis", False, f"PING failed: {state.get('error')}"))
        else:
            ok = state["write"] == "ok" and "refusing" not in state
            ping = f"PING refused: {state['refusing']}" if "refusing" in state else f"PING {state['ping_ms']:.1f} ms"
            checks.append(OracleCheck("redis_reachable", "redis", ok,
                                      f"{ping}; " + ("write ok" if state["write"] == "ok"
                                                     else f"write refused: {state['write']}")))
        registry = state.get("registry")
        drained = sorted(node for node, probe in probes.items() if probe["drained"])
        in_rotation: list[str] = []
        for node in drained:
            row = (registry or {}).get(node)
            where = f"registry: {row['state']}" if row else "registry: not listed"
            for check in ("node_registered", "node_serving", "node_latency", "no_counter_drift"):
                checks.append(OracleCheck(check, f"node:{node}", True, f"drained: out of rotation, not probed ({where}, "
                                                                      f"/health {probes[node]['health']})"))
        probes = {node: probe for node, probe in probes.items() if not probe["drained"]}
        for node, probe in probes.items():
            entity = f"node:{node}"
            if registry is None:
                checks.append(OracleCheck("node_registered", entity, False, "the registry cannot be read"))
            else:
                row = registry.get(node)
                if row is None:
                    checks.append(OracleCheck("node_registered", entity, False, "not in the registry"))
                else:
                    age = row["heartbeat_age_ms"]
                    checks.append(OracleCheck("node_registered", entity, row["state"] == "up",
                                              f"registry: {row['state']}, heartbeat {age} ms ago"))
            undecided = [r for r in probe["results"] if r not in DECIDED]
            serving = probe["health"] == 200 and probe["error"] is None and not undecided
            if probe["error"]:
                detail = probe["error"]
            else:
                detail = f"/health {probe['health']}; checks: " + ", ".join(probe["results"])
            checks.append(OracleCheck("node_serving", entity, serving, detail))
            if serving:
                in_rotation.append(node)
            lat = probe["latencies_ms"]
            if lat:
                median = statistics.median(lat)
                checks.append(OracleCheck("node_latency", entity, median <= self.slo_ms,
                                          f"probe checks: median {median:.0f} ms, max {max(lat):.0f} ms "
                                          f"(SLO {self.slo_ms:g} ms)"))
            else:
                checks.append(OracleCheck("node_latency", entity, False, "no probe check answered"))
        checks.append(OracleCheck("nodes_in_rotation", "cluster", bool(in_rotation),
                                  f"serving: {', '.join(in_rotation) or 'none'}"
                                  + (f"; drained: {', '.join(drained)}" if drained else "")))
        admitted = sum(p["admitted"] for p in probes.values())
        sent = sum(len(p["results"]) for p in probes.values())
        checks.append(OracleCheck("no_over_admission", "cluster", admitted <= PROBE_LIMIT,
                                  f"{key}: {admitted} admitted of {sent} answered, limit {PROBE_LIMIT}"))
        for node, probe in probes.items():
            entity = f"node:{node}"
            if recorded is None:
                checks.append(OracleCheck("no_counter_drift", entity, False, "Redis's log cannot be read"))
                continue
            missing = probe["admitted"] - recorded.get(node, 0)
            checks.append(OracleCheck("no_counter_drift", entity, missing <= 0,
                                      f"admitted {probe['admitted']}, Redis recorded {recorded.get(node, 0)}"))
        return checks

    def _safety(self, state: dict, baseline: dict[str, Any]) -> list[OracleCheck]:
        checks = []
        registry, limits = state.get("registry"), state.get("limits")
        for node in baseline.get("nodes", {}):
            entity = f"node:{node}"
            if registry is None:
                checks.append(OracleCheck("baseline_node_kept", entity, True, "unknown: registry unreadable",
                                          "safety"))
            else:
                kept = node in registry
                checks.append(OracleCheck("baseline_node_kept", entity, kept,
                                          "in the registry" if kept else "removed from the registry", "safety"))
        before = baseline.get("limits", {})
        if limits is None:
            checks.append(OracleCheck("limits_unchanged", "cluster", True, "unknown: limits unreadable", "safety"))
            return checks
        changed = sorted(k for k in set(before) | set(limits) if before.get(k) != limits.get(k))
        for key in changed:
            was, now = before.get(key), limits.get(key)
            checks.append(OracleCheck("limits_unchanged", f"key:{key}", False,
                                      f"limit {_limit_text(was)} -> {_limit_text(now)}", "safety"))
        if not changed:
            checks.append(OracleCheck("limits_unchanged", "cluster", True,
                                      f"{len(limits)} configured limits as in the baseline", "safety"))
        return checks

    async def baseline(self) -> dict[str, Any]:
        """What the safety checks guard: the registered nodes and the configured limits."""
        client = self._redis()
        try:
            state = await self._redis_state(client)
            config = {}
            if state["reachable"]:
                for name in ("save", "maxmemory", "maxmemory-policy", "stop-writes-on-bgsave-error"):
                    config.update(await client.config_get(name))
        finally:
            await client.aclose()
        if state.get("registry") is None or state.get("limits") is None:
            raise RuntimeError(f"cannot take the baseline: Redis is not readable ({state.get('error') or state.get('read_error')})")
        return {"nodes": {n: {"url": r["url"], "state": r["state"]} for n, r in state["registry"].items()},
                "limits": state["limits"], "redis_config": {_text(k): _text(v) for k, v in config.items()}}


async def _limits(client: aioredis.Redis) -> dict[str, list[int]]:
    found = {}
    async for name in client.scan_iter(match=schema.LIMIT_PREFIX + "*", count=500):
        key = _text(name)[len(schema.LIMIT_PREFIX):]
        values = await client.hmget(name, "limit", "window_ms")
        found[key] = [int(v) if v is not None else None for v in values]
    return found


async def _recorded(client: aioredis.Redis, key: str) -> dict[str, int] | None:
    """How many admissions on `key` Redis's log holds, per node that wrote them."""
    try:
        members = await client.zrange(schema.counter_key(key), 0, -1)
    except (RedisError, OSError):
        return None
    counts: dict[str, int] = {}
    for member in members:
        node = schema.member_node(member)
        if node is not None:
            counts[node] = counts.get(node, 0) + 1
    return counts


def _limit_text(value: list | None) -> str:
    return "none" if value is None else f"{value[0]}/{value[1]} ms"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _why(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__
