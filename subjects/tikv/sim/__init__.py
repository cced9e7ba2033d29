"""A PD-compatible TiKV cluster simulator: PD's HTTP API, one TiKV status port per store, faults.

    from subjects.tikv.sim import SimConfig, SimServer, start_sim_thread
    sim = start_sim_thread(SimConfig(port=0, stores=5, regions=120, time_scale=10.0, seed=1))
    sim.pd_url  # "http://127.0.0.1:<port>"
    sim.stop()

Besides PD's /pd/api/v1 and /metrics, the PD port serves the simulator's own API:

    GET    /sim/v1/info                 {"time_scale", "sim_now", "wall_now", "stores", "regions", "seed"}
    GET    /sim/v1/workload             client-side view {"qps", "error_rate", "p99_ms", "per_store"}
    POST   /sim/v1/faults               {"kind": ..., params} -> the fault record (400 {"error"} if refused)
    GET    /sim/v1/faults[/{id}]        records with "active", "injected_at", "reverted_at" (sim seconds)
    DELETE /sim/v1/faults/{id}          revert (idempotent; 404 for an unknown id)
    GET    /sim/v1/stores               each store process: id, running, status_address, partitioned, faults
    POST   /sim/v1/stores/{id}/restart  stop if running, then start (also ends a kill_store fault)
    POST   /sim/v1/stores/{id}/stop

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
