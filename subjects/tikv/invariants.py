"""What must hold in a TiKV cluster, each check over one observation (and recent history).

Every check reads only what observe.py puts in the Observation, and each one has a test that
makes it fire against the simulator: an invariant that cannot fire is worse than none. Checks
that read metrics (latency, hotness) say "not evaluated" when the metrics are missing
(Prometheus down, a store's metrics page unreadable) instead of reading silence as health.
"""

from __future__ import annotations

import statistics

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
    slo_p99_ms: float = 50.0
    slow_score: float = 80.0  # PD counts a store as slow from here
    low_space_ratio: float = 0.2  # available / capacity below this is low space (TiKV_low_space)
    leader_imbalance_ratio: float = 0.5  # (max - min) leaders over the mean of eligible stores
    leader_imbalance_min: float = 10.0  # ... and at least this many leaders apart
    hot_store_ratio: float = 2.5  # a store's QPS over the median of the others
    hot_store_min_qps: float = 200.0
    graces: dict[str, float] = Field(default_factory=dict)


DEFAULT_GRACE = {
    "pd_unreachable": 0.0,
    "store_unreachable": 0.0,
    "store_disconnected": 0.0,
    "store_down": 0.0,
    "regions_under_replicated": 30.0,
    "leader_imbalance": 60.0,
    "leftover_evict_scheduler": 30.0,
    "low_space": 10.0,
    "high_latency": 15.0,
    "slow_store": 5.0,
    "hot_store": 15.0,
}


def stores(obs: Observation) -> list[Node]:
    return [n for n in obs.nodes if n.kind == "store"]


def serving(n: Node) -> bool:
    """Part of the cluster, answering its status port (whatever PD thinks of it)."""
    return n.state in (NodeState.up, NodeState.degraded) and n.metrics.get("probe_ok") == 1.0 and \
        not n.state_detail.startswith(("Offline", "Tombstone"))


def check_pd_unreachable(obs: Observation, _h: History) -> list[Violation]:
    if obs.reachable:
        return []
    return [Violation(invariant="pd_unreachable", entity="pd", severity=Severity.critical,
                      summary=f"PD does not answer: {obs.error}",
                      evidence={"error": obs.error, "pd_url": obs.details.get("pd_url")})]


def check_store_unreachable(obs: Observation, _h: History) -> list[Violation]:
    out = []
    for n in stores(obs):
        if n.metrics.get("probe_ok") == 0.0 and not n.state_detail.startswith("Tombstone"):
            out.append(Violation(
                invariant="store_unreachable", entity=n.entity, severity=Severity.critical,
                summary=f"store {n.id} does not answer on its status port ({n.state_detail})",
                evidence={"store_id": int(n.id), "status": n.state_detail, "address": n.address,
                          "leader_count_pd": n.metrics.get("leader_count")},
            ))
    return out


def _state_name(n: Node) -> str:
    return n.state_detail.split(" ", 1)[0]


def check_store_disconnected(obs: Observation, _h: History) -> list[Violation]:
    return [Violation(invariant="store_disconnected", entity=n.entity, severity=Severity.warning,
                      summary=f"PD has heard no heartbeat from store {n.id} for over 20 s ({n.state_detail})",
                      evidence={"store_id": int(n.id), "state_name": "Disconnected",
                                "probe_ok": n.metrics.get("probe_ok")})
            for n in stores(obs) if _state_name(n) == "Disconnected"]


def check_store_down(obs: Observation, _h: History) -> list[Violation]:
    limit = obs.details.get("max_store_down_time_s")
    return [Violation(invariant="store_down", entity=n.entity, severity=Severity.critical,
                      summary=f"store {n.id} is Down: no heartbeat for longer than max-store-down-time",
                      evidence={"store_id": int(n.id), "state_name": "Down", "max_store_down_time_s": limit,
                                "probe_ok": n.metrics.get("probe_ok")})
            for n in stores(obs) if _state_name(n) == "Down"]


def check_regions_under_replicated(obs: Observation, _h: History) -> list[Violation]:
    miss = obs.metrics.get("regions:miss-peer-region-count", 0.0)
    down = obs.metrics.get("regions:down-peer-region-count", 0.0)
    if miss + down <= 0:
        return []
    return [Violation(invariant="regions_under_replicated", entity="cluster", severity=Severity.warning,
                      summary=f"{int(down)} regions with down peers, {int(miss)} missing peers",
                      evidence={"down_peer_regions": down, "miss_peer_regions": miss,
                                "examples": obs.details.get("problem_regions", [])})]


def _evicted(obs: Observation) -> set[str]:
    return {str(s) for s in obs.details.get("evict_leader_stores", [])}


def check_leader_imbalance(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        # Stores PD keeps leaders off on purpose (evict-leader, or evict-slow-store for a slow one)
        # are not part of the spread.
        evicted = _evicted(obs)
        eligible = [n for n in stores(obs) if serving(n) and n.id not in evicted
                    and n.metrics.get("leader_weight", 1.0) > 0 and n.metrics.get("slow_score", 0.0) < t.slow_score]
        if len(eligible) < 2:
            return []
        counts = {n.id: n.metrics.get("leader_count", 0.0) for n in eligible}
        mean = statistics.fmean(counts.values())
        spread = max(counts.values()) - min(counts.values())
        if mean <= 0 or spread < t.leader_imbalance_min or spread / mean < t.leader_imbalance_ratio:
            return []
        high = max(counts, key=counts.get)
        low = min(counts, key=counts.get)
        return [Violation(
            invariant="leader_imbalance", entity="cluster", severity=Severity.warning,
            summary=f"leaders unevenly spread: store {high} has {int(counts[high])}, store {low} has "
                    f"{int(counts[low])} (mean {mean:.0f})",
            evidence={"leader_counts": counts, "mean": round(mean, 1), "spread": spread,
                      "most_loaded_store": int(high), "least_loaded_store": int(low),
                      "schedulers": obs.details.get("schedulers", [])},
        )]
    return check


def check_leftover_evict_scheduler(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        out = []
        for sid in obs.details.get("evict_leader_stores", []):
            n = obs.node(str(sid), "store")
            if n is None or not serving(n) or _state_name(n) != "Up":
                continue
            if n.metrics.get("slow_score", 0.0) >= t.slow_score or n.metrics.get("leader_count", 0.0) > 0:
                continue
            out.append(Violation(
                invariant="leftover_evict_scheduler", entity=n.entity, severity=Severity.warning,
                summary=f"an evict-leader scheduler keeps healthy store {sid} at 0 leaders",
                evidence={"store_id": int(sid), "leader_count": n.metrics.get("leader_count", 0.0),
                          "slow_score": n.metrics.get("slow_score"), "scheduler": "evict-leader-scheduler",
                          "evict_leader_stores": obs.details.get("evict_leader_stores", [])},
            ))
        return out
    return check


def check_low_space(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        out = []
        for n in stores(obs):
            ratio = n.metrics.get("available_ratio")
            if ratio is None or not serving(n) or ratio >= t.low_space_ratio:
                continue
            out.append(Violation(
                invariant="low_space", entity=n.entity, severity=Severity.warning,
                summary=f"store {n.id} has {ratio:.0%} of its capacity left (threshold {t.low_space_ratio:.0%})",
                evidence={"store_id": int(n.id), "available_ratio": round(ratio, 4),
                          "available_bytes": n.metrics.get("available_bytes"),
                          "capacity_bytes": n.metrics.get("capacity_bytes"),
                          "region_count": n.metrics.get("region_count"),
                          "region_weight": n.metrics.get("region_weight")},
            ))
        return out
    return check


def metrics_source(obs: Observation) -> str:
    """The missing-data entity for this cluster's metrics: Prometheus, or the stores' own pages."""
    return f"metrics:{obs.details.get('metrics_source', 'status-ports')}"


def _metrics_why(obs: Observation, what: str) -> str:
    error = obs.details.get("metrics_error")
    return f"{what}: {error}" if error else f"{what}: no samples yet"


def check_high_latency(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation] | CheckResult:
        p99 = obs.workload.p99_ms
        if p99 is None:
            if obs.workload.qps == 0 and not obs.details.get("metrics_error"):
                return []  # no traffic at all: nothing is slow
            return CheckResult(not_evaluated=[NotEvaluated(
                reason=_metrics_why(obs, "no cluster p99 latency"), entity="cluster", source=metrics_source(obs))])
        if p99 <= t.slo_p99_ms:
            return []
        per_store = {n.id: round(n.metrics["p99_ms"], 2) for n in stores(obs) if "p99_ms" in n.metrics}
        return [Violation(invariant="high_latency", entity="cluster", severity=Severity.warning,
                          summary=f"p99 latency {p99:.1f} ms is over the {t.slo_p99_ms:g} ms SLO",
                          evidence={"p99_ms": round(p99, 2), "slo_p99_ms": t.slo_p99_ms,
                                    "per_store_p99_ms": per_store})]
    return check


def check_slow_store(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        # A slow store that no longer leads anything (drained) no longer slows clients down.
        return [Violation(invariant="slow_store", entity=n.entity, severity=Severity.warning,
                          summary=f"store {n.id} is slow (score {n.metrics['slow_score']:.0f} >= {t.slow_score:g}) "
                                  f"and still leads {int(n.metrics.get('leader_count', 0))} regions",
                          evidence={"store_id": int(n.id), "slow_score": n.metrics["slow_score"],
                                    "p99_ms": n.metrics.get("p99_ms"), "leader_count": n.metrics.get("leader_count")})
                for n in stores(obs) if serving(n) and n.metrics.get("slow_score", 0.0) >= t.slow_score
                and n.metrics.get("leader_count", 0.0) > 0]
    return check


def check_hot_store(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation] | CheckResult:
        live = [n for n in stores(obs) if serving(n)]
        qps = {n.id: n.metrics["qps"] for n in live if "qps" in n.metrics}
        unread = obs.details.get("metrics_missing") or {}
        missing = [NotEvaluated(reason=f"store {n.id}: {unread.get(n.id) or _metrics_why(obs, 'no QPS reading')}",
                                entity=n.entity,
                                source=f"metrics:store:{n.id}" if n.id in unread else metrics_source(obs))
                   for n in live if "qps" not in n.metrics]
        if len(qps) < 3:
            if missing:  # too few readings to compare, because readings are missing: the whole check waits
                return CheckResult(not_evaluated=[m.model_copy(update={"entity": None}) for m in missing])
            return []
        out = []
        hot = obs.details.get("hot", {}).get("read", {})
        hot_write = obs.details.get("hot", {}).get("write", {})
        for sid, value in qps.items():
            others = [v for k, v in qps.items() if k != sid]
            median = statistics.median(others)
            if value < t.hot_store_min_qps or value < t.hot_store_ratio * max(median, 1.0):
                continue
            regions = (hot.get(sid, {}).get("regions") or []) + (hot_write.get(sid, {}).get("regions") or [])
            out.append(Violation(
                invariant="hot_store", entity=f"store:{sid}", severity=Severity.warning,
                summary=f"store {sid} serves {value:.0f} QPS, {value / max(median, 1.0):.1f}x the median of the others",
                evidence={"store_id": int(sid), "qps": round(value, 1), "median_qps_others": round(median, 1),
                          "hot_regions": regions},
            ))
        return CheckResult(violations=out, not_evaluated=missing) if missing else out
    return check


def build_invariants(t: Thresholds) -> list[Invariant]:
    def grace(name: str) -> float:
        return t.graces.get(name, DEFAULT_GRACE[name])

    return [
        Invariant("pd_unreachable", "PD answers its HTTP API", Severity.critical, "pd", check_pd_unreachable,
                  grace("pd_unreachable"), on_unreachable=True),
        Invariant("store_unreachable", "every store answers on its status port", Severity.critical, "store",
                  check_store_unreachable, grace("store_unreachable")),
        Invariant("store_disconnected", "PD hears every store's heartbeat", Severity.warning, "store",
                  check_store_disconnected, grace("store_disconnected"), inhibited_by=("store_unreachable",)),
        Invariant("store_down", "no store is Down (past max-store-down-time)", Severity.critical, "store",
                  check_store_down, grace("store_down")),
        Invariant("regions_under_replicated", "every region has all its peers, all alive", Severity.warning,
                  "cluster", check_regions_under_replicated, grace("regions_under_replicated")),
        Invariant("leader_imbalance", "leaders are spread evenly over the serving stores", Severity.warning,
                  "cluster", check_leader_imbalance(t), grace("leader_imbalance")),
        Invariant("leftover_evict_scheduler", "no evict-leader scheduler pins a healthy store at 0 leaders",
                  Severity.warning, "store", check_leftover_evict_scheduler(t), grace("leftover_evict_scheduler")),
        Invariant("low_space", "every store has at least 20% of its capacity free", Severity.warning, "store",
                  check_low_space(t), grace("low_space")),
        Invariant("high_latency", "p99 latency stays under the SLO", Severity.warning, "cluster",
                  check_high_latency(t), grace("high_latency"),
                  inhibited_by_any=("slow_store", "hot_store", "store_unreachable", "pd_unreachable")),
        Invariant("slow_store", "no slow store (score >= 80) still leads regions", Severity.warning, "store",
                  check_slow_store(t), grace("slow_store")),
        Invariant("hot_store", "no store takes a disproportionate share of the traffic", Severity.warning, "store",
                  check_hot_store(t), grace("hot_store")),
    ]
