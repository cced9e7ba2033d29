"""The client workload: per-region request rates, per-store latency, TiKV's counters and histograms.

Rates are per region (seeded, skewed) and are summed into the region leader's store. Counters and
histograms are integrals of those rates over simulated time, computed lazily: a store's figures are
brought up to date ("flushed") only when one of its rates changes or when someone reads them, so a
tick costs nothing per region.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from subjects.tikv.sim.entities import Store

# (gRPC message type, share of reads or writes, median service time in seconds, storage command)
READ_TYPES = (
    ("kv_get", 0.60, 0.00040, "get"),
    ("kv_batch_get_command", 0.15, 0.00070, "batch_get_command"),
    ("coprocessor", 0.25, 0.00200, None),
)
WRITE_TYPES = (
    ("kv_prewrite", 0.5, 0.00180, "prewrite"),
    ("kv_commit", 0.5, 0.00120, "commit"),
)
GRPC_TYPES = READ_TYPES + WRITE_TYPES
# Scheduler (transaction) commands behind the write messages: (type, median seconds)
SCHED_TYPES = (("prewrite", 0.00110), ("commit", 0.00070))
STORAGE_TYPES = tuple(t[3] for t in GRPC_TYPES if t[3])

SIGMA = 0.55  # spread of the log-normal service time
STORE_QPS_KNEE = 8000.0  # at this many requests per second a store's latency doubles
CLIENT_RTT = 0.0003  # the client's network round trip, added to the client-side view
WRITE_RESERVE_BYTES = 5 * 1024**3  # storage.reserve-space: below this TiKV refuses writes
BYTES_PER_READ = 1024
BYTES_PER_WRITE = 512
KEYS_PER_READ = 1.5
KEYS_PER_WRITE = 2.0


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    # Repeated multiplication, exactly as the Prometheus Go client builds them.
    out = []
    v = start
    for _ in range(count):
        out.append(v)
        v *= factor
    return tuple(out)


GRPC_BUCKETS = exponential_buckets(5e-5, 2, 22)
SCHED_BUCKETS = exponential_buckets(1e-5, 2, 26)

# Thread name suffixes TiKV exports in tikv_thread_cpu_seconds_total, and what drives each one's CPU.
THREADS = (
    ("grpc_server_0", "grpc"),
    ("grpc_server_1", "grpc"),
    ("raftstore_{id}_0", "raft"),
    ("raftstore_{id}_1", "raft"),
    ("apply_0", "apply"),
    ("apply_1", "apply"),
    ("unified_read_po", "read"),
    ("unified_read_po", "read"),
    ("sched_worker_po", "sched"),
)


def region_weights(rng: random.Random, n: int) -> list[float]:
    """Skewed request weights: a few regions take much of the traffic (Pareto, capped)."""
    return [min(rng.paretovariate(1.3), 25.0) for _ in range(n)]


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def latency_cdf(x: float, median: float, shift: float) -> float:
    if x <= shift:
        return 0.0
    return _phi((math.log(x - shift) - math.log(median)) / SIGMA)


def load_factor(qps: float) -> float:
    return 1.0 + (qps / STORE_QPS_KNEE) ** 2


class Profile:
    """Per-type bucket fractions and mean latency for one (load factor, added latency) pair."""

    __slots__ = ("grpc_cdf", "grpc_mean", "sched_cdf", "sched_mean")

    def __init__(self, factor: float, shift: float) -> None:
        mean_mult = math.exp(SIGMA * SIGMA / 2.0)
        self.grpc_cdf = []
        self.grpc_mean = []
        for _, _, median, _ in GRPC_TYPES:
            m = median * factor
            self.grpc_cdf.append([latency_cdf(le, m, shift) for le in GRPC_BUCKETS])
            self.grpc_mean.append(m * mean_mult + shift)
        self.sched_cdf = []
        self.sched_mean = []
        for _, median in SCHED_TYPES:
            m = median * factor
            self.sched_cdf.append([latency_cdf(le, m, shift) for le in SCHED_BUCKETS])
            self.sched_mean.append(m * mean_mult + shift)


_PROFILES: dict[tuple[float, float], Profile] = {}


def profile_for(qps: float, extra_ms: float) -> Profile:
    key = (round(load_factor(qps), 3), round(extra_ms, 3))
    prof = _PROFILES.get(key)
    if prof is None:
        if len(_PROFILES) > 4096:  # bounded: load factors are rounded, but keep the cache small anyway
            _PROFILES.clear()
        prof = _PROFILES[key] = Profile(key[0], key[1] / 1000.0)
    return prof


class StoreMetrics:
    """One TiKV process's counters: they start at zero with the process and only grow."""

    __slots__ = (
        "acc_time",
        "cpu",
        "dirty",
        "grpc_buckets",
        "grpc_count",
        "grpc_fail",
        "grpc_sum",
        "profile",
        "sched_buckets",
        "sched_count",
        "sched_sum",
        "storage",
        "too_busy",
        "unreachable",
    )

    def __init__(self, since: float) -> None:
        self.acc_time = since
        self.profile: Profile | None = None
        self.dirty = True
        n = len(GRPC_TYPES)
        self.grpc_count = [0.0] * n
        self.grpc_sum = [0.0] * n
        self.grpc_fail = [0.0] * n
        self.grpc_buckets = [[0.0] * len(GRPC_BUCKETS) for _ in range(n)]
        self.sched_count = [0.0] * len(SCHED_TYPES)
        self.sched_sum = [0.0] * len(SCHED_TYPES)
        self.sched_buckets = [[0.0] * len(SCHED_BUCKETS) for _ in SCHED_TYPES]
        self.storage = dict.fromkeys(STORAGE_TYPES, 0.0)
        self.cpu = [0.0] * len(THREADS)
        self.too_busy = 0.0
        self.unreachable: dict[int, float] = {}


def thread_cpu_rates(store: Store) -> list[float]:
    """CPU seconds per second for each of THREADS."""
    reads = store.read_qps + store.fail_read_qps
    writes = store.write_qps + store.fail_write_qps
    per = {
        "grpc": 0.002 + (reads + writes) * 1.0e-5,
        "raft": 0.004 + writes * 2.0e-5 + store.region_count * 1.0e-5,
        "apply": 0.001 + writes * 1.5e-5,
        "read": 0.001 + reads * 4.0e-5,
        "sched": 0.0005 + writes * 1.5e-5,
    }
    return [per[kind] for _, kind in THREADS]


def flush(store: Store, now: float, unreachable: Iterable[int]) -> None:
    """Integrate the store's current rates from its last flush up to `now`."""
    m = store.metrics
    if m is None:
        return
    dt = now - m.acc_time
    if dt <= 0:
        return
    if m.dirty or m.profile is None:
        m.profile = profile_for(store.read_qps + store.write_qps, store.slow_latency_ms)
        m.dirty = False
    p = m.profile
    reads = store.read_qps * dt
    writes = store.write_qps * dt
    for i, (_, share, _, storage) in enumerate(GRPC_TYPES):
        n = (reads if i < len(READ_TYPES) else writes) * share
        if n > 0:
            m.grpc_count[i] += n
            m.grpc_sum[i] += n * p.grpc_mean[i]
            buckets = m.grpc_buckets[i]
            fractions = p.grpc_cdf[i]
            for j in range(len(buckets)):
                buckets[j] += n * fractions[j]
            if storage:
                m.storage[storage] += n
    fail_r = store.fail_read_qps * dt
    fail_w = store.fail_write_qps * dt
    if fail_r > 0 or fail_w > 0:
        for i, (_, share, _, _) in enumerate(GRPC_TYPES):
            m.grpc_fail[i] += (fail_r if i < len(READ_TYPES) else fail_w) * share
    if writes > 0:
        for k in range(len(SCHED_TYPES)):
            n = writes * 0.5
            m.sched_count[k] += n
            m.sched_sum[k] += n * p.sched_mean[k]
            buckets = m.sched_buckets[k]
            fractions = p.sched_cdf[k]
            for j in range(len(buckets)):
                buckets[j] += n * fractions[j]
        if store.slow_latency_ms >= 1000:
            m.too_busy += writes * 0.02
    for i, rate in enumerate(thread_cpu_rates(store)):
        m.cpu[i] += rate * dt
    if store.reachable:
        for other in unreachable:
            if other != store.id:
                m.unreachable[other] = m.unreachable.get(other, 0.0) + 0.5 * dt
    m.acc_time = now


def _mixture_quantile(components: list[tuple[float, float, float]], q: float) -> float:
    """The q-quantile (seconds) of a weighted mixture of shifted log-normals (weight, median, shift)."""
    total = sum(w for w, _, _ in components)
    if total <= 0:
        return 0.0
    lo, hi = 1e-6, 600.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        f = sum(w * latency_cdf(mid, m, s) for w, m, s in components) / total
        if f < q:
            lo = mid
        else:
            hi = mid
    return hi


def store_components(store: Store) -> list[tuple[float, float, float]]:
    """(requests per second, median, added latency) of each request type this store serves."""
    factor = load_factor(store.read_qps + store.write_qps)
    shift = store.slow_latency_ms / 1000.0 + CLIENT_RTT
    out = []
    for i, (_, share, median, _) in enumerate(GRPC_TYPES):
        rate = (store.read_qps if i < len(READ_TYPES) else store.write_qps) * share
        if rate > 0:
            out.append((rate, median * factor, shift))
    return out


def merge_components(components: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Merge components with (nearly) the same shape so a 1,000-store mixture stays cheap."""
    merged: dict[tuple[float, float], float] = {}
    for w, m, s in components:
        key = (float(f"{m:.3g}"), float(f"{s:.3g}"))
        merged[key] = merged.get(key, 0.0) + w
    return [(w, m, s) for (m, s), w in merged.items()]


def p99_ms(components: list[tuple[float, float, float]]) -> float:
    return round(_mixture_quantile(merge_components(components), 0.99) * 1000.0, 3)
