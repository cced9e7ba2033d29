"""A PD-compatible TiKV cluster simulator: PD's HTTP API, one TiKV status port per store, faults.

from subjects.tikv.sim import SimConfig, SimServer, start_sim_thread
sim = start_sim_thread(SimConfig(port=0, stores=5, regions=120, time_scale=10.0, seed=1))
sim.pd_url  # "http://127.0.0.1:<port>"
sim.stop()
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
