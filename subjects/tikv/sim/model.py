"""The behaviour model: stores, regions, raft leadership, PD's view, and everything that changes them.

The model is a discrete-event simulation stepped by `advance_to(t)` (simulated seconds). It never
reads a clock itself, so tests can drive it with a manual clock and get identical state for the same
seed and the same sequence of advances and calls.

Bookkeeping is incremental: every change to a peer, a leader or a region's load goes through one
of the mutators below, which keep the per-store aggregates, the check indexes (miss-peer, down-peer
...) and the per-region JSON cache right, so no request and no tick has to scan all regions.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
from collections.abc import Callable, Iterable

from subjects.tikv.sim import workload
from subjects.tikv.sim.config import SimConfig
from subjects.tikv.sim.entities import (
    DISCONNECT_AFTER,
    ELECTION_TIMEOUT,
    HEARTBEAT_INTERVAL,
    OFFLINE,
    PEER_DOWN_AFTER,
    TOMBSTONE,
    UNHEALTHY_AFTER,
    UP,
    Peer,
    Region,
    Store,
)
from subjects.tikv.sim.errors import PDError, store_not_found, store_removed
from subjects.tikv.sim.events import EventQueue
from subjects.tikv.sim.operators import OperatorController
from subjects.tikv.sim.pd_config import PDConfig
from subjects.tikv.sim.schedulers import ReplicaChecker, SchedulerSet

log = logging.getLogger(__name__)

KEY_SPACE = 10**15  # numeric keys k000000000000000..; each region covers an equal slice at start
KEY_WIDTH = 15
COORDINATOR_INTERVAL = 1.0  # PD's scheduling loop, simulated seconds
STORE_CHECK_INTERVAL = 10.0  # nodeStateCheckJobInterval: Offline -> Tombstone
HISTORY_PURGE_INTERVAL = 60.0
MAX_EVENTS_PER_ADVANCE = 2_000_000
REGION_MAX_SIZE = 144  # MiB, region-max-size: larger is "oversized"
REGION_MAX_KEYS = 1_440_000
GIB = 1024**3


def key_of(n: int) -> bytes:
    return b"k%0*d" % (KEY_WIDTH, n)


def key_number(key: bytes) -> int | None:
    if len(key) == KEY_WIDTH + 1 and key[:1] == b"k" and key[1:].isdigit():
        return int(key[1:])
    return None


def _settle(x: float) -> float:
    """Sums of rates that went up and down again leave float dust; a rate that small is zero."""
    return 0.0 if -1e-6 < x < 1e-6 else x


def _toggle(index: set[int], rid: int, present: bool) -> None:
    if present:
        index.add(rid)
    else:
        index.discard(rid)


class Cluster:
    """A TiKV cluster and its PD, as one deterministic state machine."""

    def __init__(
        self,
        config: SimConfig,
        start: float,
        status_address: Callable[[int], str] | None = None,
    ) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.start = float(start)
        self.now = float(start)
        self.events = EventQueue()
        self.pd = PDConfig(
            max_store_down_time=config.max_store_down_time,
            max_replicas=config.replicas,
            store_ids=list(range(1, config.stores + 1)),
            pd_url=f"http://{config.host}:{config.port}",
        )
        self.cluster_id = (1 << 62) | self.rng.getrandbits(62)
        self.member_id = (1 << 60) | self.rng.getrandbits(60)
        self._next_id = config.stores + 1  # PD hands out store, region and peer ids from one counter
        self.stores: dict[int, Store] = {}
        self.regions: dict[int, Region] = {}
        self._starts: list[bytes] = []  # region start keys, sorted
        self._start_ids: list[int] = []  # region id for each entry of _starts
        # indexes over regions and stores
        self.leaderless: set[int] = set()
        self.silent: set[int] = set()  # stores PD and peers cannot reach (stopped or partitioned)
        self.catching_up: set[int] = set()  # stores whose peers are pending after a restart
        self.offline: set[int] = set()
        self.snapshot_regions: set[int] = set()
        self.miss_peer: set[int] = set()
        self.extra_peer: set[int] = set()
        self.learner_peer: set[int] = set()
        self.empty_region: set[int] = set()
        self.oversized: set[int] = set()
        self.undersized: set[int] = set()
        self.hot_read: set[int] = set()
        self.hot_write: set[int] = set()
        self.slow_stores: set[int] = set()  # PD saw slow_score >= 80 in the last heartbeat
        # totals for the client-side view
        self.fail_read_total = 0.0
        self.fail_write_total = 0.0
        self.load_version = 0
        # bumped by every change a balancer cares about (leaders, peers, store states, weights)
        self.epoch = 0
        self.checker_events: dict[tuple[str, str], int] = {}
        # called with (store_id, running) when a store process starts or stops
        self.process_hook: Callable[[int, bool], None] | None = None
        self._status_address = status_address or (lambda sid: f"127.0.0.1:{20180 + sid}")

        self.operators = OperatorController(self)
        self.checker = ReplicaChecker(self)
        self.schedulers = SchedulerSet(self)
        self._build()
        self.events.push(self.now + COORDINATOR_INTERVAL, self._coordinate)
        self._next_store_check = self.now + STORE_CHECK_INTERVAL
        self._next_purge = self.now + HISTORY_PURGE_INTERVAL

    # ------------------------------------------------------------------ construction

    def alloc_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _build(self) -> None:
        cfg = self.config
        rng = self.rng
        for sid in range(1, cfg.stores + 1):
            s = Store(sid, self._status_address(sid))
            s.capacity = int(rng.uniform(480, 520) * GIB)
            s.other_used = int(rng.uniform(1, 3) * GIB)
            s.start_ts = float(math.floor(self.start - rng.uniform(2 * 3600, 72 * 3600)))
            s.last_hb = self.start - rng.uniform(0, HEARTBEAT_INTERVAL)
            s.metrics = workload.StoreMetrics(s.start_ts)
            self.stores[sid] = s
        self._base_hot_threshold()
        n = cfg.regions
        weights = workload.region_weights(rng, n)
        total_w = sum(weights)
        read_total = cfg.total_qps * cfg.read_ratio
        write_total = cfg.total_qps - read_total
        order = list(range(1, cfg.stores + 1))
        rng.shuffle(order)
        spacing = KEY_SPACE // n
        for i in range(n):
            rid = self.alloc_id()
            start = b"" if i == 0 else key_of(i * spacing)
            end = b"" if i == n - 1 else key_of((i + 1) * spacing)
            r = Region(rid, start, end)
            u = rng.random()
            if u < 0.01:
                r.size = 1
                r.keys = rng.randint(0, 200)
            elif u < 0.05:
                r.size = rng.randint(2, 50)
                r.keys = r.size * rng.randint(7000, 9000)
            else:
                r.size = rng.randint(56, 110)
                r.keys = r.size * rng.randint(7000, 9000)
            r.kv_size = int(r.size * 0.9)
            r.conf_ver = cfg.replicas + 2
            r.version = rng.randint(2, 60)
            share = weights[i] / total_w
            r.base_read = read_total * share
            r.base_write = write_total * share
            for j in range(cfg.replicas):
                sid = order[(i + j) % cfg.stores]
                self._attach_peer(r, Peer(self.alloc_id(), sid), reindex=False)
            self._reindex(r)
            self.regions[rid] = r
            self._starts.append(start)
            self._start_ids.append(rid)
            leader = r.peers[(i // cfg.stores) % cfg.replicas]
            self._set_leader(r, leader)
            self._rehot(r)
        for s in self.stores.values():
            # The processes have been up since start_ts at today's rates: counters start from there.
            s.metrics = workload.StoreMetrics(s.start_ts)
            self._take_heartbeat(s)
            s.last_hb = self.start - rng.uniform(0, HEARTBEAT_INTERVAL)
            self.events.push(s.last_hb + HEARTBEAT_INTERVAL, self._heartbeat, s.id, s.hb_gen)

    def _base_hot_threshold(self) -> None:
        n = max(1, self.config.regions)
        mean_read = self.config.total_qps * self.config.read_ratio / n
        mean_write = self.config.total_qps * (1 - self.config.read_ratio) / n
        self.hot_read_threshold = max(200.0, 10.0 * mean_read)
        self.hot_write_threshold = max(100.0, 10.0 * mean_write)

    # ------------------------------------------------------------------ time

    def advance_to(self, t: float) -> None:
        """Run every event due up to simulated time t, in order."""
        if t <= self.now:
            return
        budget = MAX_EVENTS_PER_ADVANCE
        events = self.events
        while True:
            nxt = events.next_time()
            if nxt is None or nxt > t:
                break
            if budget == 0:
                log.warning("simulator fell behind: %d events pending at %.3f", len(events), self.now)
                return
            at, fn, args = events.pop()
            if at > self.now:
                self.now = at
            fn(*args)
            budget -= 1
        self.now = t

    def _coordinate(self) -> None:
        """PD's scheduling loop: checkers, schedulers, store state checks."""
        now = self.now
        try:
            if now >= self._next_store_check:
                self._next_store_check = now + STORE_CHECK_INTERVAL
                self._check_stores()
            if now >= self._next_purge:
                self._next_purge = now + HISTORY_PURGE_INTERVAL
                self.operators.purge()
            self.checker.run()
            self.schedulers.run(now)
        finally:
            self.events.push(now + COORDINATOR_INTERVAL, self._coordinate)

    # ------------------------------------------------------------------ PD's view of a store

    def state_name(self, s: Store) -> str:
        if s.meta_state == OFFLINE:
            return "Offline"
        if s.meta_state == TOMBSTONE:
            return "Tombstone"
        since = self.now - s.last_hb
        if since > self.pd.max_store_down_time:
            return "Down"
        if since > DISCONNECT_AFTER:
            return "Disconnected"
        return "Up"

    def is_disconnected(self, s: Store) -> bool:
        return self.now - s.last_hb > DISCONNECT_AFTER

    def is_down(self, s: Store) -> bool:
        return self.now - s.last_hb >= self.pd.max_store_down_time

    def is_unhealthy(self, s: Store) -> bool:
        return self.now - s.last_hb > UNHEALTHY_AFTER

    def is_low_space(self, s: Store) -> bool:
        if s.hb_capacity <= 0:
            return False
        return s.hb_available < s.hb_capacity * (1.0 - self.pd.low_space_ratio)

    def evicted_stores(self) -> set[int]:
        return self.schedulers.evicted_stores()

    def allow_leader_in(self, s: Store, evicted: set[int] | None = None) -> bool:
        """PD's filter for a store that may receive a leader (pass `evicted` when checking many)."""
        if s.meta_state != UP or s.leader_weight <= 0 or self.is_disconnected(s):
            return False
        return s.id not in (self.schedulers.evicted_stores() if evicted is None else evicted)

    def allow_peer_in(self, s: Store) -> bool:
        """PD's filter for a store that may receive a new replica."""
        return s.meta_state == UP and not self.is_disconnected(s) and not self.is_low_space(s)

    def region_score(self, s: Store, delta: int = 0) -> float:
        """PD's region score, formula v2: region size, steeply penalised when the disk runs low."""
        capacity = s.hb_capacity / GIB
        available = s.hb_available / GIB
        size = float(s.region_size + delta)
        if available >= capacity or capacity < 1:
            score = size
        else:
            floor = max(50.0, capacity * (1.0 - self.pd.low_space_ratio))
            if available > floor:
                score = (
                    1
                    + 256
                    * (math.log(capacity) - math.log(available - floor + 1))
                    / (capacity - available + floor - 1)
                ) * size
            else:
                score = (1 + 256 * math.log(capacity) / capacity) * size + 1e10 * (floor - available) / floor
        return score / max(s.region_weight, 1e-6)

    def leader_score(self, s: Store, delta: int = 0) -> float:
        return (s.leader_count + delta) / max(s.leader_weight, 1e-6)

    def pending_peer_count(self, s: Store) -> int:
        if s.id in self.catching_up or self._long_silent(s):
            return s.region_count
        return s.snap_pending

    def _long_silent(self, s: Store) -> bool:
        return s.silent_since is not None and self.now - s.silent_since >= PEER_DOWN_AFTER

    # ------------------------------------------------------------------ heartbeats and processes

    def _take_heartbeat(self, s: Store) -> None:
        s.last_hb = self.now
        s.hb_capacity = s.capacity
        s.hb_available = s.available_bytes()
        s.hb_used = s.used_bytes()
        s.hb_slow_score = round(s.slow_score(self.now))
        _toggle(self.slow_stores, s.id, s.hb_slow_score >= 80)

    def _heartbeat(self, sid: int, gen: int) -> None:
        s = self.stores[sid]
        if gen != s.hb_gen or not s.reachable:
            return
        self._take_heartbeat(s)
        self.events.push(self.now + HEARTBEAT_INTERVAL, self._heartbeat, sid, gen)

    def _flush_all(self) -> None:
        self.epoch += 1
        for s in self.stores.values():
            workload.flush(s, self.now, self.silent)

    def flush_store(self, s: Store) -> None:
        workload.flush(s, self.now, self.silent)

    def stop_store(self, sid: int) -> bool:
        """The store's process exits. False if it was not running."""
        s = self.stores[sid]
        if not s.running:
            return False
        self._flush_all()
        was_reachable = s.reachable
        s.running = False
        s.hb_gen += 1
        s.metrics = None
        self.catching_up.discard(sid)
        if was_reachable:
            self._went_silent(s)
        if self.process_hook:
            self.process_hook(sid, False)
        return True

    def start_store(self, sid: int) -> bool:
        """The store's process starts (a fresh process: its counters start from zero)."""
        s = self.stores[sid]
        if s.running:
            return False
        self._flush_all()
        s.running = True
        s.start_ts = float(math.floor(self.now))
        s.metrics = workload.StoreMetrics(self.now)
        if not s.partitioned:
            self._came_back(s)
        if self.process_hook:
            self.process_hook(sid, True)
        return True

    def partition_store(self, sid: int) -> bool:
        s = self.stores[sid]
        if s.partitioned:
            return False
        self._flush_all()
        was_reachable = s.reachable
        s.partitioned = True
        s.hb_gen += 1
        if was_reachable:
            self._went_silent(s)
        return True

    def heal_store(self, sid: int) -> bool:
        s = self.stores[sid]
        if not s.partitioned:
            return False
        self._flush_all()
        s.partitioned = False
        if s.running:
            self._came_back(s)
        return True

    def _went_silent(self, s: Store) -> None:
        s.silent_since = self.now
        self.silent.add(s.id)
        for rid in sorted(s.leader_regions):
            self._lose_leader(self.regions[rid])
        for rid in sorted(s.peer_regions):
            r = self.regions[rid]
            if r.leader is not None:
                self.events.push(self.now + ELECTION_TIMEOUT, self._check_quorum, rid)
            elif r.load_store == s.id:
                self._reassign_load(r)
        for rid in s.peer_regions:
            self.regions[rid].json = None
        self.load_version += 1

    def _came_back(self, s: Store) -> None:
        silent_for = self.now - s.silent_since if s.silent_since is not None else 0.0
        s.silent_since = None
        self.silent.discard(s.id)
        s.hb_gen += 1
        self._take_heartbeat(s)
        self.events.push(self.now + HEARTBEAT_INTERVAL, self._heartbeat, s.id, s.hb_gen)
        # Followers that missed log entries need entries or a snapshot: pending for a while.
        catch_up = min(60.0, max(2.0, 2.0 + silent_for * 0.02))
        s.catch_up_until = self.now + catch_up
        self.catching_up.add(s.id)
        self.events.push(s.catch_up_until, self._caught_up, s.id, s.catch_up_until)
        for rid in sorted(s.peer_regions & self.leaderless):
            r = self.regions[rid]
            self._reassign_load(r)
            self.events.push(self.now + ELECTION_TIMEOUT * 0.5 + self.rng.uniform(0, 1.0), self._elect, rid)
        for rid in s.peer_regions:
            self.regions[rid].json = None
        self.load_version += 1

    def _caught_up(self, sid: int, until: float) -> None:
        s = self.stores[sid]
        if s.catch_up_until != until or sid not in self.catching_up:
            return
        self.catching_up.discard(sid)
        for rid in s.peer_regions:
            self.regions[rid].json = None

    def set_slow(self, sid: int, latency_ms: float) -> None:
        s = self.stores[sid]
        self.flush_store(s)
        s.slow_anchor_v = s.slow_score(self.now)
        s.slow_anchor_t = self.now
        s.slow_target = 100.0 if latency_ms > 0 else 1.0
        s.slow_latency_ms = latency_ms
        if s.metrics is not None:
            s.metrics.dirty = True
        self.load_version += 1

    def set_disk_full(self, sid: int, ratio: float | None) -> None:
        s = self.stores[sid]
        s.disk_full_ratio = ratio
        if s.reachable:
            self._take_heartbeat(s)
        for rid in sorted(s.leader_regions):
            self._reassign_load(self.regions[rid])
        self.load_version += 1

    def write_blocked(self, s: Store) -> bool:
        return s.available_bytes() < workload.WRITE_RESERVE_BYTES

    # ------------------------------------------------------------------ raft leadership

    def _lose_leader(self, r: Region) -> None:
        if r.leader is None:
            return
        self.epoch += 1
        self._unassign_load(r)
        s = self.stores[r.leader.store_id]
        s.leader_count -= 1
        s.leader_size -= r.size
        s.leader_keys -= r.keys
        s.leader_regions.discard(r.id)
        r.leader = None
        r.leaderless_since = self.now
        self.leaderless.add(r.id)
        r.json = None
        self._assign_load(r)
        self.events.push(self.now + ELECTION_TIMEOUT + self.rng.uniform(0, 2.0), self._elect, r.id)

    def _elect(self, rid: int) -> None:
        r = self.regions.get(rid)
        if r is None or r.leader is not None:
            return
        voters = r.voters()
        live = [p for p in voters if self.stores[p.store_id].reachable]
        if not voters or len(live) < len(voters) // 2 + 1:
            return  # no quorum: stays leaderless until a store comes back
        self._set_leader(r, live[self.rng.randrange(len(live))])

    def _check_quorum(self, rid: int) -> None:
        """A leader that cannot hear from a quorum steps down (raft check-quorum)."""
        r = self.regions.get(rid)
        if r is None or r.leader is None:
            return
        voters = r.voters()
        live = sum(1 for p in voters if self.stores[p.store_id].reachable)
        if live < len(voters) // 2 + 1:
            self._lose_leader(r)

    def _set_leader(self, r: Region, peer: Peer) -> None:
        self.epoch += 1
        self._unassign_load(r)
        if r.leader is not None:
            old = self.stores[r.leader.store_id]
            old.leader_count -= 1
            old.leader_size -= r.size
            old.leader_keys -= r.keys
            old.leader_regions.discard(r.id)
        else:
            self.leaderless.discard(r.id)
            r.leaderless_since = None
        r.leader = peer
        s = self.stores[peer.store_id]
        s.leader_count += 1
        s.leader_size += r.size
        s.leader_keys += r.keys
        s.leader_regions.add(r.id)
        r.json = None
        self._assign_load(r)

    def transfer_leader(self, r: Region, to_store: int) -> bool:
        peer = r.peer_on(to_store)
        if peer is None or peer.learner or r.leader is None:
            return False
        if r.leader.store_id != to_store:
            self._set_leader(r, peer)
        return True

    # ------------------------------------------------------------------ load accounting

    def _load_target(self, r: Region) -> tuple[int, float, float, float, float]:
        read, write = r.read_qps, r.write_qps
        if r.leader is not None:
            s = self.stores[r.leader.store_id]
            if self.write_blocked(s):
                return s.id, read, 0.0, 0.0, write
            return s.id, read, write, 0.0, 0.0
        for p in r.peers:  # leaderless: some live peer answers "not leader" and counts the failure
            if self.stores[p.store_id].reachable:
                return p.store_id, 0.0, 0.0, read, write
        return 0, 0.0, 0.0, read, write

    def _assign_load(self, r: Region) -> None:
        sid, ok_r, ok_w, f_r, f_w = self._load_target(r)
        r.load_store, r.load_read, r.load_write, r.load_fail_read, r.load_fail_write = (
            sid,
            ok_r,
            ok_w,
            f_r,
            f_w,
        )
        self.fail_read_total += f_r
        self.fail_write_total += f_w
        if sid:
            s = self.stores[sid]
            self.flush_store(s)
            s.read_qps += ok_r
            s.write_qps += ok_w
            s.fail_read_qps += f_r
            s.fail_write_qps += f_w
            if s.metrics is not None:
                s.metrics.dirty = True
        self.load_version += 1

    def _unassign_load(self, r: Region) -> None:
        self.fail_read_total = _settle(self.fail_read_total - r.load_fail_read)
        self.fail_write_total = _settle(self.fail_write_total - r.load_fail_write)
        if r.load_store:
            s = self.stores[r.load_store]
            self.flush_store(s)
            s.read_qps = _settle(s.read_qps - r.load_read)
            s.write_qps = _settle(s.write_qps - r.load_write)
            s.fail_read_qps = _settle(s.fail_read_qps - r.load_fail_read)
            s.fail_write_qps = _settle(s.fail_write_qps - r.load_fail_write)
            if s.metrics is not None:
                s.metrics.dirty = True
        r.load_store, r.load_read, r.load_write, r.load_fail_read, r.load_fail_write = 0, 0.0, 0.0, 0.0, 0.0

    def _reassign_load(self, r: Region) -> None:
        self._unassign_load(r)
        self._assign_load(r)

    def set_region_extra_load(self, r: Region, read: float, write: float) -> None:
        self._unassign_load(r)
        for p in r.peers:
            self.stores[p.store_id].peer_write_qps += write - r.extra_write
        r.extra_read = read
        r.extra_write = write
        self._assign_load(r)
        self._rehot(r)
        r.json = None

    def _rehot(self, r: Region) -> None:
        if r.read_qps >= self.hot_read_threshold:
            if r.id not in self.hot_read:
                self.hot_read.add(r.id)
                r.hot_read_since = self.now
        elif r.id in self.hot_read:
            self.hot_read.discard(r.id)
            r.hot_read_since = None
        if r.write_qps >= self.hot_write_threshold:
            if r.id not in self.hot_write:
                self.hot_write.add(r.id)
                r.hot_write_since = self.now
        elif r.id in self.hot_write:
            self.hot_write.discard(r.id)
            r.hot_write_since = None

    # ------------------------------------------------------------------ peers

    def _attach_peer(self, r: Region, peer: Peer, reindex: bool = True) -> None:
        self.epoch += 1
        r.peers.append(peer)
        s = self.stores[peer.store_id]
        s.peer_regions.add(r.id)
        s.region_count += 1
        s.region_size += r.size
        s.region_keys += r.keys
        s.peer_write_qps += r.write_qps
        if peer.learner:
            s.learner_count += 1
        r.json = None
        if reindex:
            self._reindex(r)

    def _detach_peer(self, r: Region, peer: Peer) -> None:
        self.epoch += 1
        r.peers.remove(peer)
        s = self.stores[peer.store_id]
        s.peer_regions.discard(r.id)
        s.region_count -= 1
        s.region_size -= r.size
        s.region_keys -= r.keys
        s.peer_write_qps = _settle(s.peer_write_qps - r.write_qps)
        if peer.learner:
            s.learner_count -= 1
        self.finish_snapshot(r, peer)
        if r.leader is peer:
            self._lose_leader(r)
        elif r.leader is None and r.load_store == peer.store_id:
            self._reassign_load(r)
        r.json = None
        self._reindex(r)

    def add_learner(self, r: Region, store_id: int, peer_id: int) -> Peer:
        """A conf change adds a learner; it stays pending until its snapshot is applied."""
        peer = Peer(peer_id, store_id, learner=True)
        self._attach_peer(r, peer)
        if r.snapshot is None:
            r.snapshot = set()
        r.snapshot.add(peer_id)
        self.stores[store_id].snap_pending += 1
        self.snapshot_regions.add(r.id)
        r.conf_ver += 1
        return peer

    def finish_snapshot(self, r: Region, peer: Peer) -> None:
        if r.snapshot is not None and peer.id in r.snapshot:
            r.snapshot.discard(peer.id)
            self.stores[peer.store_id].snap_pending -= 1
            if not r.snapshot:
                r.snapshot = None
                self.snapshot_regions.discard(r.id)
            r.json = None

    def promote_learner(self, r: Region, peer: Peer) -> None:
        if not peer.learner:
            return
        self.epoch += 1
        peer.learner = False
        self.stores[peer.store_id].learner_count -= 1
        r.conf_ver += 1
        r.json = None
        self._reindex(r)

    def remove_peer(self, r: Region, peer: Peer) -> None:
        self._detach_peer(r, peer)
        r.conf_ver += 1

    def _reindex(self, r: Region) -> None:
        n = len(r.peers)
        want = self.pd.max_replicas
        rid = r.id
        _toggle(self.miss_peer, rid, n < want)
        _toggle(self.extra_peer, rid, n > want)
        learner = False
        for p in r.peers:
            if p.learner:
                learner = True
                break
        _toggle(self.learner_peer, rid, learner)
        _toggle(self.empty_region, rid, r.size <= 1)
        _toggle(self.oversized, rid, r.size > REGION_MAX_SIZE or r.keys > REGION_MAX_KEYS)
        _toggle(
            self.undersized,
            rid,
            r.size < self.pd.max_merge_region_size and r.keys < self.pd.max_merge_region_keys,
        )

    def reindex_all(self) -> None:
        """After max-replicas or merge thresholds change: the one place that visits every region."""
        for r in self.regions.values():
            self._reindex(r)

    # ------------------------------------------------------------------ keys, split and merge

    def region_by_key(self, key: bytes) -> Region | None:
        i = bisect.bisect_right(self._starts, key) - 1
        if i < 0:
            return None
        r = self.regions[self._start_ids[i]]
        if r.end and key >= r.end:
            return None
        return r

    def regions_in_key_order(self) -> Iterable[Region]:
        regions = self.regions
        return (regions[rid] for rid in self._start_ids)

    def regions_in_range(self, start: bytes, end: bytes) -> list[Region]:
        """Regions overlapping [start, end); an empty end means "to the end of the key space"."""
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        out = []
        while i < len(self._start_ids):
            r = self.regions[self._start_ids[i]]
            if end and r.start >= end:
                break
            if not r.end or r.end > start:
                out.append(r)
            i += 1
        return out

    def split_points(self, r: Region, parts: int) -> list[bytes]:
        """Keys that cut the region into `parts` equal slices (the "approximate" policy)."""
        lo = 0 if not r.start else key_number(r.start)
        hi = KEY_SPACE if not r.end else key_number(r.end)
        if lo is None or hi is None:
            # A region bounded by a user-supplied key: cut just after its start key.
            return [r.start + b"\x80"] if not r.end or r.start + b"\x80" < r.end else []
        if hi - lo < parts:
            return []
        return [key_of(lo + (hi - lo) * k // parts) for k in range(1, parts)]

    def _strip(self, r: Region) -> tuple[list[Peer], int | None]:
        """Take a region out of every store aggregate, before its size or key range changes."""
        self.epoch += 1
        self._unassign_load(r)
        leader_store = None
        if r.leader is not None:
            leader_store = r.leader.store_id
            s = self.stores[leader_store]
            s.leader_count -= 1
            s.leader_size -= r.size
            s.leader_keys -= r.keys
            s.leader_regions.discard(r.id)
            r.leader = None
        peers = list(r.peers)
        for p in peers:
            self.finish_snapshot(r, p)
            st = self.stores[p.store_id]
            st.peer_regions.discard(r.id)
            st.region_count -= 1
            st.region_size -= r.size
            st.region_keys -= r.keys
            st.peer_write_qps = _settle(st.peer_write_qps - r.write_qps)
            if p.learner:
                st.learner_count -= 1
        r.peers = []
        return peers, leader_store

    def _restore(self, r: Region, peers: list[Peer], leader_store: int | None) -> None:
        for p in peers:
            self._attach_peer(r, p)
        leader = r.peer_on(leader_store) if leader_store is not None else None
        if leader is not None:
            self._set_leader(r, leader)
        else:
            self.leaderless.add(r.id)
            if r.leaderless_since is None:
                r.leaderless_since = self.now
            self._assign_load(r)
        self._rehot(r)
        r.json = None

    def split_region(self, r: Region, keys: list[bytes]) -> list[Region]:
        """Split at the given keys; the original region keeps the right-most part (right-derive)."""
        cuts = sorted({k for k in keys if k > r.start and (not r.end or k < r.end)})
        if not cuts or r.leader is None:
            return []
        parts = len(cuts) + 1
        i = bisect.bisect_left(self._starts, r.start)
        peers, leader_store = self._strip(r)
        bounds = [r.start, *cuts, r.end]
        size_each = max(1, r.size // parts)
        keys_each = r.keys // parts
        read_each = r.base_read / parts
        write_each = r.base_write / parts
        version = r.version + len(cuts)
        created: list[Region] = []
        for k in range(parts - 1):
            nr = Region(self.alloc_id(), bounds[k], bounds[k + 1])
            nr.size, nr.keys, nr.kv_size = size_each, keys_each, int(size_each * 0.9)
            nr.base_read, nr.base_write = read_each, write_each
            nr.conf_ver, nr.version = r.conf_ver, version
            self.regions[nr.id] = nr
            self._restore(nr, [Peer(self.alloc_id(), p.store_id, p.learner) for p in peers], leader_store)
            created.append(nr)
        r.start = cuts[-1]
        r.size, r.keys, r.kv_size = size_each, keys_each, int(size_each * 0.9)
        r.base_read, r.base_write = read_each, write_each
        r.version = version
        self._restore(r, peers, leader_store)
        # key index: the original now starts at the last cut and its new siblings slot in before it
        self._starts[i] = r.start
        for k, nr in enumerate(created):
            self._starts.insert(i + k, nr.start)
            self._start_ids.insert(i + k, nr.id)
        return created

    def adjacent(self, a: Region, b: Region) -> bool:
        return (bool(a.end) and a.end == b.start) or (bool(b.end) and b.end == a.start)

    def merge_regions(self, source: Region, target: Region) -> None:
        """Target absorbs source (TiKV's PrepareMerge/CommitMerge, collapsed into one step)."""
        self._strip(source)
        for index in (
            self.leaderless,
            self.miss_peer,
            self.extra_peer,
            self.learner_peer,
            self.empty_region,
            self.oversized,
            self.undersized,
            self.hot_read,
            self.hot_write,
            self.snapshot_regions,
        ):
            index.discard(source.id)
        si = bisect.bisect_left(self._starts, source.start)
        del self._starts[si]
        del self._start_ids[si]
        del self.regions[source.id]
        peers, leader_store = self._strip(target)
        if source.end == target.start:
            ti = bisect.bisect_left(self._starts, target.start)
            target.start = source.start
            self._starts[ti] = target.start
        else:
            target.end = source.end
        target.size += source.size
        target.keys += source.keys
        target.kv_size = int(target.size * 0.9)
        target.base_read += source.base_read
        target.base_write += source.base_write
        target.extra_read += source.extra_read
        target.extra_write += source.extra_write
        target.version = max(source.version, target.version) + 1
        target.conf_ver = max(source.conf_ver, target.conf_ver)
        self._restore(target, peers, leader_store)

    # ------------------------------------------------------------------ checks (regions/check/*)

    def down_peers(self, r: Region) -> list[tuple[Peer, int]]:
        out = []
        if not self.silent:
            return out
        for p in r.peers:
            s = self.stores[p.store_id]
            if s.silent_since is not None and self.now - s.silent_since >= PEER_DOWN_AFTER:
                out.append((p, int(self.now - s.silent_since)))
        return out

    def pending_peers(self, r: Region, down: list[tuple[Peer, int]]) -> list[Peer]:
        if r.snapshot is None and not self.catching_up and not down:
            return []
        down_ids = {p.id for p, _ in down}
        snap = r.snapshot or ()
        return [p for p in r.peers if p.id in snap or p.store_id in self.catching_up or p.id in down_ids]

    def has_time_dependent_json(self, r: Region) -> bool:
        """Regions with a peer on a silent store show down peers once it has been silent 10 minutes."""
        if not self.silent:
            return False
        return any(p.store_id in self.silent for p in r.peers)

    def _regions_on(self, store_ids: Iterable[int]) -> set[int]:
        out: set[int] = set()
        for sid in store_ids:
            out |= self.stores[sid].peer_regions
        return out

    def check_region_set(self, kind: str) -> set[int] | None:
        """Region ids for GET /regions/check/{kind} (do not modify); None for an unknown kind."""
        if kind == "miss-peer":
            return self.miss_peer
        if kind == "extra-peer":
            return self.extra_peer
        if kind == "learner-peer":
            return self.learner_peer
        if kind == "empty-region":
            return self.empty_region
        if kind == "oversized-region":
            return self.oversized
        if kind == "undersized-region":
            return self.undersized
        long_silent = [sid for sid in self.silent if self._long_silent(self.stores[sid])]
        if kind == "down-peer":
            return self._regions_on(long_silent)
        if kind == "pending-peer":
            return self.snapshot_regions | self._regions_on([*self.catching_up, *long_silent])
        if kind == "offline-peer":
            return self._regions_on(self.offline)
        return None

    def check_region_ids(self, kind: str) -> list[int] | None:
        ids = self.check_region_set(kind)
        return None if ids is None else sorted(ids)

    # ------------------------------------------------------------------ store administration (PD API)

    def get_store(self, sid: int, status: int = 404) -> Store:
        s = self.stores.get(sid)
        if s is None:
            raise store_not_found(sid, status)
        return s

    def remove_store(self, sid: int, force: bool) -> None:
        s = self.get_store(sid)
        if s.meta_state == OFFLINE and s.physically_destroyed == force:
            return
        if s.meta_state == TOMBSTONE:
            raise store_removed(sid)
        if s.physically_destroyed:
            raise PDError(400, f"[PD:core:ErrStoreDestroyed]store {sid} has been physically destroyed")
        if s.meta_state == UP and not force:
            up = [o.id for o in self.stores.values() if o.meta_state == UP and o.id != sid]
            if len(up) < self.pd.max_replicas:
                raise PDError(
                    400,
                    f"[PD:core:ErrStoresNotEnough]can not remove store {sid} since the number of up stores "
                    f"would be {len(up)} while need {self.pd.max_replicas}",
                )
            evicted = self.schedulers.evict_leader_stores()
            if up and all(u in evicted for u in up):
                raise PDError(
                    400,
                    f"[PD:core:ErrNoStoreForRegionLeader]can not remove store {sid} since there are no "
                    "extra up store to store the leader",
                )
        self.epoch += 1
        if s.meta_state == UP:
            s.removing_initial_size = s.region_size
            s.removing_since = self.now
        s.meta_state = OFFLINE
        s.physically_destroyed = s.physically_destroyed or force
        self.offline.add(sid)

    def up_store(self, sid: int) -> None:
        s = self.get_store(sid)
        if s.meta_state == TOMBSTONE:
            raise store_removed(sid)
        if s.physically_destroyed:
            raise PDError(400, f"[PD:core:ErrStoreDestroyed]store {sid} has been physically destroyed")
        if s.meta_state == OFFLINE:
            s.meta_state = UP
            self.offline.discard(sid)
            self.epoch += 1

    def set_store_weight(self, sid: int, leader: float, region: float) -> None:
        s = self.get_store(sid, status=500)
        s.leader_weight = leader
        s.region_weight = region
        self.epoch += 1

    def remove_tombstones(self) -> None:
        for sid in [s.id for s in self.stores.values() if s.meta_state == TOMBSTONE]:
            s = self.stores[sid]
            if s.running:  # a tombstone's process has nothing left to serve: it goes with the record
                s.running = False
                s.metrics = None
                if self.process_hook:
                    self.process_hook(sid, False)
            self.silent.discard(sid)
            self.catching_up.discard(sid)
            self.slow_stores.discard(sid)
            del self.stores[sid]

    def _check_stores(self) -> None:
        for sid in sorted(self.offline):
            s = self.stores[sid]
            if s.region_count == 0:
                s.meta_state = TOMBSTONE
                self.offline.discard(sid)
                log.info("store %d is now Tombstone", sid)

    def checker_event(self, checker: str, name: str) -> None:
        key = (checker, name)
        self.checker_events[key] = self.checker_events.get(key, 0) + 1

    def apply_config_change(self, changed: list[str]) -> None:
        """React to a POST /config that changed these keys."""
        if {"max-replicas", "max-merge-region-size", "max-merge-region-keys"} & set(changed):
            self.reindex_all()

    # ------------------------------------------------------------------ the client's view

    def workload_view(self) -> dict[str, object]:
        ok_total = 0.0
        components: list[tuple[float, float, float]] = []
        per_store: dict[str, dict[str, float]] = {}
        for s in self.stores.values():
            ok = max(0.0, s.read_qps) + max(0.0, s.write_qps)
            fail = max(0.0, s.fail_read_qps) + max(0.0, s.fail_write_qps)
            ok_total += ok
            comps = workload.store_components(s)
            components.extend(comps)
            total = ok + fail
            per_store[str(s.id)] = {
                "qps": round(total, 3),
                "error_rate": round(fail / total, 6) if total > 0 else 0.0,
                "p99_ms": workload.p99_ms(comps) if comps else 0.0,
            }
        fail_total = max(0.0, self.fail_read_total) + max(0.0, self.fail_write_total)
        total = ok_total + fail_total
        return {
            "qps": round(total, 3),
            "error_rate": round(fail_total / total, 6) if total > 0 else 0.0,
            "p99_ms": workload.p99_ms(components) if components else 0.0,
            "per_store": per_store,
        }
