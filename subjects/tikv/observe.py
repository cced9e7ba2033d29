"""One observation of a TiKV cluster, at a cost that follows stores, not regions.

Per tick: PD's /stores, /schedulers (+ evict/grant-leader config), /config/schedule, /health,
/members, /metrics (region health counts from pd_regions_status) and the hotspot summaries, then
every store's status port. The full region list is never fetched; a few down-peer regions are
listed only when PD's counters say there are some, as evidence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from subjects import promtext
from subjects.base import Node, NodeState, Observation, Workload, utcnow
from subjects.tikv.models import StoreInfo
from subjects.tikv.pd_client import PDClient, PDError, PDUnreachable
from subjects.tikv.store_metrics import DirectScraper, MetricsResult, PrometheusSource
from subjects.tikv.units import parse_duration

log = logging.getLogger("subjects.tikv")
EVIDENCE_REGIONS = 5
HOTSPOT_EVERY = 5


def pd_counts(text: str) -> dict[str, float]:
    """pd_cluster_status / pd_regions_status, in either label style.

    PD <= v8.5.4 exports `pd_cluster_status{type=...}`; v8.5.5+ adds `engine` and `store` labels
    and one series per store, so values are summed per type in both cases.
    """
    out: dict[str, float] = {}
    for name, labels, value in promtext.parse(text, ("pd_cluster_status", "pd_regions_status")):
        t = labels.get("type")
        if not t:
            continue
        key = ("cluster:" if name == "pd_cluster_status" else "regions:") + t.replace("_", "-")
        out[key] = out.get(key, 0.0) + value
    return out


def store_state(info: StoreInfo, probe_ok: bool, probe_error: str, slow: bool) -> tuple[NodeState, str]:
    """Our state for a store, and a detail that always starts with PD's own state name."""
    name = info.store.state_name
    if info.store.state == 2 or name == "Tombstone":
        return NodeState.removed, "Tombstone"
    if info.store.state == 1 or name == "Offline":
        return (NodeState.degraded if probe_ok else NodeState.removed), "Offline (being removed)"
    if not probe_ok:
        return NodeState.down, f"{name} ({probe_error or 'status port not answering'})"
    if name in ("Disconnected", "Down"):
        return NodeState.degraded, f"{name} (PD hears no heartbeat; the process answers)"
    if slow:
        return NodeState.degraded, f"{name} (slow)"
    return NodeState.up, name


class TiKVObserver:
    def __init__(self, pd: PDClient, *, prometheus_url: str | None = None, prometheus_window: str = "30s",
                 probe_timeout: float = 1.0, slow_score_threshold: float = 80.0, ssl_context: Any = None):
        self.pd = pd
        self.slow_threshold = slow_score_threshold
        self.metrics_source: DirectScraper | PrometheusSource
        if prometheus_url:
            self.metrics_source = PrometheusSource(prometheus_url, window=prometheus_window,
                                                   probe_timeout=probe_timeout, ssl_context=ssl_context)
        else:
            self.metrics_source = DirectScraper(timeout=probe_timeout, ssl_context=ssl_context)
        self._last_nodes: list[Node] = []
        self._hot: dict[str, Any] | None = None
        self._ticks = 0
        self._store_count = 0

    async def aclose(self) -> None:
        await self.metrics_source.aclose()

    async def observe(self) -> Observation:
        t0 = time.monotonic()
        at = utcnow()
        try:
            obs = await self._observe(t0)
        except Exception as e:  # PD down or garbled, or a bug: never an exception, never "all clear"
            if not isinstance(e, PDUnreachable | PDError | promtext.ParseError | ValueError):
                log.exception("observation failed unexpectedly")
            # Nothing about the stores can be concluded: report them as unknown, not as fine.
            nodes = [n.model_copy(update={"state": NodeState.unknown, "state_detail": "PD unreachable"})
                     for n in self._last_nodes]
            obs = Observation(subject="tikv", reachable=False, error=_reason(e), nodes=nodes,
                              details={"pd_url": self.pd.base_url})
        obs.at, obs.monotonic = at, t0
        obs.duration_ms = (time.monotonic() - t0) * 1000
        if obs.reachable:
            self._last_nodes = obs.nodes
        return obs

    async def _hotspots(self) -> dict[str, Any]:
        """PD's hot-region statistics (evidence for hot_store). They are sizeable for a large
        cluster and PD itself only refreshes them every few seconds, so big clusters fetch them
        every HOTSPOT_EVERY ticks and reuse them in between."""
        self._ticks += 1
        if self._hot is not None and self._store_count > 100 and self._ticks % HOTSPOT_EVERY:
            return self._hot
        read, write = await asyncio.gather(self.pd.hotspot("read"), self.pd.hotspot("write"))
        self._hot = {"read": _hot_summary(read), "write": _hot_summary(write)}
        return self._hot

    async def _observe(self, t0: float) -> Observation:
        stores, schedulers, evict, grant, schedule, health, metrics_text, hot = await asyncio.gather(
            self.pd.stores(),
            self.pd.schedulers(),
            self.pd.scheduler_stores("evict-leader-scheduler"),
            self.pd.scheduler_stores("grant-leader-scheduler"),
            self.pd.schedule_config(),
            self.pd.health(),
            self.pd.metrics_text(),
            self._hotspots(),
        )
        self._store_count = len(stores)
        counts = pd_counts(metrics_text)
        live = [s for s in stores if s.store.state != 2 and s.store.status_address]
        metrics: MetricsResult = await self.metrics_source.collect(
            [(s.store.id, s.store.status_address) for s in live]
        )
        down_regions: list[dict[str, Any]] = []
        if counts.get("regions:down-peer-region-count", 0) > 0 or counts.get("regions:miss-peer-region-count", 0) > 0:
            for kind in ("down-peer", "miss-peer"):
                for r in (await self.pd.regions_check(kind))[:EVIDENCE_REGIONS]:
                    down_regions.append({"check": kind, "region_id": r.id, "leader_store": r.leader_store,
                                         "peers": [p.store_id for p in r.peers],
                                         "down": [d.peer.store_id for d in r.down_peers],
                                         "keys": [r.start_key, r.end_key]})

        nodes: list[Node] = []
        for s in stores:
            m = metrics.stores.get(s.store.id)
            probe_ok = bool(m and m.probe_ok)
            values: dict[str, float] = {
                "leader_count": float(s.status.leader_count),
                "region_count": float(s.status.region_count),
                "leader_weight": s.status.leader_weight,
                "region_weight": s.status.region_weight,
                "pending_peer_count": float(s.status.pending_peer_count),
                "probe_ok": 1.0 if probe_ok else 0.0,
            }
            for key, value in (("capacity_bytes", s.status.capacity_bytes),
                               ("available_bytes", s.status.available_bytes),
                               ("used_bytes", s.status.used_bytes)):
                if value is not None:
                    values[key] = value
            if s.status.slow_score:
                values["slow_score"] = s.status.slow_score
            if m is not None:
                values["probe_ms"] = m.probe_ms
                for key in ("slow_score", "qps", "fail_qps", "p99_ms", "capacity_bytes", "available_bytes"):
                    if key in m.values:
                        # The store's own reading is fresher than PD's last heartbeat.
                        values[key] = max(values.get(key, 0.0), m.values[key]) if key == "slow_score" else m.values[key]
            if values.get("capacity_bytes"):
                values["available_ratio"] = values.get("available_bytes", 0.0) / values["capacity_bytes"]
            slow = values.get("slow_score", 0.0) >= self.slow_threshold
            state, detail = store_state(s, probe_ok, m.probe_error if m else "not probed", slow)
            labels = dict(s.labels)
            if s.store.id in evict:
                labels["evict-leader"] = "yes"
            nodes.append(Node(
                id=str(s.store.id), kind="store", name=f"store {s.store.id}", address=s.store.address,
                state=state, state_detail=detail, role="tikv", labels=labels, metrics=values,
            ))
        for member in health:
            name = str(member.get("name", "?"))
            urls = member.get("client_urls")
            nodes.append(Node(
                id=name, kind="pd", name=f"pd {name}",
                address=str(urls[0]) if isinstance(urls, list) and urls else "",
                state=NodeState.up if member.get("health") else NodeState.down,
                state_detail="healthy" if member.get("health") else "unhealthy", role="pd",
            ))

        cluster = {k: v for k, v in counts.items()}
        cluster["stores"] = float(len(stores))
        workload = Workload(qps=metrics.cluster_qps, error_rate=metrics.cluster_error_rate,
                            p99_ms=metrics.cluster_p99_ms)
        details: dict[str, Any] = {
            "pd_url": self.pd.base_url,
            "schedulers": sorted(schedulers),
            "evict_leader_stores": evict,
            "grant_leader_stores": grant,
            "max_store_down_time_s": parse_duration(schedule.get("max-store-down-time")),
            "leader_schedule_limit": schedule.get("leader-schedule-limit"),
            "hot": hot,
            "problem_regions": down_regions,
            "store_uptime": {str(s.store.id): s.status.uptime for s in stores if s.status.uptime},
        }
        details["metrics_source"] = "prometheus" if isinstance(self.metrics_source, PrometheusSource) \
            else "status-ports"
        if metrics.source_error:
            details["metrics_error"] = metrics.source_error
        # Stores that answer but whose metrics could not be read: alive, their readings unknown.
        unread = {str(sid): m.probe_error for sid, m in metrics.stores.items() if m.probe_ok and m.probe_error}
        if unread:
            details["metrics_missing"] = unread
        return Observation(subject="tikv", nodes=nodes, metrics=cluster, workload=workload, details=details)


def _num(value: Any) -> float:
    """A number from PD's hot-region statistics; anything else counts as 0 (they are evidence only)."""
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number else 0.0  # NaN


def _hot_summary(body: dict[str, Any]) -> dict[str, Any]:
    """Per store: hot-region query rate as leader, and the hottest region ids."""
    out: dict[str, Any] = {}
    leaders = body.get("as_leader") if isinstance(body, dict) else None
    for store_id, stat in (leaders if isinstance(leaders, dict) else {}).items():
        if not isinstance(stat, dict):
            continue
        stats = stat.get("statistics")
        regions = sorted((r for r in (stats if isinstance(stats, list) else []) if isinstance(r, dict)),
                         key=lambda r: -_num(r.get("flow_query")))
        out[str(store_id)] = {
            "query_rate": _num(stat.get("store_query") or stat.get("total_flow_query")),
            "regions": [{"region_id": r.get("region_id"), "flow_query": r.get("flow_query")} for r in regions[:3]],
        }
    return out


def _reason(e: Exception) -> str:
    if isinstance(e, PDError):
        return f"PD answered an error: {e}"
    if isinstance(e, promtext.ParseError):
        return f"PD's /metrics is unreadable: {e}"
    if isinstance(e, PDUnreachable | ValueError):
        return str(e)
    return f"observation failed: {type(e).__name__}: {e}"
