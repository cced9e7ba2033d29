"""The simulator's own fault API: inject, list and revert faults, and host-level process control.

Every fault is recorded with what undoes it, and reverting is idempotent, so a harness can always
put the cluster back the way it found it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, TypeAdapter, ValidationError

from subjects.tikv.sim.entities import TOMBSTONE, UP
from subjects.tikv.sim.schedulers import BalanceLeader

if TYPE_CHECKING:
    from subjects.tikv.sim.model import Cluster

Number = StrictInt | StrictFloat


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KillStore(_Fault):
    kind: Literal["kill_store"]
    store_id: StrictInt


class SlowStore(_Fault):
    kind: Literal["slow_store"]
    store_id: StrictInt
    latency_ms: Annotated[Number, Field(gt=0, le=600_000)] = 500


class DiskFull(_Fault):
    kind: Literal["disk_full"]
    store_id: StrictInt
    used_ratio: Annotated[Number, Field(gt=0, le=1)] = 0.95


class PartitionStore(_Fault):
    kind: Literal["partition_store"]
    store_id: StrictInt


class HotRegion(_Fault):
    kind: Literal["hot_region"]
    region_id: StrictInt
    qps: Annotated[Number, Field(gt=0, le=10_000_000)] = 5000
    write_ratio: Annotated[Number, Field(ge=0, le=1)] = 0.3


class SkewLeaders(_Fault):
    kind: Literal["skew_leaders"]
    store_id: StrictInt


class PdDown(_Fault):
    kind: Literal["pd_down"]


class PdGarbage(_Fault):
    kind: Literal["pd_garbage"]


class StatusHang(_Fault):
    kind: Literal["status_hang"]
    store_id: StrictInt


FAULT_KINDS = (
    "kill_store",
    "slow_store",
    "disk_full",
    "partition_store",
    "hot_region",
    "skew_leaders",
    "pd_down",
    "pd_garbage",
    "status_hang",
)
FaultRequest = Annotated[
    KillStore
    | SlowStore
    | DiskFull
    | PartitionStore
    | HotRegion
    | SkewLeaders
    | PdDown
    | PdGarbage
    | StatusHang,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(FaultRequest)


class FaultError(ValueError):
    """A refused fault request; the message is the body's "error"."""


class NotFound(LookupError):
    """No fault or store with that id."""


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"][1:]) or "body"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            msg = "is not a parameter of this fault kind"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


FAULT_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class Fault:
    __slots__ = ("active", "expires_at", "id", "injected_at", "kind", "params", "reverted_at", "reverted_by", "undo")

    def __init__(self, fault_id: str, kind: str, params: dict[str, Any], now: float,
                 duration_s: float | None = None) -> None:
        self.id = fault_id
        self.kind = kind
        self.params = params
        self.active = True
        self.injected_at = now
        self.expires_at = None if duration_s is None else now + duration_s
        self.reverted_at: float | None = None
        self.reverted_by: str | None = None
        self.undo: dict[str, Any] = {}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, **self.params}
        out["active"] = self.active
        out["injected_at"] = self.injected_at
        out["expires_at"] = self.expires_at
        out["reverted_at"] = self.reverted_at
        if self.reverted_by:
            out["reverted_by"] = self.reverted_by
        return out


class FaultManager:
    def __init__(self, cluster: Cluster, on_unhang: Callable[[int], None] | None = None) -> None:
        self.c = cluster
        self.faults: dict[str, Fault] = {}
        self._seq = 0
        self.hung_stores: set[int] = set()
        self.on_unhang = on_unhang

    # ------------------------------------------------------------ queries

    def _active(self, kind: str, **match: Any) -> Fault | None:
        for f in self.faults.values():
            if f.active and f.kind == kind and all(f.params.get(k) == v for k, v in match.items()):
                return f
        return None

    @property
    def pd_down(self) -> bool:
        return self._active("pd_down") is not None

    @property
    def pd_garbage(self) -> bool:
        return self._active("pd_garbage") is not None

    def listing(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self.faults.values()]

    def store_faults(self, sid: int) -> list[str]:
        return [f.id for f in self.faults.values() if f.active and f.params.get("store_id") == sid]

    # ------------------------------------------------------------ inject

    def inject(self, body: Any) -> dict[str, Any]:
        """Inject a fault. Besides the kind's parameters the body may name the fault's `id` (so a
        harness can write down what undoes it before injecting) and a `duration_s` (simulated
        seconds) after which the fault ends by itself, as a supervisor restarting a process would."""
        if not isinstance(body, dict):
            raise FaultError('the body must be a JSON object such as {"kind": "kill_store", "store_id": 1}')
        body = dict(body)
        wanted_id = body.pop("id", None)
        duration = body.pop("duration_s", None)
        if wanted_id is not None:
            if not isinstance(wanted_id, str) or not FAULT_ID.match(wanted_id) or wanted_id.startswith("f"):
                raise FaultError("id: letters, digits, _ and -, at most 40, not starting with 'f'")
            if wanted_id in self.faults:
                raise FaultError(f"a fault with id {wanted_id} already exists")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int | float)
                                     or not 0 < duration <= 86_400):
            raise FaultError("duration_s: a number of seconds in (0, 86400]")
        kind = body.get("kind")
        if kind is None:
            raise FaultError(f'missing "kind"; one of: {", ".join(FAULT_KINDS)}')
        if kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault kind {kind!r}; one of: {', '.join(FAULT_KINDS)}")
        try:
            req = _ADAPTER.validate_python(body)
        except ValidationError as e:
            raise FaultError(f"invalid {kind} fault: {_validation_message(e)}") from None
        params = req.model_dump(exclude={"kind"})
        store = None
        if "store_id" in params:
            store = self.c.stores.get(params["store_id"])
            if store is None:
                raise FaultError(f"store {params['store_id']} not found")
            if store.meta_state == TOMBSTONE:
                raise FaultError(f"store {store.id} is a tombstone")
        if "region_id" in params and params["region_id"] not in self.c.regions:
            raise FaultError(f"region {params['region_id']} not found")
        self._check_conflicts(kind, params)
        self._seq += 1
        fault = Fault(wanted_id or f"f{self._seq}", kind, params, self.c.now,
                      None if duration is None else float(duration))
        # pd_down and pd_garbage have no injector: the server reads them on every PD request
        injector = getattr(self, f"_inject_{kind}", None)
        if injector is not None:
            injector(fault)
        self.faults[fault.id] = fault
        return fault.as_dict()

    def _check_conflicts(self, kind: str, params: dict[str, Any]) -> None:
        c = self.c
        if kind in ("pd_down", "pd_garbage", "skew_leaders"):
            existing = self._active(kind)
            if existing:
                raise FaultError(f"a {kind} fault is already active ({existing.id})")
        elif "store_id" in params:
            existing = self._active(kind, store_id=params["store_id"])
            if existing:
                raise FaultError(
                    f"store {params['store_id']} already has an active {kind} fault ({existing.id})"
                )
        elif "region_id" in params:
            existing = self._active(kind, region_id=params["region_id"])
            if existing:
                raise FaultError(
                    f"region {params['region_id']} already has an active {kind} fault ({existing.id})"
                )
        if kind == "kill_store" and not c.stores[params["store_id"]].running:
            raise FaultError(f"store {params['store_id']} is not running")
        if kind == "partition_store" and c.stores[params["store_id"]].partitioned:
            raise FaultError(f"store {params['store_id']} is already partitioned")
        if kind == "skew_leaders":
            s = c.stores[params["store_id"]]
            if not s.reachable or s.meta_state != UP:
                raise FaultError(f"store {s.id} must be Up and running to take the leaders")

    def _inject_kill_store(self, f: Fault) -> None:
        self.c.stop_store(f.params["store_id"])

    def _inject_slow_store(self, f: Fault) -> None:
        self.c.set_slow(f.params["store_id"], float(f.params["latency_ms"]))

    def _inject_disk_full(self, f: Fault) -> None:
        self.c.set_disk_full(f.params["store_id"], float(f.params["used_ratio"]))

    def _inject_partition_store(self, f: Fault) -> None:
        self.c.partition_store(f.params["store_id"])

    def _inject_hot_region(self, f: Fault) -> None:
        r = self.c.regions[f.params["region_id"]]
        qps = float(f.params["qps"])
        w = float(f.params["write_ratio"])
        self.c.set_region_extra_load(r, r.extra_read + qps * (1 - w), r.extra_write + qps * w)

    def _inject_skew_leaders(self, f: Fault) -> None:
        c = self.c
        sid = f.params["store_id"]
        # the scheduler object itself is kept, so a revert restores it exactly as it was (paused or not)
        f.undo["balance_leader"] = c.schedulers.active.pop(BalanceLeader.name, None)
        s = c.stores[sid]
        moved = 0
        for rid in sorted(s.peer_regions - s.leader_regions):
            r = c.regions[rid]
            peer = r.peer_on(sid)
            if r.leader is None or peer is None or peer.learner:
                continue
            c.operators.cancel(rid)
            if c.transfer_leader(r, sid):
                moved += 1
        f.undo["moved"] = moved

    def _inject_status_hang(self, f: Fault) -> None:
        self.hung_stores.add(f.params["store_id"])

    # ------------------------------------------------------------ revert

    def revert(self, fault_id: str) -> dict[str, Any]:
        f = self.faults.get(fault_id)
        if f is None:
            raise NotFound(fault_id)
        if f.active:
            self._revert(f, "api")
        return f.as_dict()

    def expire(self) -> None:
        """End the transient faults whose duration is over."""
        now = self.c.now
        for f in self.faults.values():
            if f.active and f.expires_at is not None and now >= f.expires_at:
                self._revert(f, "expired")

    def revert_all(self) -> None:
        for f in list(self.faults.values()):
            if f.active:
                self._revert(f, "api")

    def _revert(self, f: Fault, by: str) -> None:
        c = self.c
        f.active = False
        f.reverted_at = c.now
        f.reverted_by = by
        p = f.params
        if f.kind == "kill_store":
            if p["store_id"] in c.stores:
                c.start_store(p["store_id"])
        elif f.kind == "slow_store":
            if p["store_id"] in c.stores:
                c.set_slow(p["store_id"], 0.0)
        elif f.kind == "disk_full":
            if p["store_id"] in c.stores:
                c.set_disk_full(p["store_id"], None)
        elif f.kind == "partition_store":
            if p["store_id"] in c.stores:
                c.heal_store(p["store_id"])
        elif f.kind == "hot_region":
            r = c.regions.get(p["region_id"])
            if r is not None:
                qps, w = float(p["qps"]), float(p["write_ratio"])
                c.set_region_extra_load(
                    r, max(0.0, r.extra_read - qps * (1 - w)), max(0.0, r.extra_write - qps * w)
                )
        elif f.kind == "skew_leaders":
            sched = f.undo.get("balance_leader")
            if sched is not None and BalanceLeader.name not in c.schedulers.active:
                c.schedulers.active[BalanceLeader.name] = sched
        elif f.kind == "status_hang":
            if self._active("status_hang", store_id=p["store_id"]) is None:
                self.hung_stores.discard(p["store_id"])
                if self.on_unhang:
                    self.on_unhang(p["store_id"])

    # ------------------------------------------------------------ host control

    def host_stop(self, sid: int) -> dict[str, Any]:
        self._host_store(sid)
        self.c.stop_store(sid)
        return self.host_entry(sid)

    def host_restart(self, sid: int) -> dict[str, Any]:
        self._host_store(sid)
        self.c.stop_store(sid)
        for f in self.faults.values():
            if f.active and f.kind == "kill_store" and f.params["store_id"] == sid:
                f.active = False
                f.reverted_at = self.c.now
                f.reverted_by = "restart"
        self.c.start_store(sid)
        return self.host_entry(sid)

    def _host_store(self, sid: int) -> None:
        if sid not in self.c.stores:
            raise NotFound(f"store {sid} not found")

    def host_entry(self, sid: int) -> dict[str, Any]:
        s = self.c.stores[sid]
        return {
            "id": s.id,
            "running": s.running,
            "status_address": s.status_address,
            "partitioned": s.partitioned,
            "faults": self.store_faults(sid),
        }

    def host_listing(self) -> list[dict[str, Any]]:
        return [self.host_entry(sid) for sid in self.c.stores]
