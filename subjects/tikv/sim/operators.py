"""PD operators: step lists that change one region, their execution, timeouts and PD's admission rules.

Steps, timeouts, kinds and the text PD prints for them follow pkg/schedule/operator (v8.5). Each step
takes a little simulated time and needs the region's leader (PD delivers steps in the leader's
heartbeat response); a step whose target store is gone simply never finishes, and the operator then
times out, as in PD.
"""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING, Any

from subjects.tikv.sim.entities import TOMBSTONE
from subjects.tikv.sim.errors import PDError, region_not_found, store_not_found, store_removed
from subjects.tikv.sim.goformat import go_duration, go_time_string, to_ns

if TYPE_CHECKING:
    from subjects.tikv.sim.entities import Region
    from subjects.tikv.sim.model import Cluster

# OpKind bits, v8.5 numbering
ADMIN, MERGE, RANGE, REPLICA, SPLIT, HOT_REGION, REGION, LEADER = 1, 2, 4, 8, 16, 32, 64, 128
_KIND_NAMES = (
    (ADMIN, "admin"),
    (MERGE, "merge"),
    (RANGE, "range"),
    (REPLICA, "replica"),
    (SPLIT, "split"),
    (HOT_REGION, "hot-region"),
    (REGION, "region"),
    (LEADER, "leader"),
)
# OpStatus numbers for `?object`, and the pdpb names GET /operators/{id} prints
STATUS_NUMBER = {"RUNNING": 1, "SUCCESS": 2, "CANCEL": 3, "REPLACE": 4, "TIMEOUT": 6}
# priority levels: an operator replaces a running one only with a strictly higher priority
PRIORITY_MEDIUM, PRIORITY_HIGH, PRIORITY_URGENT = 1, 2, 3

TRANSFER_LEADER, ADD_LEARNER, PROMOTE, REMOVE_PEER, SPLIT_REGION, MERGE_REGION = (
    "transfer-leader",
    "add-learner",
    "promote",
    "remove-peer",
    "split",
    "merge",
)
STEP_RETRY = 5.0  # how often a stalled step is looked at again
SNAPSHOT_MIB_PER_SECOND = 8.0
FINISHED_KEPT = 600.0  # operatorStatusRemainTime
SPLIT_POLICIES = ("SCAN", "APPROXIMATE", "USEKEY")


def kind_string(kind: int) -> str:
    names = [name for bit, name in _KIND_NAMES if kind & bit]
    return ",".join(names) if names else "unknown"


def scheduler_kind(kind: int) -> int:
    """The kind an operator counts against for schedule limits (lowest bit, admin first)."""
    if kind & ADMIN:
        return ADMIN
    return kind & -kind


def fast_timeout(size: int) -> float:
    return max(60.0, 0.6 * size)


def slow_timeout(size: int) -> float:
    return max(600.0, 6.0 * size)


class Step:
    __slots__ = (
        "begun_at",
        "kind",
        "peer_id",
        "policy",
        "source",
        "split_keys",
        "store",
        "target",
        "to_store",
    )

    def __init__(self, kind: str, **kw: Any) -> None:
        self.kind = kind
        self.store: int = kw.get("store", 0)  # transfer-leader: from; others: the store concerned
        self.to_store: int = kw.get("to_store", 0)
        self.peer_id: int = kw.get("peer_id", 0)
        self.policy: str = kw.get("policy", "")
        self.split_keys: list[bytes] = kw.get("split_keys", [])
        self.source: int = kw.get("source", 0)
        self.target: int = kw.get("target", 0)
        self.begun_at: float | None = None

    def text(self) -> str:
        if self.kind == TRANSFER_LEADER:
            return f"transfer leader from store {self.store} to store {self.to_store}"
        if self.kind == ADD_LEARNER:
            return f"add learner peer {self.peer_id} on store {self.store}"
        if self.kind == PROMOTE:
            return f"promote learner peer {self.peer_id} on store {self.store} to voter"
        if self.kind == REMOVE_PEER:
            return f"remove peer on store {self.store}"
        if self.kind == SPLIT_REGION:
            return f"split region with policy {self.policy}"
        return f"merge region {self.source} into region {self.target}"

    def timeout(self, size: int) -> float:
        if self.kind == ADD_LEARNER:
            return slow_timeout(size)
        if self.kind == MERGE_REGION:
            return 10 * fast_timeout(size)
        return fast_timeout(size)

    def duration(self, size: int) -> float:
        if self.kind == ADD_LEARNER:
            return 1.0 + size / SNAPSHOT_MIB_PER_SECOND
        if self.kind == MERGE_REGION:
            return 3.0
        return 1.0


class Operator:
    __slots__ = (
        "brief",
        "conf_ver",
        "created_at",
        "current",
        "desc",
        "finished_at",
        "kind",
        "partner",
        "priority",
        "region_id",
        "size",
        "started_at",
        "status",
        "steps",
        "timeout",
        "token",
        "version",
    )

    def __init__(
        self, desc: str, brief: str, region: Region, kind: int, steps: list[Step], priority: int
    ) -> None:
        self.desc = desc
        self.brief = brief
        self.region_id = region.id
        self.version = region.version
        self.conf_ver = region.conf_ver
        self.kind = kind
        self.steps = steps
        self.size = region.size
        self.priority = priority
        # Go sums float seconds per step, then truncates to whole seconds
        self.timeout = float(int(sum(step.timeout(region.size) for step in steps)))
        self.current = 0
        self.created_at = 0.0
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.status = "RUNNING"
        self.token = 0
        self.partner: Operator | None = None

    def describe(self, sim_start: float) -> str:
        """Operator.String(): what GET /operators lists."""
        steps = ", ".join(f"{i}:{{{s.text()}}}" for i, s in enumerate(self.steps))
        created = go_time_string(to_ns(self.created_at), to_ns(self.created_at - sim_start))
        started = go_time_string(to_ns(self.started_at), to_ns(self.started_at - sim_start))
        out = (
            f"{self.desc} {{{self.brief}}} (kind:{kind_string(self.kind)}, region:{self.region_id}"
            f"({self.version}, {self.conf_ver}), createAt:{created}, startAt:{started}, "
            f"currentStep:{self.current}, size:{self.size}, steps:[{steps}], timeout:[{go_duration(self.timeout)}])"
        )
        if self.status == "SUCCESS":
            out += " finished"
        if self.status == "TIMEOUT":
            out += " timeout"
        return out

    def as_object(self) -> dict[str, Any]:
        epoch: dict[str, int] = {}
        if self.conf_ver:
            epoch["conf_ver"] = self.conf_ver
        if self.version:
            epoch["version"] = self.version
        return {
            "desc": self.desc,
            "brief": self.brief,
            "region_id": self.region_id,
            "region_epoch": epoch,
            "kind": self.kind,
            "timeout": go_duration(self.timeout),
            "status": STATUS_NUMBER[self.status],
        }


class OperatorController:
    """Running operators (at most one per region), their execution, and recently finished ones."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.running: dict[int, Operator] = {}
        self.finished: dict[int, Operator] = {}
        self.counts: dict[int, int] = {}
        self._tokens = 0
        self.created_total: dict[tuple[str, str], int] = {}

    def count(self, kind: int) -> int:
        return self.counts.get(kind, 0)

    def get_status(self, region_id: int) -> Operator | None:
        op = self.running.get(region_id)
        if op is not None:
            return op
        op = self.finished.get(region_id)
        if op is not None and op.finished_at is not None and self.c.now - op.finished_at <= FINISHED_KEPT:
            return op
        return None

    def purge(self) -> None:
        now = self.c.now
        for rid in [
            rid for rid, op in self.finished.items() if now - (op.finished_at or now) > FINISHED_KEPT
        ]:
            del self.finished[rid]

    def can_add(self, region_id: int, priority: int) -> bool:
        existing = self.running.get(region_id)
        return existing is None or priority > existing.priority

    def add(self, *ops: Operator) -> bool:
        """Admit operators (a merge brings two); replaces lower-priority ones, like PD's controller."""
        if not all(self.can_add(op.region_id, op.priority) for op in ops):
            return False
        for op in ops:
            existing = self.running.get(op.region_id)
            if existing is not None:
                self._end(existing, "REPLACE")
        if len(ops) == 2:
            ops[0].partner, ops[1].partner = ops[1], ops[0]
        now = self.c.now
        for op in ops:
            self._tokens += 1
            op.token = self._tokens
            op.created_at = op.started_at = now
            self.running[op.region_id] = op
            k = scheduler_kind(op.kind)
            self.counts[k] = self.counts.get(k, 0) + 1
            key = (op.desc, "create")
            self.created_total[key] = self.created_total.get(key, 0) + 1
        for op in ops:
            if op.partner is None or op is ops[0]:
                self._begin(op)
        return True

    def cancel(self, region_id: int) -> bool:
        op = self.running.get(region_id)
        if op is None:
            return False
        self._end(op, "CANCEL")
        return True

    def cancel_all(self) -> None:
        for rid in sorted(self.running):
            if rid in self.running:
                self._end(self.running[rid], "CANCEL")

    def _end(self, op: Operator, status: str) -> None:
        if self.running.get(op.region_id) is not op:
            return
        del self.running[op.region_id]
        k = scheduler_kind(op.kind)
        self.counts[k] -= 1
        op.status = status
        op.finished_at = self.c.now
        self.finished[op.region_id] = op
        key = (op.desc, "finish" if status == "SUCCESS" else status.lower())
        self.created_total[key] = self.created_total.get(key, 0) + 1
        if status != "SUCCESS":
            self._roll_back(op)
        if op.partner is not None and op.partner.status == "RUNNING":
            self._end(op.partner, status)

    def _roll_back(self, op: Operator) -> None:
        """A learner this operator added but never promoted is removed again (PD would clean it up)."""
        r = self.c.regions.get(op.region_id)
        if r is None:
            return
        for step in op.steps[: op.current + 1]:
            if step.kind == ADD_LEARNER and step.begun_at is not None:
                peer = r.peer_on(step.store)
                if peer is not None and peer.id == step.peer_id and peer.learner:
                    self.c.remove_peer(r, peer)

    # ---------------------------------------------------------------- execution

    def _begin(self, op: Operator) -> None:
        r = self.c.regions.get(op.region_id)
        step = op.steps[op.current]
        if r is not None and self._try_begin(step, r):
            at = self.c.now + step.duration(r.size)
        else:
            at = self.c.now + min(STEP_RETRY, 1.0)
        self.c.events.push(min(at, self._deadline(op)), self._due, op.region_id, op.token)

    def _deadline(self, op: Operator) -> float:
        return op.started_at + op.timeout

    def _due(self, region_id: int, token: int) -> None:
        op = self.running.get(region_id)
        if op is None or op.token != token:
            return
        c = self.c
        r = c.regions.get(region_id)
        if r is None:
            self._end(op, "CANCEL")
            return
        step = op.steps[op.current]
        if step.begun_at is None:
            if self._try_begin(step, r):
                self._schedule(op, c.now + step.duration(r.size))
                return
        elif c.now - step.begun_at >= step.duration(r.size) - 1e-9 and self._try_finish(op, step, r):
            op.current += 1
            if op.current >= len(op.steps):
                self._end(op, "SUCCESS")
            else:
                self._begin(op)
            return
        if c.now >= self._deadline(op):
            self._end(op, "TIMEOUT")
            return
        self._schedule(op, c.now + STEP_RETRY)

    def _schedule(self, op: Operator, at: float) -> None:
        deadline = self._deadline(op)
        if at > deadline and self.c.now < deadline:
            at = deadline
        self.c.events.push(at, self._due, op.region_id, op.token)

    def _leader_ok(self, r: Region) -> bool:
        return r.leader is not None and self.c.stores[r.leader.store_id].reachable

    def _try_begin(self, step: Step, r: Region) -> bool:
        """Deliver the step to the leader. Adding a learner is a conf change applied at once."""
        c = self.c
        if step.kind == MERGE_REGION:
            other = c.regions.get(step.target)
            if other is None or not self._leader_ok(other):
                return False
        if not self._leader_ok(r):
            return False
        if step.kind == ADD_LEARNER:
            peer = r.peer_on(step.store)
            if peer is None:
                c.add_learner(r, step.store, step.peer_id)
            elif peer.id != step.peer_id:
                return False
        if step.kind == REMOVE_PEER and r.leader is not None and r.leader.store_id == step.store:
            return False
        step.begun_at = c.now
        return True

    def _try_finish(self, op: Operator, step: Step, r: Region) -> bool:
        c = self.c
        if not self._leader_ok(r):
            return False
        if step.kind == TRANSFER_LEADER:
            target = c.stores.get(step.to_store)
            if target is None or not target.reachable:
                return False
            return c.transfer_leader(r, step.to_store)
        if step.kind == ADD_LEARNER:
            peer = r.peer_on(step.store)
            target = c.stores.get(step.store)
            if peer is None or peer.id != step.peer_id or target is None or not target.reachable:
                return False
            c.finish_snapshot(r, peer)
            return True
        if step.kind == PROMOTE:
            peer = r.peer_on(step.store)
            if peer is None or peer.id != step.peer_id or (r.snapshot and peer.id in r.snapshot):
                return False
            c.promote_learner(r, peer)
            return True
        if step.kind == REMOVE_PEER:
            peer = r.peer_on(step.store)
            if peer is None:
                return True
            if r.leader is peer:
                return False
            c.remove_peer(r, peer)
            return True
        if step.kind == SPLIT_REGION:
            keys = step.split_keys if step.policy == "USEKEY" else c.split_points(r, 2)
            c.split_region(r, keys)
            return True
        # merge: the source operator carries it out; the target's operator finishes with it
        source, target = c.regions.get(step.source), c.regions.get(step.target)
        if source is None or target is None or not self._leader_ok(target) or not c.adjacent(source, target):
            return False
        if op.partner is not None and op.partner.status == "RUNNING":
            partner = op.partner
            partner.current = len(partner.steps)
            del self.running[partner.region_id]
            self.counts[scheduler_kind(partner.kind)] -= 1
            partner.status = "SUCCESS"
            partner.finished_at = c.now
            self.finished[partner.region_id] = partner
        c.merge_regions(source, target)
        return True


# ---------------------------------------------------------------------- building operators


def transfer_leader_op(
    c: Cluster, r: Region, to_store: int, desc: str, kind: int, priority: int = PRIORITY_MEDIUM
) -> Operator:
    from_store = r.leader.store_id if r.leader is not None else 0
    step = Step(TRANSFER_LEADER, store=from_store, to_store=to_store)
    return Operator(desc, f"transfer leader: store {from_store} to {to_store}", r, kind, [step], priority)


def pick_leader_target(c: Cluster, r: Region, exclude: int) -> int | None:
    """The voter store (other than `exclude`) that may take the leader, with the fewest leaders."""
    best = None
    for p in r.peers:
        if p.learner or p.store_id == exclude:
            continue
        s = c.stores[p.store_id]
        if not c.allow_leader_in(s):
            continue
        if best is None or c.leader_score(s) < c.leader_score(c.stores[best]):
            best = s.id
    return best


def move_peer_steps(c: Cluster, r: Region, from_store: int, to_store: int) -> tuple[list[Step], bool]:
    """Add a learner on the target, promote it, move the leader off the source if needed, remove."""
    peer_id = c.alloc_id()
    steps = [
        Step(ADD_LEARNER, store=to_store, peer_id=peer_id),
        Step(PROMOTE, store=to_store, peer_id=peer_id),
    ]
    moves_leader = r.leader is not None and r.leader.store_id == from_store
    if moves_leader:
        steps.append(Step(TRANSFER_LEADER, store=from_store, to_store=to_store))
    steps.append(Step(REMOVE_PEER, store=from_store))
    return steps, moves_leader


def _required(body: dict[str, Any], key: str, message: str) -> int:
    """A required id from an operator request, or PD's 400 with its message for that field."""
    value = _number(body, key)
    if value is None:
        raise PDError(400, message)
    return value


def _number(body: dict[str, Any], key: str) -> int | None:
    """Go's `input[key].(float64)`: only a JSON number will do."""
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if v != v or v in (float("inf"), float("-inf")):
        return None
    return int(v)


def _region(c: Cluster, region_id: int) -> Region:
    r = c.regions.get(region_id)
    if r is None:
        raise region_not_found(region_id)
    return r


def _check_add_peer_target(c: Cluster, store_id: int) -> None:
    s = c.stores.get(store_id)
    if s is None:
        raise store_not_found(store_id, 500)
    if s.meta_state == TOMBSTONE:
        raise store_removed(store_id, 500)
    if c.is_unhealthy(s):
        raise PDError(500, f"[PD:core:ErrStoreUnhealthy]store {store_id} is unhealthy")


ADD_FAILED = PDError(500, "[PD:operator:ErrAddOperator]failed to add operator, maybe already have one")


def _admit(c: Cluster, *ops: Operator) -> None:
    if not c.operators.add(*ops):
        raise ADD_FAILED


def create_admin_operator(c: Cluster, body: dict[str, Any]) -> None:
    """POST /operators: validate like PD's HandleOperatorCreation, then admit. Raises PDError."""
    name = body.get("name")
    if not isinstance(name, str):
        raise PDError(400, "missing operator name")
    if name == "transfer-leader":
        rid = _required(body, "region_id", "missing region id")
        to = _required(body, "to_store_id", "missing store id to transfer leader to")
        r = _region(c, rid)
        peer = r.peer_on(to)
        if peer is None or peer.learner:
            raise PDError(500, f"region has no voter in store {to}")
        if not c.allow_leader_in(c.stores[to]):
            raise PDError(500, "cannot create operator: target leader is not allowed")
        if r.leader is not None and r.leader.store_id == to:
            raise PDError(500, "no operator step is built")
        _admit(c, transfer_leader_op(c, r, to, "admin-transfer-leader", ADMIN | LEADER, PRIORITY_URGENT))
    elif name == "transfer-peer":
        rid = _required(body, "region_id", "missing region id")
        src = _required(body, "from_store_id", "invalid store id to transfer peer from")
        dst = _required(body, "to_store_id", "invalid store id to transfer peer to")
        r = _region(c, rid)
        if r.peer_on(src) is None:
            raise PDError(500, f"region has no peer in store {src}")
        _check_add_peer_target(c, dst)
        if r.peer_on(dst) is not None:
            raise PDError(500, f"region already has peer in store {dst}")
        if r.leader is not None and r.leader.store_id == src and not c.allow_leader_in(c.stores[dst]):
            raise PDError(500, "cannot create operator: target leader is not allowed")
        steps, moves_leader = move_peer_steps(c, r, src, dst)
        kind = ADMIN | REGION | (LEADER if moves_leader else 0)
        _admit(
            c,
            Operator(
                "admin-move-peer", f"mv peer: store [{src}] to [{dst}]", r, kind, steps, PRIORITY_URGENT
            ),
        )
    elif name in ("add-peer", "add-learner"):
        rid = _required(body, "region_id", "missing region id")
        sid = _required(body, "store_id", "invalid store id to transfer peer to")
        r = _region(c, rid)
        _check_add_peer_target(c, sid)
        if r.peer_on(sid) is not None:
            raise PDError(500, f"region already has peer in store {sid}")
        peer_id = c.alloc_id()
        steps = [Step(ADD_LEARNER, store=sid, peer_id=peer_id)]
        if name == "add-peer":
            steps.append(Step(PROMOTE, store=sid, peer_id=peer_id))
        desc = "admin-add-peer" if name == "add-peer" else "admin-add-learner"
        brief = f"add peer: store [{sid}]" if name == "add-peer" else f"add learner peer: store [{sid}]"
        _admit(c, Operator(desc, brief, r, ADMIN | REGION, steps, PRIORITY_URGENT))
    elif name == "remove-peer":
        rid = _required(body, "region_id", "missing region id")
        sid = _required(body, "store_id", "invalid store id to transfer peer to")
        r = _region(c, rid)
        if r.peer_on(sid) is None:
            raise PDError(500, f"region has no peer in store {sid}")
        steps = []
        kind = ADMIN | REGION
        if r.leader is not None and r.leader.store_id == sid:
            target = pick_leader_target(c, r, exclude=sid)
            if target is None:
                raise PDError(500, "no operator step is built")
            steps.append(Step(TRANSFER_LEADER, store=sid, to_store=target))
            kind |= LEADER
        steps.append(Step(REMOVE_PEER, store=sid))
        _admit(c, Operator("admin-remove-peer", f"rm peer: store [{sid}]", r, kind, steps, PRIORITY_URGENT))
    elif name == "merge-region":
        rid = _required(body, "source_region_id", "missing region id")
        tid = _required(body, "target_region_id", "invalid target region id to merge to")
        source = _region(c, rid)
        target = _region(c, tid)
        for r in (source, target):
            down = c.down_peers(r)
            if (
                down
                or c.pending_peers(r, down)
                or len(r.peers) != c.pd.max_replicas
                or r.id in c.learner_peer
            ):
                raise PDError(500, f"[PD:region:ErrRegionAbnormalPeer]region {r.id} has abnormal peer")
        if source.id == target.id or not c.adjacent(source, target):
            raise PDError(500, "[PD:region:ErrRegionNotAdjacent]two regions are not adjacent")
        brief = f"merge: region {source.id} to {target.id}"
        step_text = {"source": source.id, "target": target.id}
        op_source = Operator(
            "admin-merge-region",
            brief,
            source,
            ADMIN | MERGE,
            [Step(MERGE_REGION, **step_text)],
            PRIORITY_URGENT,
        )
        op_target = Operator(
            "admin-merge-region",
            brief,
            target,
            ADMIN | MERGE,
            [Step(MERGE_REGION, **step_text)],
            PRIORITY_URGENT,
        )
        op_target.timeout = op_source.timeout
        _admit(c, op_source, op_target)
    elif name == "split-region":
        rid = _required(body, "region_id", "missing region id")
        policy = body.get("policy")
        if not isinstance(policy, str):
            raise PDError(400, "missing split policy")
        raw_keys: list[str] = []
        if "keys" in body:
            keys_value = body["keys"]
            if not isinstance(keys_value, list) or not all(isinstance(k, str) for k in keys_value):
                raise PDError(400, "bad format keys")
            raw_keys = keys_value
        r = _region(c, rid)
        upper = policy.upper()
        if upper not in SPLIT_POLICIES:
            raise PDError(500, f"check policy {policy} is not supported")
        split_keys = []
        for k in raw_keys:
            try:
                split_keys.append(binascii.unhexlify(k))
            except (binascii.Error, ValueError):
                raise PDError(500, f"split key {k} is not in hex format") from None
        step = Step(SPLIT_REGION, policy=upper, split_keys=split_keys)
        brief = f"split: region {r.id} use policy {upper}"
        _admit(c, Operator("admin-split-region", brief, r, ADMIN | SPLIT, [step], PRIORITY_URGENT))
    else:
        raise PDError(400, "unknown operator")
