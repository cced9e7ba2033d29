"""What must hold in the rate limiter, each check over one observation.

Entities: ``node:<id>`` for a node, ``redis`` for the counter store, ``key:<name>`` for a
rate-limit key, ``cluster`` for latency every node suffers alike. One fault should give one clear
ticket, so the symptoms of a node's fault are inhibited while the fault itself fires:

- ``fail_open_node`` (a node admits without Redis)  -> its own ``counter_drift``, ``node_isolated``
  and every ``over_admission``;
- ``counter_drift`` (a node admits what Redis never sees) -> every ``over_admission``;
- ``redis_unreachable`` -> ``fail_open_node``, ``node_isolated``, ``high_latency`` and
  ``counter_drift`` everywhere (they are all that outage seen from a node);
- ``node_isolated`` (one node cannot reach a healthy Redis) -> its own ``high_latency``.

Every check reads only what observe.py puts in the Observation, and each one has a test that
makes it fire on the live lab. ``counter_drift`` needs Redis's log of a key read whole (up to
observe.MEMBER_CAP entries) to tell which node's admissions it lacks; a busier key is still
checked for over-admission.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from subjects.base import (
    CheckResult,
    History,
    Invariant,
    Node,
    NodeState,
    NotEvaluated,
    Observation,
    Severity,
    Violation,
)


class Thresholds(BaseModel):
    slo_p99_ms: float = Field(100.0, gt=0)  # per node and for the cluster, over the latency window
    latency_min_samples: int = Field(20, ge=1)  # fewer checks in the window than this: no verdict
    drift_min: int = Field(2, ge=1)  # admissions of one node on one key that Redis does not hold
    cache_disagree_min: int = Field(2, ge=1)  # |a node's cached count - Redis's count| for one key
    over_admission_min: int = Field(1, ge=1)  # admitted in the window minus the limit
    graces: dict[str, float] = Field(default_factory=dict)


DEFAULT_GRACE = {
    "node_down": 2.0,  # three probes in a row (1 s apart) before a busy node is called down
    "node_down_refused": 1.0,  # but two refusals are enough: nothing listens, so it is not busy
    "redis_unreachable": 1.0,
    "over_admission": 1.0,
    "counter_drift": 1.0,
    "fail_open_node": 1.0,
    "node_isolated": 3.0,
    "high_latency": 10.0,
}
TOP_KEYS = 5


def limiter_nodes(obs: Observation) -> list[Node]:
    return [n for n in obs.nodes if n.kind == "node"]


def answering(n: Node) -> bool:
    return n.kind == "node" and n.metrics.get("probe_ok") == 1.0


def redis_view(obs: Observation) -> dict[str, Any]:
    return obs.details.get("redis") or {}


def redis_healthy(obs: Observation) -> bool:
    r = redis_view(obs)
    return bool(r.get("reachable")) and r.get("writes") in ("ok", "unknown")


def node_id_of(entity: str) -> str | None:
    return entity.split(":", 1)[1] if entity.startswith("node:") else None


# -- nodes --------------------------------------------------------------------------------------

def check_node_down(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        return [node_down(n, t) for n in limiter_nodes(obs) if n.state == NodeState.down]
    return check


def node_down(n: Node, t: Thresholds) -> Violation:
    refused = "refused" in n.state_detail
    return Violation(
        invariant="node_down", entity=n.entity, severity=Severity.critical,
        summary=f"node {n.id} does not answer: {n.state_detail.removeprefix('not answering: ')}",
        evidence={"node_id": n.id, "address": n.address, "detail": n.state_detail,
                  "refused": refused, "timed_out": "timed out" in n.state_detail,
                  "registry_state": n.labels.get("registry"),
                  "heartbeat_age_ms": n.metrics.get("heartbeat_age_ms"),
                  "sources": n.labels.get("sources")},
        grace_s=t.graces.get("node_down_refused", DEFAULT_GRACE["node_down_refused"]) if refused else None,
    )


def open_nodes(obs: Observation) -> list[str]:
    return [n.id for n in limiter_nodes(obs) if answering(n) and n.metrics.get("fail_open") == 1.0]


def check_redis_unreachable(obs: Observation, _h: History) -> list[Violation]:
    r = redis_view(obs)
    if not obs.reachable:
        return [Violation(invariant="redis_unreachable", entity="redis", severity=Severity.critical,
                          summary=f"neither Redis nor any node answers: {obs.error}",
                          evidence={"observer_reaches_redis": False, "error": obs.error, "nodes_answering": 0,
                                    "redis_url": obs.details.get("redis_url")})]
    live = [n for n in limiter_nodes(obs) if answering(n)]
    failing = {n.id: n.state_detail.removeprefix("cannot reach Redis: ") for n in live
               if n.metrics.get("redis_ok") == 0.0}
    evidence: dict[str, Any] = {
        "redis_url": obs.details.get("redis_url"), "observer_reaches_redis": bool(r.get("reachable")),
        "observer_error": r.get("error"), "ping_ms": r.get("ping_ms"), "writes": r.get("writes"),
        "write_error": r.get("write_error"), "nodes_failing": failing,
        "nodes_ok": sorted(n.id for n in live if n.id not in failing), "open_nodes": open_nodes(obs),
    }
    if not r.get("reachable"):
        summary = f"Redis does not answer the operator: {r.get('error')}"
    elif r.get("writes") == "stalled":
        summary = "Redis answers PING but runs no script or write: it is pausing writes"
    elif len(live) >= 2 and len(failing) == len(live):
        summary = f"Redis answers the operator, but none of the {len(live)} answering nodes reaches it"
    else:
        return []
    if failing:
        summary += f" ({len(failing)} of {len(live)} nodes cannot reach it)"
    return [Violation(invariant="redis_unreachable", entity="redis", severity=Severity.critical, summary=summary,
                      evidence=evidence)]


def check_fail_open_node(obs: Observation, _h: History) -> list[Violation]:
    out = []
    for n in limiter_nodes(obs):
        if not answering(n) or n.metrics.get("redis_ok") != 0.0 or n.metrics.get("fail_open") != 1.0:
            continue
        rate = n.metrics.get("fail_open_qps")
        out.append(Violation(
            invariant="fail_open_node", entity=n.entity, severity=Severity.critical,
            summary=f"node {n.id} cannot reach Redis and fails open: it admits every request it gets, with no "
                    "limit" + (f" ({rate:g}/s now)" if rate else ""),
            evidence={"node_id": n.id, "fail_mode": "open", "redis_error": n.state_detail.removeprefix(
                "cannot reach Redis: "), "fail_open_qps": rate,
                "allowed_fail_open_total": n.metrics.get("allowed_fail_open_total"),
                "registry_state": n.labels.get("registry"), "observer_reaches_redis": redis_healthy(obs)},
        ))
    return out


def check_node_isolated(obs: Observation, _h: History) -> list[Violation]:
    if not redis_healthy(obs):
        return []
    out = []
    for n in limiter_nodes(obs):
        if not answering(n) or n.metrics.get("redis_ok") != 0.0:
            continue
        others = [x.id for x in limiter_nodes(obs) if answering(x) and x.id != n.id and x.metrics.get("redis_ok") == 1]
        out.append(Violation(
            invariant="node_isolated", entity=n.entity, severity=Severity.warning,
            summary=f"node {n.id} answers but cannot reach Redis, which is healthy: it fails "
                    f"{n.labels.get('fail_mode', '?')} on every check",
            evidence={"node_id": n.id, "redis_error": n.state_detail.removeprefix("cannot reach Redis: "),
                      "fail_mode": n.labels.get("fail_mode"), "registry_state": n.labels.get("registry"),
                      "qps": n.metrics.get("qps"), "fail_closed_qps": n.metrics.get("fail_closed_qps"),
                      "other_nodes_reaching_redis": others,
                      "redis_ping_ms": redis_view(obs).get("ping_ms")},
        ))
    return out


# -- counters -----------------------------------------------------------------------------------

def _keys(obs: Observation) -> dict[str, dict[str, Any]]:
    return obs.details.get("keys") or {}


def node_drift(obs: Observation, node_id: str, t: Thresholds) -> list[dict[str, Any]]:
    """The keys on which one node disagrees with Redis, worst first."""
    found = []
    for key, k in _keys(obs).items():
        if k.get("quiet") or not k.get("exact"):
            continue
        item = (k.get("nodes") or {}).get(node_id)
        if not item:
            continue
        unrecorded = item.get("unrecorded")
        local, redis_count = item.get("local_count"), item.get("redis_count")
        cache_off_by = abs(local - redis_count) if local is not None and redis_count is not None else 0
        if (unrecorded is not None and unrecorded >= t.drift_min) or cache_off_by >= t.cache_disagree_min:
            found.append({"key": key, "admitted": item.get("admitted"), "recorded": item.get("recorded"),
                          "unrecorded": unrecorded, "local_count": local, "redis_count": redis_count,
                          "limit": k.get("limit"), "window_ms": item.get("window_ms"),
                          "key_admitted": k.get("admitted"), "over_by": k.get("over_by")})
    found.sort(key=lambda f: (-(f["unrecorded"] or 0), f["key"]))
    return found


def check_counter_drift(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        out = []
        for n in limiter_nodes(obs):
            if not answering(n):
                continue
            keys = node_drift(obs, n.id, t)
            if not keys:
                continue
            unrecorded = sum(k["unrecorded"] or 0 for k in keys)
            over = [k["key"] for k in keys if (k["over_by"] or 0) > 0]
            cache = n.labels.get("cache", "off")
            summary = (f"node {n.id} admitted {unrecorded} requests on {len(keys)} key"
                       f"{'s' if len(keys) != 1 else ''} that Redis never recorded")
            if cache != "off":
                summary += f" (local cache {cache})"
            if over:
                summary += f"; over the limit: {', '.join(over[:3])}"
            out.append(Violation(
                invariant="counter_drift", entity=n.entity, severity=Severity.warning, summary=summary,
                evidence={"node_id": n.id, "unrecorded_total": unrecorded, "keys": keys[:TOP_KEYS],
                          "keys_drifting": len(keys), "over_limit_keys": over,
                          "cache_ttl_ms": n.metrics.get("cache_ttl_ms"), "fail_mode": n.labels.get("fail_mode"),
                          "node_reaches_redis": n.metrics.get("redis_ok") == 1.0},
            ))
        return out
    return check


def check_over_admission(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        out = []
        for key, k in _keys(obs).items():
            limit = k.get("limit")
            if k.get("quiet") or not limit:
                continue
            admitted = int(k.get("admitted") or 0)
            if admitted - limit < t.over_admission_min:
                continue
            per_node = {nid: item.get("admitted") for nid, item in (k.get("nodes") or {}).items()}
            out.append(Violation(
                invariant="over_admission", entity=f"key:{key}", severity=Severity.critical,
                summary=f"{key}: {admitted} requests admitted in its {k.get('window_ms')} ms window, limit {limit}",
                evidence={"key": key, "admitted": admitted, "limit": limit, "over_by": admitted - limit,
                          "window_ms": k.get("window_ms"), "limits_seen": k.get("limits_seen"),
                          "configured_limit": k.get("configured_limit"), "redis_count": k.get("redis_count"),
                          "admitted_by_node": per_node, "exact": k.get("exact")},
            ))
        return out
    return check


# -- latency ------------------------------------------------------------------------------------

def check_high_latency(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation] | CheckResult:
        unread = obs.details.get("metrics_missing") or {}
        # A node that answers but whose latency histogram could not be read is not "fast": unknown.
        unreadable = [NotEvaluated(reason=f"node {n.id}: {unread[n.id]}", entity=n.entity, source=f"metrics:node:{n.id}")
                      for n in limiter_nodes(obs) if answering(n) and n.id in unread]
        missing = list(unreadable)
        if unreadable and len(unreadable) == sum(1 for n in limiter_nodes(obs) if answering(n)):
            missing.append(NotEvaluated(reason="no node's latency can be read", entity="cluster",
                                        source=unreadable[0].source))
        # A node that died is not "fast" either: its own node_down ticket covers the gap.
        missing += [NotEvaluated(reason=f"node {n.id} does not answer", entity=n.entity, source=f"metrics:node:{n.id}",
                                 explained_by="node_down") for n in limiter_nodes(obs) if n.state == NodeState.down]
        measured = {n.id: n for n in limiter_nodes(obs)
                    if answering(n) and n.metrics.get("latency_samples", 0.0) >= t.latency_min_samples
                    and "p99_ms" in n.metrics}
        slow = {nid: n for nid, n in measured.items() if n.metrics["p99_ms"] > t.slo_p99_ms}
        if not slow:
            return CheckResult(not_evaluated=missing) if missing else []
        per_node = {nid: n.metrics["p99_ms"] for nid, n in measured.items()}
        ping = redis_view(obs).get("ping_ms")
        if len(measured) >= 2 and len(slow) == len(measured):
            p99 = obs.workload.p99_ms or max(per_node.values())
            return [Violation(invariant="high_latency", entity="cluster", severity=Severity.warning,
                              summary=f"every node is slow: p99 {p99:.0f} ms over the {t.slo_p99_ms:g} ms SLO",
                              evidence={"p99_ms": p99, "slo_p99_ms": t.slo_p99_ms, "per_node_p99_ms": per_node,
                                        "redis_ping_ms": ping, "nodes_slow": sorted(slow)})]
        found = [Violation(invariant="high_latency", entity=n.entity, severity=Severity.warning,
                           summary=f"node {nid} answers checks slowly: p99 {n.metrics['p99_ms']:.0f} ms over the "
                                   f"{t.slo_p99_ms:g} ms SLO",
                           evidence={"node_id": nid, "p99_ms": n.metrics["p99_ms"], "slo_p99_ms": t.slo_p99_ms,
                                     "per_node_p99_ms": per_node, "redis_ping_ms": ping,
                                     "qps": n.metrics.get("qps"), "nodes_slow": sorted(slow)})
                 for nid, n in sorted(slow.items())]
        return CheckResult(violations=found, not_evaluated=missing) if missing else found
    return check


def build_invariants(t: Thresholds) -> list[Invariant]:
    def grace(name: str) -> float:
        return t.graces.get(name, DEFAULT_GRACE[name])

    return [
        Invariant("node_down", "every known node answers its HTTP API", Severity.critical, "node",
                  check_node_down(t), grace("node_down")),
        Invariant("redis_unreachable", "Redis answers the operator and the nodes, and runs writes",
                  Severity.critical, "redis", check_redis_unreachable, grace("redis_unreachable"),
                  on_unreachable=True),
        Invariant("over_admission", "no key admits more requests in its window than its limit", Severity.critical,
                  "key", check_over_admission(t), grace("over_admission"),
                  inhibited_by_any=("counter_drift", "fail_open_node")),
        Invariant("counter_drift", "every admission a node makes is recorded in Redis, and no node's cached "
                  "count disagrees with Redis", Severity.warning, "node", check_counter_drift(t),
                  grace("counter_drift"), inhibited_by=("fail_open_node",),
                  inhibited_by_any=("redis_unreachable",)),
        Invariant("fail_open_node", "no node admits traffic without Redis (fail-open while Redis is out of reach)",
                  Severity.critical, "node", check_fail_open_node, grace("fail_open_node"),
                  inhibited_by_any=("redis_unreachable",)),
        Invariant("node_isolated", "every node reaches Redis while Redis is healthy", Severity.warning, "node",
                  check_node_isolated, grace("node_isolated"), inhibited_by=("fail_open_node",),
                  inhibited_by_any=("redis_unreachable",)),
        Invariant("high_latency", "check latency (p99 over the last seconds) stays under the SLO", Severity.warning,
                  "node", check_high_latency(t), grace("high_latency"), inhibited_by=("node_isolated",),
                  inhibited_by_any=("redis_unreachable",)),
    ]
