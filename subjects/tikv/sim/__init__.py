"""A PD-compatible TiKV cluster simulator: PD's HTTP API, one TiKV status port per store, faults.

    from subjects.tikv.sim import SimConfig, SimServer, start_sim_thread
    sim = start_sim_thread(SimConfig(port=0, stores=5, regions=120, time_scale=10.0, seed=1))
    sim.pd_url  # "http://127.0.0.1:<port>"
    sim.admin_url, sim.host_agent_url
    sim.stop()

PD's port serves only PD's /pd/api/v1 and /metrics. The simulator's own API is on a separate
admin listener (`admin_url`) that an operator is never told about:

    GET    /sim/v1/info                 {"time_scale", "sim_now", "wall_now", "stores", "regions", "seed"}
    GET    /sim/v1/workload             client-side view {"qps", "error_rate", "p99_ms", "per_store"}
    GET    /sim/v1/workload/buckets[?after=T]  one bucket per wall second: {"t_wall", "planned", "ok",
                                        "fail", "p99_ms", ...} (complete seconds after T)
    POST   /sim/v1/faults               {"kind": ..., params, ["id"], ["duration_s"]} -> the fault record
                                        (400 {"error"} if refused); duration_s: ends by itself
    GET    /sim/v1/faults[/{id}]        records with "active", "injected_at", "reverted_at" (sim seconds)
    DELETE /sim/v1/faults/{id}          revert (idempotent; 404 for an unknown id)
    GET    /sim/v1/stores               each store process: id, running, status_address, partitioned, faults
    POST   /sim/v1/stores/{id}/restart  stop if running, then start (also ends a kill_store fault)
    POST   /sim/v1/stores/{id}/stop

The host agent (`host_agent_url`) is what a supervisor on each machine offers the operator:
GET /host/v1/stores, POST /host/v1/stores/{id}/restart|stop (the same answers as above).

Fault kinds: kill_store(store_id), slow_store(store_id, latency_ms=500), disk_full(store_id,
used_ratio=0.95), partition_store(store_id), hot_region(region_id, qps=5000, write_ratio=0.3),
skew_leaders(store_id), pd_down, pd_garbage, status_hang(store_id).
"""

from subjects.tikv.sim.clock import Clock, ManualClock, WallClock
from subjects.tikv.sim.config import SimConfig
from subjects.tikv.sim.model import Cluster
from subjects.tikv.sim.server import SimServer, SimThread, run_until_signal, start_sim_thread

__all__ = [
    "Clock",
    "Cluster",
    "ManualClock",
    "SimConfig",
    "SimServer",
    "SimThread",
    "WallClock",
    "run_until_signal",
    "start_sim_thread",
]
