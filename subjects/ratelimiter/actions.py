"""What the operator can do to the rate limiter, through the nodes' HTTP API (and the lab's process
control for restarts).

Each action checks its target against a fresh observation, makes the change, then re-reads the
node (or Redis, through another node) until it confirms the effect, and says why when it cannot.
Actions that leave state behind name their undo (drain_node -> undrain_node).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, field_validator

from subjects.base import (
    ActionContext,
    ActionDef,
    ActionFailed,
    ActionOutcome,
    ActionParams,
    Node,
    NodeState,
    Observation,
    Reconciliation,
    RiskTier,
)
from subjects.ratelimiter.service import schema
from subjects.ratelimiter.service.models import MAX_CACHE_TTL_MS, MAX_LIMIT, MAX_WINDOW_MS, NODE_ID_PATTERN

HTTP_TIMEOUT_S = 3.0
POLL_S = 0.2
RESTART_WAIT_S = 30.0
REGISTRY_WAIT_S = 5.0


# -- parameters ---------------------------------------------------------------------------------

class NodeParams(ActionParams):
    node_id: str = Field(pattern=NODE_ID_PATTERN, description="the node's id, as in the node:<id> entity (e.g. n1)")


class FailModeParams(NodeParams):
    mode: Literal["closed", "open"] = Field(description="closed: deny when Redis fails; open: admit when it fails")


class FlushParams(NodeParams):
    disable: bool = Field(False, description="also turn the local cache off (cache_ttl_ms 0), so it cannot "
                                             "drift again")


class CacheTTLParams(NodeParams):
    ttl_ms: int = Field(ge=0, le=MAX_CACHE_TTL_MS, description="local cache TTL in ms; 0 turns the cache off")


class KeyParams(ActionParams):
    key: str = Field(min_length=1, max_length=schema.MAX_KEY_LENGTH, description="the rate-limit key")

    @field_validator("key")
    @classmethod
    def _valid(cls, v: str) -> str:
        problem = schema.key_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class LimitParams(KeyParams):
    limit: int = Field(gt=0, le=MAX_LIMIT, description="requests allowed per window")
    window_ms: int | None = Field(None, gt=0, le=MAX_WINDOW_MS,
                                  description="window length in ms; omitted: the nodes' default window")


# -- HTTP ---------------------------------------------------------------------------------------

class NodeAPI:
    """Calls to the nodes' API with reasons a person can act on."""

    def __init__(self, resolve: Callable[[str], str | None], client: httpx.AsyncClient):
        self.resolve = resolve
        self.client = client

    def url(self, node_id: str) -> str:
        url = self.resolve(node_id)
        if not url:
            raise ActionFailed(f"no URL known for node {node_id}")
        return url

    async def call(self, method: str, url: str, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            r = await self.client.request(method, url, json=body, timeout=HTTP_TIMEOUT_S)
        except httpx.ConnectError as e:
            raise ActionFailed(f"{what}: {url} refuses connections ({e})", retryable=True) from e
        except httpx.TimeoutException as e:
            raise ActionFailed(f"{what}: {url} did not answer within {HTTP_TIMEOUT_S:g} s", retryable=True) from e
        except httpx.HTTPError as e:
            raise ActionFailed(f"{what}: {type(e).__name__}: {e}", retryable=True) from e
        try:
            data = r.json()
        except ValueError:
            data = {"error": r.text[:200]}
        if r.status_code >= 400:
            reason = data.get("error") if isinstance(data, dict) else None
            raise ActionFailed(f"{what}: HTTP {r.status_code}: {reason or r.text[:200]}",
                               retryable=r.status_code >= 500, data={"status": r.status_code})
        return data

    async def config(self, node_id: str, what: str) -> dict[str, Any]:
        return await self.call("GET", f"{self.url(node_id)}/admin/config", what)

    async def set_config(self, node_id: str, what: str, **patch: Any) -> dict[str, Any]:
        return await self.call("POST", f"{self.url(node_id)}/admin/config", what, patch)


# -- helpers over observations ------------------------------------------------------------------

def node_of(obs: Observation, node_id: str) -> Node | None:
    return obs.node(node_id, "node")


def node_problems(obs: Observation, node_id: str, *, must_answer: bool = True) -> list[str]:
    n = node_of(obs, node_id)
    if n is None:
        known = ", ".join(x.id for x in obs.nodes if x.kind == "node") or "none"
        return [f"node {node_id} does not exist (nodes: {known})"]
    if must_answer and n.metrics.get("probe_ok") != 1.0:
        return [f"node {node_id} does not answer ({n.state_detail})"]
    return []


def serving_others(obs: Observation, node_id: str) -> list[Node]:
    return [n for n in obs.nodes if n.kind == "node" and n.id != node_id and n.metrics.get("probe_ok") == 1.0
            and n.metrics.get("redis_ok") == 1.0 and n.metrics.get("draining") != 1.0]


def redis_capable(obs: Observation) -> list[Node]:
    """Nodes that answer and reach Redis: the ones that can carry out a key's change."""
    return [n for n in obs.nodes if n.kind == "node" and n.metrics.get("probe_ok") == 1.0
            and n.metrics.get("redis_ok") == 1.0]


async def _sleep(ctx: ActionContext, seconds: float) -> None:
    await (ctx.sleep or asyncio.sleep)(seconds)


# -- the catalogue ------------------------------------------------------------------------------

class Catalogue:
    """Builds the actions over one subject (node URLs, the latest observation, the lab)."""

    def __init__(self, api: NodeAPI, *, latest: Callable[[], Observation | None], lab: Any = None,
                 quiet: Callable[[str, float], None] = lambda _k, _s: None):
        self.api = api
        self.latest = latest
        self.lab = lab
        self.quiet = quiet

    def build(self) -> list[ActionDef]:
        actions = [self.reset_counter(), self.update_limit(), self.set_fail_mode(), self.flush_local_cache(),
                   self.set_cache_ttl(), self.drain_node(), self.undrain_node()]
        if self.lab is not None:
            actions.append(self.restart_node())
        return actions

    # -- keys -----------------------------------------------------------------------------------

    def _key_nodes(self) -> list[str]:
        obs = self.latest()
        ids = [n.id for n in redis_capable(obs)] if obs is not None else []
        return ids or ([n.id for n in obs.nodes if n.kind == "node"] if obs is not None else [])

    async def _on_some_node(self, what: str, call: Callable[[str], Any]) -> tuple[str, Any]:
        """Run a key's change on the first node that can reach Redis; every refusal is reported."""
        reasons = []
        for node_id in self._key_nodes():
            try:
                return node_id, await call(node_id)
            except ActionFailed as e:
                if not e.retryable:
                    raise
                reasons.append(f"{node_id}: {e.reason}")
        raise ActionFailed(f"{what}: no node could carry it out ({'; '.join(reasons) or 'no node known'})",
                           retryable=True)

    def _window_of(self, key: str) -> float:
        obs = self.latest()
        record = ((obs.details.get("keys") or {}).get(key) or {}) if obs is not None else {}
        return (record.get("window_ms") or 1000) / 1000

    def reset_counter(self) -> ActionDef:
        async def precheck(obs: Observation, p: KeyParams) -> list[str]:
            return [] if redis_capable(obs) else ["no node answers and reaches Redis, so nothing can reset the key"]

        async def execute(p: KeyParams, ctx: ActionContext) -> ActionOutcome:
            what = f"reset the counter of {p.key}"
            # Nodes still remember their admissions for one window: that is not drift.
            self.quiet(p.key, self._window_of(p.key) + 2.0)

            async def on(node_id: str) -> dict[str, Any]:
                return await self.api.call("POST", f"{self.api.url(node_id)}/api/counters/{quote(p.key, safe='')}"
                                                   "/reset", what)

            node_id, out = await self._on_some_node(what, on)
            if not out.get("reset"):
                raise ActionFailed(f"{what}: node {node_id} answered without confirming the reset: {out}")
            return ActionOutcome(detail=f"counter of {p.key} reset through node {node_id}: {out.get('removed', 0)} "
                                        "entries removed from its window", data={"node": node_id, **out})

        async def reconcile(_obs: Observation, p: KeyParams) -> Reconciliation:
            # The log refills with new admissions at once: a reset leaves nothing to check afterwards.
            return Reconciliation(took_effect=None, detail=f"a reset of {p.key} leaves no trace once new checks "
                                                           "refill its log; not re-run")

        return ActionDef(
            "reset_counter", "Forget a key's sliding-window log in Redis (its count starts from 0). Allows up to "
            "one limit's worth of extra requests in the current window.", KeyParams, RiskTier.low, True,
            lambda p: f"key:{p.key}", precheck, execute,
            lambda p: f"POST /api/counters/{quote(p.key, safe='')}/reset", reconcile)

    def update_limit(self) -> ActionDef:
        async def read(p: LimitParams, what: str, node_id: str) -> dict[str, Any]:
            return await self.api.call("GET", f"{self.api.url(node_id)}/api/limits/{quote(p.key, safe='')}", what)

        async def precheck(obs: Observation, p: LimitParams) -> list[str]:
            return [] if redis_capable(obs) else ["no node answers and reaches Redis, so nothing can set the limit"]

        async def execute(p: LimitParams, ctx: ActionContext) -> ActionOutcome:
            what = f"set the limit of {p.key} to {p.limit}"
            before_window = self._window_of(p.key)
            body: dict[str, Any] = {"limit": p.limit}
            if p.window_ms is not None:
                body["window_ms"] = p.window_ms

            async def on(node_id: str) -> dict[str, Any]:
                before = await read(p, what, node_id)
                await self.api.call("PUT", f"{self.api.url(node_id)}/api/limits/{quote(p.key, safe='')}", what, body)
                return before

            node_id, before = await self._on_some_node(what, on)
            self.quiet(p.key, max(before_window, (p.window_ms or 0) / 1000) + 2.0)
            # Confirm through another node when there is one: the limit lives in Redis, not in a node.
            others = [n for n in self._key_nodes() if n != node_id] or [node_id]
            after = await read(p, what, others[0])
            if after.get("limit") != p.limit or (p.window_ms is not None and after.get("window_ms") != p.window_ms) \
                    or after.get("source") != "configured":
                raise ActionFailed(f"{what}: node {others[0]} reads {after}", retryable=True)
            return ActionOutcome(detail=f"{p.key}: limit {before.get('limit')}/{before.get('window_ms')} ms "
                                        f"({before.get('source')}) -> {after['limit']}/{after['window_ms']} ms, "
                                        f"confirmed by node {others[0]}", data={"before": before, "after": after})

        async def reconcile(_obs: Observation, p: LimitParams) -> Reconciliation:
            try:
                _, now = await self._on_some_node("read the limit", lambda n: read(p, "read the limit", n))
            except ActionFailed as e:
                return Reconciliation(took_effect=None, detail=e.reason)
            ok = now.get("limit") == p.limit and (p.window_ms is None or now.get("window_ms") == p.window_ms)
            return Reconciliation(took_effect=ok, detail=f"{p.key}: {now}")

        return ActionDef(
            "update_limit", "Configure a key's limit (and window) in Redis for every node. Raising it admits more "
            "traffic; lowering it denies some.", LimitParams, RiskTier.high, True, lambda p: f"key:{p.key}",
            precheck, execute,
            lambda p: f"PUT /api/limits/{quote(p.key, safe='')} " + json.dumps(
                {"limit": p.limit, **({"window_ms": p.window_ms} if p.window_ms else {})}),
            reconcile)

    # -- one node's config ----------------------------------------------------------------------

    def _config_action(self, name: str, description: str, params: type[NodeParams], risk: RiskTier,
                       patch: Callable[[Any], dict[str, Any]]) -> ActionDef:
        async def precheck(obs: Observation, p: Any) -> list[str]:
            return node_problems(obs, p.node_id)

        async def execute(p: Any, ctx: ActionContext) -> ActionOutcome:
            what = f"{name.replace('_', ' ')} on node {p.node_id}"
            want = patch(p)
            before = await self.api.config(p.node_id, what)
            answer = await self.api.set_config(p.node_id, what, **want)
            after = await self.api.config(p.node_id, what)
            wrong = {k: after.get(k) for k, v in want.items() if after.get(k) != v}
            if wrong:
                raise ActionFailed(f"{what}: the node reports {wrong} after the change", retryable=True)
            changed = {k: f"{before.get(k)} -> {after.get(k)}" for k in want}
            detail = f"node {p.node_id}: " + ", ".join(f"{k} {v}" for k, v in changed.items())
            return ActionOutcome(detail=detail, data={"before": {k: before.get(k) for k in want},
                                                      "after": {k: after.get(k) for k in want},
                                                      "flushed": answer.get("flushed", 0)})

        async def reconcile(_obs: Observation, p: Any) -> Reconciliation:
            try:
                now = await self.api.config(p.node_id, "read the config")
            except ActionFailed as e:
                return Reconciliation(took_effect=None, detail=e.reason)
            want = patch(p)
            ok = all(now.get(k) == v for k, v in want.items())
            return Reconciliation(took_effect=ok, detail=f"node {p.node_id}: " + ", ".join(
                f"{k}={now.get(k)}" for k in want))

        return ActionDef(name, description, params, risk, True, lambda p: f"node:{p.node_id}", precheck, execute,
                         lambda p: f"POST /admin/config {patch(p)} on node {p.node_id}".replace("'", '"'),
                         reconcile)

    def set_fail_mode(self) -> ActionDef:
        return self._config_action(
            "set_fail_mode", "Set what a node does when it cannot reach Redis: closed denies every check "
            "(correct, unavailable), open admits every check (available, unlimited).", FailModeParams,
            RiskTier.high, lambda p: {"fail_mode": p.mode})

    def set_cache_ttl(self) -> ActionDef:
        return self._config_action(
            "set_cache_ttl", "Set a node's local cache TTL (0 turns it off and flushes it). A cache answers checks "
            "without Redis and those admissions are never recorded: on, it over-admits.", CacheTTLParams,
            RiskTier.high, lambda p: {"cache_ttl_ms": p.ttl_ms})

    def flush_local_cache(self) -> ActionDef:
        async def precheck(obs: Observation, p: FlushParams) -> list[str]:
            return node_problems(obs, p.node_id)

        async def execute(p: FlushParams, ctx: ActionContext) -> ActionOutcome:
            what = f"flush the local cache of node {p.node_id}"
            before = await self.api.config(p.node_id, what)
            if p.disable:
                answer = await self.api.set_config(p.node_id, what, cache_ttl_ms=0)
                flushed = int(answer.get("flushed", 0))
            else:
                answer = await self.api.call("POST", f"{self.api.url(p.node_id)}/admin/cache/flush", what)
                flushed = int(answer.get("flushed", 0))
            after = await self.api.config(p.node_id, what)
            if p.disable and after.get("cache_ttl_ms") != 0:
                raise ActionFailed(f"{what}: the node still reports cache_ttl_ms={after.get('cache_ttl_ms')}",
                                   retryable=True)
            if p.disable:
                stats = await self.api.call("GET", f"{self.api.url(p.node_id)}/api/stats", what)
                entries = (stats.get("cache") or {}).get("entries")
                if entries:
                    raise ActionFailed(f"{what}: the cache is off but still holds {entries} entries", retryable=True)
            detail = f"node {p.node_id}: flushed {flushed} cached keys"
            if p.disable:
                detail += f"; local cache off (ttl {before.get('cache_ttl_ms')} -> 0 ms)"
            elif after.get("cache_ttl_ms"):
                detail += f"; the cache stays on (ttl {after.get('cache_ttl_ms')} ms) and refills"
            return ActionOutcome(detail=detail, data={"flushed": flushed, "cache_ttl_ms_before":
                                                      before.get("cache_ttl_ms"),
                                                      "cache_ttl_ms": after.get("cache_ttl_ms")})

        async def reconcile(_obs: Observation, p: FlushParams) -> Reconciliation:
            if not p.disable:
                return Reconciliation(took_effect=None, detail="a flush leaves no trace to check (the cache refills)")
            try:
                now = await self.api.config(p.node_id, "read the config")
            except ActionFailed as e:
                return Reconciliation(took_effect=None, detail=e.reason)
            return Reconciliation(took_effect=now.get("cache_ttl_ms") == 0,
                                  detail=f"node {p.node_id}: cache_ttl_ms={now.get('cache_ttl_ms')}")

        return ActionDef(
            "flush_local_cache", "Drop every key a node holds in its local cache, so its next checks go to Redis; "
            "with disable=true also turn the cache off so it cannot drift again.", FlushParams, RiskTier.low, True,
            lambda p: f"node:{p.node_id}", precheck, execute,
            lambda p: (f'POST /admin/config {{"cache_ttl_ms": 0}} on node {p.node_id}' if p.disable
                       else f"POST /admin/cache/flush on node {p.node_id}"), reconcile)

    # -- routing --------------------------------------------------------------------------------

    async def _registry_state(self, node_id: str, what: str) -> str | None:
        """The node's state in the registry, read through any node that reaches Redis."""
        for other in self._key_nodes():
            try:
                body = await self.api.call("GET", f"{self.api.url(other)}/api/nodes", what)
            except ActionFailed:
                continue
            for row in body.get("nodes", []):
                if row.get("id") == node_id:
                    return row.get("state")
        return None

    def _drain(self, name: str, value: bool) -> ActionDef:
        verb = "drain" if value else "undrain"

        async def precheck(obs: Observation, p: NodeParams) -> list[str]:
            problems = node_problems(obs, p.node_id)
            if value and not problems and not serving_others(obs, p.node_id):
                problems.append(f"no other node serves (answers, reaches Redis, not draining): draining "
                                f"{p.node_id} would leave the service without a node")
            return problems

        async def execute(p: NodeParams, ctx: ActionContext) -> ActionOutcome:
            what = f"{verb} node {p.node_id}"
            answer = await self.api.call("POST", f"{self.api.url(p.node_id)}/admin/{verb}", what)
            after = await self.api.config(p.node_id, what)
            if bool(after.get("draining")) != value:
                raise ActionFailed(f"{what}: the node reports draining={after.get('draining')}", retryable=True)
            # Routers follow the registry: wait until it says so too.
            wanted = "draining" if value else "up"
            state = None
            deadline = time.monotonic() + REGISTRY_WAIT_S
            while time.monotonic() < deadline:
                state = await self._registry_state(p.node_id, what)
                if state == wanted or (value and state == "down"):
                    break
                await _sleep(ctx, POLL_S)
            detail = f"node {p.node_id}: draining {answer.get('previous')} -> {value}"
            if state == wanted:
                detail += f"; the registry lists it {state}"
            elif value and state == "down":
                # It cannot heartbeat (no Redis), so it cannot publish the drain either; routers skip
                # a node listed down all the same, and the drain holds once it heartbeats again.
                detail += "; the registry lists it down (it cannot publish without Redis), so routers skip it"
            else:
                detail += f"; the registry still lists it {state or 'unknown'} (it cannot publish without Redis)"
            return ActionOutcome(detail=detail, data={"previous": answer.get("previous"), "registry": state})

        async def reconcile(_obs: Observation, p: NodeParams) -> Reconciliation:
            try:
                now = await self.api.config(p.node_id, "read the config")
            except ActionFailed as e:
                return Reconciliation(took_effect=None, detail=e.reason)
            return Reconciliation(took_effect=bool(now.get("draining")) == value,
                                  detail=f"node {p.node_id}: draining={now.get('draining')}")

        if value:
            return ActionDef(
                name, "Stop routing traffic to a node (it keeps answering; routers and the load generator skip "
                "draining nodes). Leaves state behind: undo with undrain_node.", NodeParams, RiskTier.high, True,
                lambda p: f"node:{p.node_id}", precheck, execute, lambda p: f"POST /admin/drain on node {p.node_id}",
                reconcile, undo="undrain_node")
        return ActionDef(
            name, "Let a drained node take traffic again.", NodeParams, RiskTier.low, True,
            lambda p: f"node:{p.node_id}", precheck, execute, lambda p: f"POST /admin/undrain on node {p.node_id}",
            reconcile)

    def drain_node(self) -> ActionDef:
        return self._drain("drain_node", True)

    def undrain_node(self) -> ActionDef:
        return self._drain("undrain_node", False)

    # -- processes (lab only) -------------------------------------------------------------------

    def restart_node(self) -> ActionDef:
        lab = self.lab

        async def precheck(obs: Observation, p: NodeParams) -> list[str]:
            try:
                ids = await asyncio.to_thread(lab.node_ids)
            except Exception as e:
                return [f"the lab cannot be read: {e}"]
            if p.node_id not in ids:
                return [f"node {p.node_id} is not a process of this lab (lab nodes: {', '.join(ids)})"]
            return []

        async def execute(p: NodeParams, ctx: ActionContext) -> ActionOutcome:
            what = f"restart node {p.node_id}"
            try:
                before = await asyncio.to_thread(lab.node_process, p.node_id)
                result = await asyncio.to_thread(lab.restart_node, p.node_id)
                after = await asyncio.to_thread(lab.node_process, p.node_id)
            except Exception as e:
                raise ActionFailed(f"{what}: the lab could not: {e}", retryable=True) from e
            url = self.api.url(p.node_id)
            deadline = time.monotonic() + min(RESTART_WAIT_S, ctx.timeout_s * 0.8)
            last = "no answer yet"
            while time.monotonic() < deadline:
                try:
                    stats = await self.api.call("GET", f"{url}/api/stats", what)
                except ActionFailed as e:
                    last = e.reason
                else:
                    if await asyncio.to_thread(lab.answers_as, p.node_id, stats, after):
                        state = "reaches Redis" if stats.get("redis_ok") else \
                            f"does not reach Redis yet ({stats.get('redis_error')})"
                        return ActionOutcome(
                            detail=f"node {p.node_id} {result}: pid {before['pid']} ({before['state']}) -> "
                                   f"{after['pid']}, answering and {state}",
                            data={"before_pid": before["pid"], "pid": after["pid"], "redis_ok": stats.get("redis_ok")})
                    last = f"pid {stats.get('pid')} (started_ms {stats.get('started_ms')}) answers, not the new run"
                ctx.progress(f"waiting for node {p.node_id}: {last}")
                await _sleep(ctx, POLL_S)
            raise ActionFailed(f"{what}: the new process (pid {after['pid']}) does not answer: {last}",
                               retryable=True)

        async def reconcile(obs: Observation, p: NodeParams) -> Reconciliation:
            n = node_of(obs, p.node_id)
            if n is None:
                return Reconciliation(took_effect=None, detail=f"node {p.node_id} is not in the observation")
            ok = n.state != NodeState.down and n.metrics.get("probe_ok") == 1.0
            return Reconciliation(took_effect=True if ok else None,
                                  detail=f"node {p.node_id}: {n.state_detail}" + ("" if ok else
                                                                                  "; a restart may not have run"))

        return ActionDef(
            "restart_node", "Restart a node through the local lab: its process (SIGTERM, SIGKILL after a grace, then "
            "start it with its original command line) or, in the Docker lab, its container (docker restart). Runtime "
            "config changes are lost.", NodeParams,
            RiskTier.high, True, lambda p: f"node:{p.node_id}", precheck, execute,
            lambda p: f"lab restart_node {p.node_id}", reconcile)
