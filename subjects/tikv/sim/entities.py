"""The simulated cluster's records: stores, regions and peers (compact: __slots__ everywhere).

A 100,000-region cluster holds 300,000 peers; these classes carry only what the model needs, and
each aggregate a store reports is kept up to date incrementally by the model's mutators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from subjects.tikv.sim.workload import StoreMetrics

# metapb.StoreState
UP, OFFLINE, TOMBSTONE = 0, 1, 2
# metapb.NodeState, moved together with the meta state
PREPARING, SERVING, REMOVING, REMOVED = 0, 1, 2, 3
NODE_STATE = {UP: SERVING, OFFLINE: REMOVING, TOMBSTONE: REMOVED}

HEARTBEAT_INTERVAL = 10.0  # pd-store-heartbeat-tick-interval
DISCONNECT_AFTER = 20.0  # storeDisconnectDuration
UNHEALTHY_AFTER = 600.0  # storeUnhealthyDuration
PEER_DOWN_AFTER = 600.0  # max-peer-down-duration
ELECTION_TIMEOUT = 10.0  # raft-base-tick-interval (1s) * raft-election-timeout-ticks (10)
SLOW_SCORE_RAMP = 30.0  # seconds for TiKV's slow score to climb from 1 to 100 (and to recover)


class Peer:
    __slots__ = ("id", "learner", "store_id")

    def __init__(self, peer_id: int, store_id: int, learner: bool = False) -> None:
        self.id = peer_id
        self.store_id = store_id
        self.learner = learner


class Store:
    __slots__ = (
        "address",
        "capacity",
        "catch_up_until",
        "deploy_path",
        "disk_full_ratio",
        "fail_read_qps",
        "fail_write_qps",
        "git_hash",
        "hb_available",
        "hb_capacity",
        "hb_gen",
        "hb_slow_score",
        "hb_used",
        "id",
        "last_hb",
        "leader_count",
        "leader_keys",
        "leader_regions",
        "leader_size",
        "leader_weight",
        "learner_count",
        "meta_state",
        "metrics",
        "other_used",
        "partitioned",
        "peer_address",
        "peer_regions",
        "peer_write_qps",
        "physically_destroyed",
        "read_qps",
        "region_count",
        "region_keys",
        "region_size",
        "region_weight",
        "removing_initial_size",
        "removing_since",
        "running",
        "silent_since",
        "slow_anchor_t",
        "slow_anchor_v",
        "slow_latency_ms",
        "slow_target",
        "snap_pending",
        "start_ts",
        "status_address",
        "version",
        "view_cache",
        "write_qps",
    )

    def __init__(self, store_id: int, status_address: str) -> None:
        self.id = store_id
        self.address = f"127.0.0.1:{20160 + store_id}"
        self.peer_address = self.address
        self.status_address = status_address
        self.version = "8.5.0"
        self.git_hash = "ba73b0d92d94463d74543550d0efe61fa6a6f416"
        self.deploy_path = f"/data/tikv-{store_id}/bin"
        self.meta_state = UP
        self.physically_destroyed = False
        self.leader_weight = 1.0
        self.region_weight = 1.0
        # the process, as the host sees it
        self.running = True
        self.partitioned = False
        self.start_ts = 0.0
        self.catch_up_until = 0.0
        self.metrics: StoreMetrics | None = None
        # PD's view, refreshed by store heartbeats
        self.last_hb = 0.0
        self.hb_gen = 0
        self.silent_since: float | None = None
        self.hb_capacity = 0
        self.hb_available = 0
        self.hb_used = 0
        self.hb_slow_score = 1
        # disk and speed
        self.capacity = 0
        self.other_used = 0
        self.disk_full_ratio: float | None = None
        self.slow_latency_ms = 0.0
        self.slow_anchor_t = 0.0
        self.slow_anchor_v = 1.0
        self.slow_target = 1.0
        # aggregates over the region tree
        self.leader_count = 0
        self.leader_size = 0
        self.leader_keys = 0
        self.region_count = 0
        self.region_size = 0
        self.region_keys = 0
        self.learner_count = 0
        self.snap_pending = 0
        self.peer_regions: set[int] = set()
        self.leader_regions: set[int] = set()
        # load this store serves (as leader) or answers with errors (for leaderless regions)
        self.read_qps = 0.0
        self.write_qps = 0.0
        self.fail_read_qps = 0.0
        self.fail_write_qps = 0.0
        self.peer_write_qps = 0.0
        self.removing_initial_size = 0
        self.removing_since = 0.0
        # strings rendered from the last heartbeat, reused until the next one
        self.view_cache: tuple[tuple[float, float, int, int, int], dict[str, object]] | None = None

    @property
    def reachable(self) -> bool:
        """Alive and connected: can heartbeat, vote and lead."""
        return self.running and not self.partitioned

    def slow_score(self, now: float) -> float:
        """TiKV's slow score moves linearly between 1 and 100 over SLOW_SCORE_RAMP seconds."""
        span = now - self.slow_anchor_t
        if span >= SLOW_SCORE_RAMP or self.slow_anchor_v == self.slow_target:
            return self.slow_target
        return self.slow_anchor_v + (self.slow_target - self.slow_anchor_v) * span / SLOW_SCORE_RAMP

    def used_bytes(self) -> int:
        used = self.region_size * 1024 * 1024 + self.other_used
        if self.disk_full_ratio is not None:
            used = max(used, int(self.capacity * self.disk_full_ratio))
        return min(used, self.capacity)

    def available_bytes(self) -> int:
        if self.disk_full_ratio is not None:
            return max(0, int(self.capacity * (1.0 - self.disk_full_ratio)))
        # The file system holds more than TiKV's data (logs, other files): a fixed share of the disk.
        return max(0, self.capacity - self.used_bytes() - self.capacity // 4)


class Region:
    __slots__ = (
        "base_read",
        "base_write",
        "conf_ver",
        "end",
        "extra_read",
        "extra_write",
        "hot_read_since",
        "hot_write_since",
        "id",
        "json",
        "keys",
        "kv_size",
        "leader",
        "leaderless_since",
        "load_fail_read",
        "load_fail_write",
        "load_read",
        "load_store",
        "load_write",
        "peers",
        "size",
        "snapshot",
        "start",
        "version",
    )

    def __init__(self, region_id: int, start: bytes, end: bytes) -> None:
        self.id = region_id
        self.start = start
        self.end = end
        self.conf_ver = 1
        self.version = 1
        self.peers: list[Peer] = []
        self.leader: Peer | None = None
        self.size = 1  # approximate size, MiB
        self.keys = 0
        self.kv_size = 0
        self.base_read = 0.0
        self.base_write = 0.0
        self.extra_read = 0.0
        self.extra_write = 0.0
        # peer ids still receiving a snapshot (new learners), None when there are none
        self.snapshot: set[int] | None = None
        self.leaderless_since: float | None = None
        # what the region's load currently adds to one store's figures, so it can be taken back exactly
        self.load_store = 0
        self.load_fail_read = 0.0
        self.load_fail_write = 0.0
        self.load_read = 0.0
        self.load_write = 0.0
        self.json: bytes | None = None
        self.hot_read_since: float | None = None
        self.hot_write_since: float | None = None

    @property
    def read_qps(self) -> float:
        return self.base_read + self.extra_read

    @property
    def write_qps(self) -> float:
        return self.base_write + self.extra_write

    def peer_on(self, store_id: int) -> Peer | None:
        for p in self.peers:
            if p.store_id == store_id:
                return p
        return None

    def voters(self) -> list[Peer]:
        return [p for p in self.peers if not p.learner]
