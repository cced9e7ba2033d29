"""Prometheus text exposition for PD's /metrics and each TiKV store's /metrics.

PD is a Go program (client_golang: label names sorted, values like `1.234567e+06`); TiKV is a Rust
program (rust-prometheus: labels in declaration order, plain decimal values, `le` last). Metric and
label names are the ones in reference/pd-api.md section 3.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from subjects.tikv.sim import workload
from subjects.tikv.sim.entities import OFFLINE, TOMBSTONE, UNHEALTHY_AFTER
from subjects.tikv.sim.goformat import go_float

if TYPE_CHECKING:
    from subjects.tikv.sim.entities import Store
    from subjects.tikv.sim.model import Cluster

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def rust_float(x: float) -> str:
    """Rust's `{}` for f64: shortest digits, never an exponent."""
    if isinstance(x, int):
        return str(x)
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    if x.is_integer():
        return str(int(x))
    return format(Decimal(repr(x)), "f")


def _escape(value: str) -> str:
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exposition:
    def __init__(self, *, go: bool = True) -> None:
        self.lines: list[str] = []
        self.fmt = go_float if go else rust_float

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: list[tuple[str, str]] | None, value: float) -> None:
        if labels:
            inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels)
            self.lines.append(f"{name}{{{inner}}} {self.fmt(value)}")
        else:
            self.lines.append(f"{name} {self.fmt(value)}")

    def render(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


# ---------------------------------------------------------------------------- PD


def _cluster_status_rows(c: Cluster) -> list[tuple[Store, dict[str, float]]]:
    rows = []
    for s in c.stores.values():
        v = dict.fromkeys(CLUSTER_STATUS_TYPES, 0.0)
        if s.meta_state == TOMBSTONE:
            v["store_tombstone_count"] = v["store_removed_count"] = 1
            rows.append((s, v))
            continue
        if s.meta_state == OFFLINE:
            v["store_offline_count"] = v["store_removing_count"] = 1
        else:
            v["store_serving_count"] = 1
        since = c.now - s.last_hb
        down = since >= c.pd.max_store_down_time
        if down:
            v["store_down_count"] = 1
        elif since > UNHEALTHY_AFTER:
            v["store_unhealth_count"] = 1
        elif c.is_disconnected(s):
            v["store_disconnected_count"] = 1
        elif s.hb_slow_score >= 80:
            v["store_slow_count"] = 1
        else:
            v["store_up_count"] = 1
        if not down and c.is_low_space(s):
            v["store_low_space_count"] = 1
        v["region_count"] = s.region_count
        v["leader_count"] = s.leader_count
        v["learner_count"] = s.learner_count
        v["storage_size"] = s.hb_used
        v["storage_capacity"] = s.hb_capacity
        rows.append((s, v))
    return rows


CLUSTER_STATUS_TYPES = (
    "store_up_count",
    "store_disconnected_count",
    "store_slow_count",
    "store_down_count",
    "store_unhealth_count",
    "store_offline_count",
    "store_tombstone_count",
    "store_low_space_count",
    "store_preparing_count",
    "store_serving_count",
    "store_removing_count",
    "store_removed_count",
    "region_count",
    "leader_count",
    "witness_count",
    "learner_count",
    "storage_size",
    "storage_capacity",
)

REGION_STATUS_TYPES = (
    ("miss-peer-region-count", "miss-peer"),
    ("extra-peer-region-count", "extra-peer"),
    ("down-peer-region-count", "down-peer"),
    ("pending-peer-region-count", "pending-peer"),
    ("offline-peer-region-count", "offline-peer"),
    ("learner-peer-region-count", "learner-peer"),
    ("empty-region-count", "empty-region"),
    ("oversized-region-count", "oversized-region"),
    ("undersized-region-count", "undersized-region"),
    ("witness-leader-region-count", None),
)


def pd_metrics(c: Cluster, style: str) -> bytes:
    out = Exposition(go=True)
    rows = _cluster_status_rows(c)

    out.family(
        "etcd_server_is_leader", "gauge", "Whether or not this member is a leader. 1 if is, 0 otherwise."
    )
    out.sample("etcd_server_is_leader", None, 1)

    out.family("pd_checker_event_count", "counter", "Counter of checker events.")
    for (checker, name), n in sorted(c.checker_events.items()):
        out.sample("pd_checker_event_count", [("name", name), ("type", checker)], n)

    out.family("pd_cluster_status", "gauge", "Status of the cluster.")
    if style == "per_store":
        for s, v in sorted(rows, key=lambda row: str(row[0].id)):
            for t in sorted(CLUSTER_STATUS_TYPES):
                out.sample("pd_cluster_status", [("engine", "tikv"), ("store", str(s.id)), ("type", t)], v[t])
    else:
        totals = dict.fromkeys(CLUSTER_STATUS_TYPES, 0.0)
        for _, v in rows:
            for t in CLUSTER_STATUS_TYPES:
                totals[t] += v[t]
        for t in sorted(CLUSTER_STATUS_TYPES):
            out.sample("pd_cluster_status", [("type", t)], totals[t])

    out.family("pd_config_status", "gauge", "Status of the scheduling configurations.")
    for key, value in (
        ("hot-region-schedule-limit", c.pd.hot_region_schedule_limit),
        ("leader-schedule-limit", c.pd.leader_schedule_limit),
        ("max-replicas", c.pd.max_replicas),
        ("max-snapshot-count", c.pd.max_snapshot_count),
        ("region-schedule-limit", c.pd.region_schedule_limit),
        ("replica-schedule-limit", c.pd.replica_schedule_limit),
    ):
        out.sample("pd_config_status", [("type", key)], value)

    out.family("pd_regions_status", "gauge", "Status of the regions.")
    for metric_type, check in sorted(REGION_STATUS_TYPES):
        ids = c.check_region_set(check) if check else None
        out.sample("pd_regions_status", [("type", metric_type)], len(ids) if ids else 0)

    out.family("pd_schedule_operators_count", "counter", "Counter of schedule operators.")
    for (desc, event), n in sorted(c.operators.created_total.items()):
        out.sample("pd_schedule_operators_count", [("event", event), ("type", desc)], n)

    out.family("pd_scheduler_store_status", "gauge", "Store status for schedule")
    for s in sorted(c.stores.values(), key=lambda st: str(st.id)):
        if s.meta_state == TOMBSTONE:
            continue
        rb, rk, rq = s.read_qps * workload.BYTES_PER_READ, s.read_qps * workload.KEYS_PER_READ, s.read_qps
        wq = s.peer_write_qps
        values = {
            "leader_count": s.leader_count,
            "leader_score": c.leader_score(s),
            "leader_size": s.leader_size,
            "region_count": s.region_count,
            "region_score": c.region_score(s),
            "region_size": s.region_size,
            "store_available": s.hb_available,
            "store_capacity": s.hb_capacity,
            "store_read_query_rate": max(0.0, rq),
            "store_read_rate_bytes": max(0.0, rb),
            "store_read_rate_keys": max(0.0, rk),
            "store_used": s.hb_used,
            "store_write_query_rate": max(0.0, wq),
            "store_write_rate_bytes": max(0.0, wq * workload.BYTES_PER_WRITE),
            "store_write_rate_keys": max(0.0, wq * workload.KEYS_PER_WRITE),
        }
        for t, value in values.items():
            out.sample(
                "pd_scheduler_store_status",
                [("address", s.address), ("store", str(s.id)), ("type", t)],
                value,
            )
    return out.render()


# ---------------------------------------------------------------------------- TiKV


def _histogram(
    out: Exposition,
    name: str,
    labels: list[tuple[str, str]],
    bounds: tuple[float, ...],
    buckets: list[float],
    total: float,
    total_sum: float,
) -> None:
    count = int(total)
    for le, cumulative in zip(bounds, buckets, strict=True):
        out.sample(f"{name}_bucket", [*labels, ("le", rust_float(le))], min(count, int(cumulative)))
    out.sample(f"{name}_bucket", [*labels, ("le", "+Inf")], count)
    out.sample(f"{name}_sum", labels, total_sum)
    out.sample(f"{name}_count", labels, count)


def store_metrics(c: Cluster, s: Store) -> bytes:
    """GET /metrics on one store's status port."""
    c.flush_store(s)
    m = s.metrics
    out = Exposition(go=False)
    if m is None:
        return out.render()

    out.family(
        "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds."
    )
    out.sample("process_start_time_seconds", None, int(s.start_ts))

    kv = s.region_size * 1024 * 1024
    out.family("tikv_engine_size_bytes", "gauge", "Sizes of each column families")
    for db, cf, share in (
        ("kv", "default", 0.70),
        ("kv", "lock", 0.01),
        ("kv", "write", 0.25),
        ("raft", "default", 0.04),
    ):
        out.sample("tikv_engine_size_bytes", [("db", db), ("type", cf)], int(kv * share))

    out.family("tikv_grpc_msg_duration_seconds", "histogram", "Bucketed histogram of grpc server messages")
    for i, (grpc_type, _, _, _) in enumerate(workload.GRPC_TYPES):
        _histogram(
            out,
            "tikv_grpc_msg_duration_seconds",
            [("type", grpc_type), ("priority", "unknown")],
            workload.GRPC_BUCKETS,
            m.grpc_buckets[i],
            m.grpc_count[i],
            m.grpc_sum[i],
        )

    out.family("tikv_grpc_msg_fail_total", "counter", "Total number of handle grpc message failure")
    for i, (grpc_type, _, _, _) in enumerate(workload.GRPC_TYPES):
        out.sample("tikv_grpc_msg_fail_total", [("type", grpc_type)], int(m.grpc_fail[i]))

    missing = 0
    if s.reachable or s.partitioned:
        small, big = (
            (c.leaderless, s.peer_regions)
            if len(c.leaderless) < len(s.peer_regions)
            else (s.peer_regions, c.leaderless)
        )
        missing = sum(1 for rid in small if rid in big)
    out.family("tikv_raftstore_leader_missing", "gauge", "Total number of leader missed region.")
    out.sample("tikv_raftstore_leader_missing", None, missing)

    out.family("tikv_raftstore_region_count", "gauge", "Number of regions collected in region_collector")
    out.sample("tikv_raftstore_region_count", [("type", "buckets")], s.region_count)
    out.sample("tikv_raftstore_region_count", [("type", "leader")], s.leader_count)
    out.sample("tikv_raftstore_region_count", [("type", "region")], s.region_count)

    score = round(s.slow_score(c.now), 2)
    out.family("tikv_raftstore_slow_score", "gauge", "Slow score of the store.")
    out.sample("tikv_raftstore_slow_score", [("type", "kvdb")], score)
    out.sample("tikv_raftstore_slow_score", [("type", "raft")], score)

    out.family(
        "tikv_scheduler_command_duration_seconds", "histogram", "Bucketed histogram of command execution"
    )
    for k, (cmd, _) in enumerate(workload.SCHED_TYPES):
        _histogram(
            out,
            "tikv_scheduler_command_duration_seconds",
            [("type", cmd)],
            workload.SCHED_BUCKETS,
            m.sched_buckets[k],
            m.sched_count[k],
            m.sched_sum[k],
        )

    in_flight = max(0.0, s.write_qps) * (0.0015 + s.slow_latency_ms / 1000.0)
    out.family("tikv_scheduler_contex_total", "gauge", "Total number of pending commands.")
    out.sample("tikv_scheduler_contex_total", None, int(in_flight))

    out.family("tikv_scheduler_too_busy_total", "counter", "Total count of scheduler too busy")
    out.sample("tikv_scheduler_too_busy_total", [("type", "prewrite")], int(m.too_busy))

    out.family(
        "tikv_server_report_failure_msg_total", "counter", "Total number of reporting failure messages"
    )
    for other, n in sorted(m.unreachable.items()):
        out.sample(
            "tikv_server_report_failure_msg_total",
            [("type", "unreachable"), ("store_id", str(other))],
            int(n),
        )

    out.family("tikv_storage_command_total", "counter", "Total number of commands received.")
    for cmd in workload.STORAGE_TYPES:
        out.sample("tikv_storage_command_total", [("type", cmd)], int(m.storage[cmd]))

    out.family("tikv_store_size_bytes", "gauge", "Size of storage.")
    out.sample("tikv_store_size_bytes", [("type", "available")], s.available_bytes())
    out.sample("tikv_store_size_bytes", [("type", "capacity")], s.capacity)
    out.sample("tikv_store_size_bytes", [("type", "used")], s.used_bytes())

    out.family(
        "tikv_thread_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds by threads.",
    )
    base_tid = 1000 + s.id * 100
    for i, (name, _) in enumerate(workload.THREADS):
        out.sample(
            "tikv_thread_cpu_seconds_total",
            [("name", name.format(id=s.id)), ("tid", str(base_tid + i))],
            round(m.cpu[i], 3),
        )
    return out.render()
