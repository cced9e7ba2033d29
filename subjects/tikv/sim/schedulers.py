"""PD's replica checker and schedulers, reduced to the decisions that shape a cluster's behaviour.

Names, defaults and limits follow PD v8.5: the checker replaces replicas on Down and Offline stores
within `replica-schedule-limit`; balance-leader and balance-region move one thing at a time within
their schedule limits and only when the move leaves the pair no more unbalanced than before (so
they converge instead of ping-ponging); evict-leader, grant-leader and evict-slow-store act on the
stores they name.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from subjects.tikv.sim.entities import OFFLINE, TOMBSTONE, UP
from subjects.tikv.sim.operators import (
    ADD_LEARNER,
    HOT_REGION,
    LEADER,
    PRIORITY_HIGH,
    PROMOTE,
    REGION,
    REMOVE_PEER,
    REPLICA,
    TRANSFER_LEADER,
    Operator,
    Step,
    move_peer_steps,
    pick_leader_target,
    transfer_leader_op,
)

if TYPE_CHECKING:
    from subjects.tikv.sim.entities import Region, Store
    from subjects.tikv.sim.model import Cluster

EVICT_SLOW_RECOVERY = 600.0  # evict-slow-store's recovery-duration, seconds
EVICT_BATCH = 3


def _healthy(c: Cluster, r: Region) -> bool:
    """A region a balancer may touch: led, no operator, no pending or down peers, fully replicated."""
    if r.leader is None or r.id in c.operators.running or r.snapshot:
        return False
    if len(r.peers) != c.pd.max_replicas:
        return False
    return not any(p.store_id in c.silent or p.store_id in c.catching_up for p in r.peers)


def _sample(c: Cluster, ids: set[int], k: int) -> list[int]:
    if len(ids) <= k:
        return sorted(ids)
    return c.rng.sample(sorted(ids), k)


class Scheduler(ABC):
    name = ""
    interval = 1.0

    def __init__(self) -> None:
        self.next_run = 0.0
        self.paused_until = 0.0

    @abstractmethod
    def run(self, c: Cluster) -> None:
        """Look at the cluster and add at most a few operators."""

    def config(self) -> dict[str, Any] | None:
        return None


class BalanceLeader(Scheduler):
    name = "balance-leader-scheduler"
    batch = 4
    REFRESH = 10.0  # a quiet cluster is still looked at this often (heartbeat-driven changes)

    def __init__(self) -> None:
        super().__init__()
        self._quiet: tuple[int, frozenset[int]] | None = None
        self._refresh_at = 0.0

    def run(self, c: Cluster) -> None:
        budget = min(self.batch, c.pd.leader_schedule_limit - c.operators.count(LEADER))
        if budget <= 0:
            return
        evicted = c.evicted_stores()
        # Nothing changed since a run that found nothing to do: skip the O(stores) scan.
        signature = (c.epoch, frozenset(evicted))
        if signature == self._quiet and c.now < self._refresh_at:
            return
        self._quiet = None
        influence = leader_influence(c)
        # PD's view, computed once per run: who may give leaders away, who may take them
        sources = [
            s.id
            for s in c.stores.values()
            if s.leader_count > 0 and s.meta_state != TOMBSTONE and not c.is_disconnected(s)
        ]
        targets = [s.id for s in c.stores.values() if c.allow_leader_in(s, evicted)]
        if not sources or not targets:
            self._quiet = signature
            self._refresh_at = c.now + self.REFRESH
            return
        scores = {sid: c.leader_score(c.stores[sid], influence.get(sid, 0)) for sid in {*sources, *targets}}
        target_set = set(targets)
        made = 0
        for _ in range(budget):
            if not self._one(c, scores, sources, targets, target_set):
                break
            made += 1
        if made == 0 and not influence:
            self._quiet = signature
            self._refresh_at = c.now + self.REFRESH

    def _one(
        self,
        c: Cluster,
        scores: dict[int, float],
        sources: list[int],
        targets: list[int],
        target_set: set[int],
    ) -> bool:
        # source first: move a leader off the most loaded store to its least loaded follower
        for src_id in heapq.nlargest(3, sources, key=scores.__getitem__):
            src = c.stores[src_id]
            for rid in _sample(c, src.leader_regions, 8):
                r = c.regions[rid]
                if not _healthy(c, r):
                    continue
                best = None
                for p in r.peers:
                    if p.learner or p.store_id == src_id or p.store_id not in target_set:
                        continue
                    if best is None or scores[p.store_id] < scores[best]:
                        best = p.store_id
                if best is not None and self._worth(c, scores, src_id, best):
                    return self._create(c, r, src_id, best, scores)
        # target first: pull a leader onto the least loaded store from the busiest peer
        for dst_id in heapq.nsmallest(3, targets, key=scores.__getitem__):
            dst = c.stores[dst_id]
            for rid in _sample(c, dst.peer_regions - dst.leader_regions, 8):
                r = c.regions[rid]
                if not _healthy(c, r) or r.leader is None:
                    continue
                peer = r.peer_on(dst_id)
                if peer is None or peer.learner or r.leader.store_id not in scores:
                    continue
                if self._worth(c, scores, r.leader.store_id, dst_id):
                    return self._create(c, r, r.leader.store_id, dst_id, scores)
        return False

    @staticmethod
    def _worth(c: Cluster, scores: dict[int, float], src: int, dst: int) -> bool:
        """Move only if the pair ends no more unbalanced than it was: converges, never ping-pongs."""
        after_src = scores[src] - 1.0 / max(c.stores[src].leader_weight, 1e-6)
        after_dst = scores[dst] + 1.0 / max(c.stores[dst].leader_weight, 1e-6)
        return after_src >= after_dst - 1e-9

    def _create(self, c: Cluster, r: Region, src: int, dst: int, scores: dict[int, float]) -> bool:
        op = transfer_leader_op(c, r, dst, "balance-leader", LEADER)
        if not c.operators.add(op):
            return False
        scores[src] -= 1.0 / max(c.stores[src].leader_weight, 1e-6)
        scores[dst] += 1.0 / max(c.stores[dst].leader_weight, 1e-6)
        return True


def leader_influence(c: Cluster) -> dict[int, int]:
    """Leaders that running operators are about to move (PD's operator influence)."""
    out: dict[int, int] = {}
    for op in c.operators.running.values():
        for step in op.steps[op.current :]:
            if step.kind == TRANSFER_LEADER:
                out[step.store] = out.get(step.store, 0) - 1
                out[step.to_store] = out.get(step.to_store, 0) + 1
    return out


class BalanceRegion(Scheduler):
    name = "balance-region-scheduler"
    interval = 5.0

    def run(self, c: Cluster) -> None:
        if c.operators.count(REGION) >= c.pd.region_schedule_limit:
            return
        if c.operators.count(REGION) > 0:
            return  # one move at a time: modest, like a cluster at rest
        sources = [
            s
            for s in c.stores.values()
            if s.meta_state == UP
            and s.region_count > 0
            and s.meta_state != TOMBSTONE
            and not c.is_disconnected(s)
        ]
        targets = [s for s in c.stores.values() if c.allow_peer_in(s)]
        if not sources or not targets:
            return
        targets = heapq.nsmallest(8, targets, key=lambda s: (c.region_score(s), s.id))
        scores = {s.id: c.region_score(s) for s in {*sources, *targets}}
        targets.sort(key=lambda s: (scores[s.id], s.id))
        for src in heapq.nsmallest(2, sources, key=lambda s: (-scores[s.id], s.id)):
            for rid in _sample(c, src.peer_regions, 8):
                r = c.regions[rid]
                if not _healthy(c, r):
                    continue
                for dst in targets:
                    if dst.id == src.id or r.peer_on(dst.id) is not None:
                        continue
                    if c.region_score(src, -r.size) < c.region_score(dst, r.size) * 1.05 + 2 * r.size:
                        break  # the move would not leave the pair better balanced
                    if r.leader is not None and r.leader.store_id == src.id and not c.allow_leader_in(dst):
                        continue
                    steps, moves_leader = move_peer_steps(c, r, src.id, dst.id)
                    kind = REGION | (LEADER if moves_leader else 0)
                    op = Operator(
                        "balance-region", f"mv peer: store [{src.id}] to [{dst.id}]", r, kind, steps, 1
                    )
                    if c.operators.add(op):
                        return


class BalanceHotRegion(Scheduler):
    name = "balance-hot-region-scheduler"
    interval = 10.0

    def run(self, c: Cluster) -> None:
        if c.operators.count(HOT_REGION) >= c.pd.hot_region_schedule_limit:
            return
        hot = [c.regions[rid] for rid in sorted(c.hot_read) if rid in c.regions]
        hot = [r for r in hot if r.leader is not None and r.id not in c.operators.running]
        if not hot:
            return
        hot.sort(key=lambda r: (-r.read_qps, r.id))
        for r in hot:
            src = c.stores[r.leader.store_id]
            src_load = src.read_qps
            best = None
            for p in r.peers:
                if p.learner or p.store_id == src.id:
                    continue
                t = c.stores[p.store_id]
                if c.allow_leader_in(t) and (best is None or t.read_qps < best.read_qps):
                    best = t
            if best is None:
                continue
            # move only when the hotter of the two stores ends up clearly cooler than the source was
            if max(src_load - r.read_qps, best.read_qps + r.read_qps) < src_load * 0.95:
                op = transfer_leader_op(c, r, best.id, "transfer-hot-read-leader", HOT_REGION | LEADER)
                if c.operators.add(op):
                    return


class _StoreListScheduler(Scheduler):
    """evict-leader and grant-leader: one scheduler whose config lists stores."""

    def __init__(self) -> None:
        super().__init__()
        self.stores: dict[int, None] = {}

    def config(self) -> dict[str, Any]:
        ranges = {str(sid): [{"end-key": "", "start-key": ""}] for sid in self.stores}
        return {"store-id-ranges": ranges}


class EvictLeader(_StoreListScheduler):
    name = "evict-leader-scheduler"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "batch": EVICT_BATCH}

    def run(self, c: Cluster) -> None:
        for sid in list(self.stores):
            s = c.stores.get(sid)
            if s is not None:
                evict_leaders(c, s, "evict-leader-scheduler", EVICT_BATCH)


def evict_leaders(c: Cluster, s: Store, desc: str, batch: int) -> None:
    made = 0
    for rid in sorted(s.leader_regions):
        if made >= batch or c.operators.count(LEADER) >= c.pd.leader_schedule_limit:
            return
        r = c.regions[rid]
        if r.id in c.operators.running:
            continue
        target = pick_leader_target(c, r, exclude=s.id)
        if target is None:
            continue
        if c.operators.add(transfer_leader_op(c, r, target, desc, LEADER)):
            made += 1


class GrantLeader(_StoreListScheduler):
    name = "grant-leader-scheduler"

    def run(self, c: Cluster) -> None:
        for sid in list(self.stores):
            s = c.stores.get(sid)
            if s is None or not c.allow_leader_in(s):
                continue
            made = 0
            for rid in sorted(s.peer_regions - s.leader_regions):
                if made >= EVICT_BATCH or c.operators.count(LEADER) >= c.pd.leader_schedule_limit:
                    break
                r = c.regions[rid]
                peer = r.peer_on(sid)
                if r.leader is None or peer is None or peer.learner or r.id in c.operators.running:
                    continue
                if c.operators.add(transfer_leader_op(c, r, sid, "grant-leader-scheduler", LEADER)):
                    made += 1


class EvictSlowStore(Scheduler):
    name = "evict-slow-store-scheduler"

    def __init__(self) -> None:
        super().__init__()
        self.evicted: int | None = None
        self.recovering_since: float | None = None

    def config(self) -> dict[str, Any]:
        return {
            "recovery-duration": str(int(EVICT_SLOW_RECOVERY)),
            "evict-stores": [self.evicted] if self.evicted else [],
        }

    def run(self, c: Cluster) -> None:
        if self.evicted is not None:
            s = c.stores.get(self.evicted)
            if s is None or s.meta_state == TOMBSTONE:
                self.evicted = None
                return
            if s.hb_slow_score <= 1:
                if self.recovering_since is None:
                    self.recovering_since = c.now
                if c.now - self.recovering_since >= EVICT_SLOW_RECOVERY:
                    self.evicted = None
                    self.recovering_since = None
                    return
            else:
                self.recovering_since = None
            evict_leaders(c, s, "evict-slow-store", EVICT_BATCH)
            return
        slow = [c.stores[sid] for sid in sorted(c.slow_stores) if c.stores[sid].meta_state == UP]
        if len(slow) == 1 and slow[0].hb_slow_score >= 100:
            self.evicted = slow[0].id
            self.recovering_since = None


SCHEDULER_TYPES: dict[str, type[Scheduler]] = {
    cls.name: cls
    for cls in (BalanceLeader, BalanceRegion, BalanceHotRegion, EvictLeader, GrantLeader, EvictSlowStore)
}
DEFAULT_SCHEDULERS = (
    "balance-leader-scheduler",
    "balance-region-scheduler",
    "balance-hot-region-scheduler",
    "evict-slow-store-scheduler",
)


class SchedulerSet:
    """The schedulers PD is running, in the order they were added."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.active: dict[str, Scheduler] = {}
        for name in DEFAULT_SCHEDULERS:
            self.active[name] = SCHEDULER_TYPES[name]()

    def run(self, now: float) -> None:
        for sched in list(self.active.values()):
            if now < sched.paused_until or now < sched.next_run:
                continue
            sched.next_run = now + sched.interval - 1e-9
            sched.run(self.c)

    def evict_leader_stores(self) -> set[int]:
        ev = self.active.get(EvictLeader.name)
        return set(ev.stores) if isinstance(ev, EvictLeader) else set()

    def evicted_stores(self) -> set[int]:
        out = self.evict_leader_stores()
        slow = self.active.get(EvictSlowStore.name)
        if isinstance(slow, EvictSlowStore) and slow.evicted is not None:
            out.add(slow.evicted)
        return out


class ReplicaChecker:
    """PD's rule checker for the default placement rule: keep max-replicas healthy voters per region."""

    NAME = "rule_checker"

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    def run(self) -> None:
        c = self.c
        budget = c.pd.replica_schedule_limit - c.operators.count(REPLICA)
        if budget <= 0:
            return
        down = []
        if c.pd.enable_remove_down_replica:
            # only a store that stopped heartbeating can be Down
            down = [c.stores[sid] for sid in sorted(c.silent) if sid in c.stores]
            down = [s for s in down if s.meta_state == UP and c.is_down(s) and s.region_count]
        offline = []
        if c.pd.enable_replace_offline_replica:
            offline = [c.stores[sid] for sid in sorted(c.offline) if c.stores[sid].region_count]
        for bad, desc in [(s, "replace-rule-down-peer") for s in down] + [
            (s, "replace-rule-offline-peer") for s in offline
        ]:
            for rid in sorted(bad.peer_regions):
                if budget <= 0:
                    return
                if self._replace(c.regions[rid], bad, desc):
                    budget -= 1
        if c.pd.enable_make_up_replica:
            for rid in sorted(c.miss_peer):
                if budget <= 0:
                    return
                if self._make_up(c.regions[rid]):
                    budget -= 1
        if c.pd.enable_remove_extra_replica:
            for rid in sorted(c.extra_peer):
                if budget <= 0:
                    return
                if self._remove_extra(c.regions[rid]):
                    budget -= 1

    def _target(self, r: Region) -> Store | None:
        c = self.c
        best = None
        best_score = 0.0
        for s in c.stores.values():
            if r.peer_on(s.id) is not None or not c.allow_peer_in(s):
                continue
            score = c.region_score(s)
            if best is None or score < best_score:
                best, best_score = s, score
        return best

    def _replace(self, r: Region, bad: Store, desc: str) -> bool:
        c = self.c
        if r.leader is None or r.id in c.operators.running:
            return False
        if (
            bad.meta_state == OFFLINE
            and r.leader.store_id == bad.id
            and pick_leader_target(c, r, bad.id) is None
        ):
            return False
        target = self._target(r)
        if target is None:
            c.checker_event(self.NAME, "no-store-replace")
            return False
        steps, moves_leader = move_peer_steps(c, r, bad.id, target.id)
        if moves_leader:
            # the leader goes to a healthy voter, not to the learner that is still catching up
            lead_to = pick_leader_target(c, r, bad.id)
            for step in steps:
                if step.kind == TRANSFER_LEADER and lead_to is not None:
                    step.to_store = lead_to
        kind = REPLICA | REGION | (LEADER if moves_leader else 0)
        op = Operator(desc, f"mv peer: store [{bad.id}] to [{target.id}]", r, kind, steps, PRIORITY_HIGH)
        return c.operators.add(op)

    def _make_up(self, r: Region) -> bool:
        c = self.c
        if r.leader is None or r.id in c.operators.running:
            return False
        target = self._target(r)
        if target is None:
            c.checker_event(self.NAME, "no-target-store")
            return False
        peer_id = c.alloc_id()
        steps = [
            Step(ADD_LEARNER, store=target.id, peer_id=peer_id),
            Step(PROMOTE, store=target.id, peer_id=peer_id),
        ]
        op = Operator(
            "add-rule-peer", f"add peer: store [{target.id}]", r, REPLICA | REGION, steps, PRIORITY_HIGH
        )
        return c.operators.add(op)

    def _remove_extra(self, r: Region) -> bool:
        c = self.c
        if r.leader is None or r.id in c.operators.running:
            return False

        def badness(p: Any) -> tuple[int, int]:
            s = c.stores[p.store_id]
            bad = c.is_down(s) or s.meta_state != UP
            return (0 if bad else 1 if p.learner else 2, -c.region_score(s))

        candidates = sorted((p for p in r.peers if p is not r.leader), key=badness)
        if not candidates:
            return False
        victim = candidates[0]
        op = Operator(
            "remove-orphan-peer",
            f"rm peer: store [{victim.store_id}]",
            r,
            REPLICA | REGION,
            [Step(REMOVE_PEER, store=victim.store_id)],
            PRIORITY_HIGH,
        )
        return c.operators.add(op)
