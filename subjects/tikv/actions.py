"""What the operator can do to a TiKV cluster, through PD's HTTP API.

Each action checks its target against a fresh observation (and PD) before it runs, waits until
PD confirms the change (an operator finished, a scheduler is gone, leaders have moved) and turns
PD's error bodies into reasons a person can act on. Actions that leave state behind name their
undo (drain_store -> undrain_store). Every action says `ctx.sending()` right before the request
that changes the cluster (marks_sends), so the engine knows what an interruption may have left.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

from pydantic import Field, field_validator

from subjects.base import (
    ActionContext,
    ActionDef,
    ActionFailed,
    ActionOutcome,
    ActionParams,
    Node,
    Observation,
    Reconciliation,
    RiskTier,
)
from subjects.tikv.models import RegionInfo
from subjects.tikv.pd_client import PDClient, PDError, PDUnreachable
from subjects.tikv.units import parse_duration

POLL_S = 0.2
DRAIN_WAIT_S = 60.0


# -- parameters -------------------------------------------------------------------------------

class RegionStore(ActionParams):
    region_id: int = Field(gt=0, description="the region's id")


class TransferLeaderParams(RegionStore):
    to_store_id: int = Field(gt=0, description="store that should hold the region's leader")


class TransferPeerParams(RegionStore):
    from_store_id: int = Field(gt=0, description="store whose peer moves away")
    to_store_id: int = Field(gt=0, description="store that receives the peer")


class PeerParams(RegionStore):
    store_id: int = Field(gt=0, description="the store")


class StoreParams(ActionParams):
    store_id: int = Field(gt=0, description="the store's id")


class SchedulerParams(ActionParams):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9-]+$",
                      description="scheduler name as GET /schedulers lists it, or the per-store form "
                                  "evict-leader-scheduler-<store id>")


class AddSchedulerParams(ActionParams):
    name: Literal["balance-leader-scheduler", "balance-region-scheduler", "balance-hot-region-scheduler",
                  "evict-slow-store-scheduler"] = Field(description="scheduler to (re-)enable")


class SplitParams(RegionStore):
    policy: Literal["approximate", "scan"] = Field("approximate", description="how TiKV finds the split key")


class WeightParams(StoreParams):
    leader: float = Field(ge=0, le=100, description="leader weight (default 1)")
    region: float = Field(ge=0, le=100, description="region weight (default 1)")


CONFIG_KEYS: dict[str, str] = {
    "max-store-down-time": "duration",
    "leader-schedule-limit": "int",
    "region-schedule-limit": "int",
    "replica-schedule-limit": "int",
    "hot-region-schedule-limit": "int",
    "merge-schedule-limit": "int",
    "max-snapshot-count": "int",
    "max-pending-peer-count": "int",
    "low-space-ratio": "ratio",
    "high-space-ratio": "ratio",
}


class ConfigParams(ActionParams):
    key: Literal[tuple(CONFIG_KEYS)] = Field(description="schedule config key")  # type: ignore[valid-type]
    value: str | int | float = Field(description="new value: a Go duration for times (\"1h\"), a number otherwise")

    @field_validator("value")
    @classmethod
    def _value_fits_key(cls, value: Any, info: Any) -> Any:
        kind = CONFIG_KEYS.get(info.data.get("key", ""))
        if kind == "duration":
            if not isinstance(value, str) or not parse_duration(value):
                raise ValueError("must be a positive Go duration such as \"30m\" or \"1h\"")
        elif kind == "int":
            if isinstance(value, str) and not value.isdigit():
                raise ValueError("must be a whole number")
            if float(value) != int(float(value)) or int(float(value)) < 0:
                raise ValueError("must be a whole number >= 0")
            return int(float(value))
        elif kind == "ratio":
            v = float(value)
            if not 0 < v < 1:
                raise ValueError("must be between 0 and 1")
            return v
        return value


# -- PD errors as reasons ---------------------------------------------------------------------

def reason_for(e: PDError, what: str) -> ActionFailed:
    msg = e.message
    table = [
        (r"ErrRegionNotFound", "the region does not exist", False),
        (r"ErrStoreNotFound|store \d+ not found", "the store does not exist", False),
        (r"ErrStoreRemoved|has been removed", "the store has been removed (Tombstone)", False),
        (r"ErrStoreUnhealthy|is unhealthy", "the target store has sent no heartbeat for over 10 minutes", False),
        (r"region has no voter in store (\d+)", "store {0} holds no voter of this region, so it cannot lead it", False),
        (r"target leader is not allowed", "the target store cannot take leaders now (down, disconnected, "
                                          "evicted, busy or labelled reject-leader)", False),
        (r"region already has peer in store (\d+)", "the region already has a peer on store {0}", False),
        (r"region has no peer in store (\d+)", "the region has no peer on store {0}", False),
        (r"ErrAddOperator|maybe already have one", "the region already has an operator running; try again later",
         True),
        (r"ErrStoresNotEnough|number of up stores would be", "too few Up stores would remain for the replica "
                                                             "count: scale out first", False),
        (r"ErrNoStoreForRegionLeader", "no other Up store could take the leaders", False),
        (r"ErrStoreDestroyed|physically destroyed", "the store was physically destroyed", False),
        (r"ErrSchedulerExisted|scheduler existed", "the scheduler already exists", False),
        (r"ErrSchedulerNotFound|scheduler not found", "the scheduler does not exist", False),
        (r"config item .* not found", "PD does not know this config item", False),
    ]
    for pattern, text, retryable in table:
        m = re.search(pattern, msg)
        if m:
            return ActionFailed(f"{what}: {text.format(*m.groups())} (PD {e.status}: {msg})", retryable=retryable,
                                data={"pd_status": e.status, "pd_message": msg})
    retryable = e.status >= 500
    return ActionFailed(f"{what}: PD refused (HTTP {e.status}): {msg}", retryable=retryable,
                        data={"pd_status": e.status, "pd_message": msg})


def unreachable(e: PDUnreachable, what: str) -> ActionFailed:
    return ActionFailed(f"{what}: {e}", retryable=True)


# -- helpers over observations ----------------------------------------------------------------

def store_node(obs: Observation, store_id: int) -> Node | None:
    return obs.node(str(store_id), "store")


def state_name(n: Node) -> str:
    return n.state_detail.split(" ", 1)[0]


def store_problems(obs: Observation, store_id: int, *, must_serve: bool = True,
                   may_take_leaders: bool = False) -> list[str]:
    n = store_node(obs, store_id)
    if n is None:
        known = ", ".join(x.id for x in obs.nodes if x.kind == "store")
        return [f"store {store_id} does not exist (stores: {known})"]
    problems = []
    if state_name(n) == "Tombstone":
        problems.append(f"store {store_id} has been removed (Tombstone)")
    elif must_serve and (n.metrics.get("probe_ok") != 1.0 or state_name(n) != "Up"):
        problems.append(f"store {store_id} is not serving ({n.state_detail})")
    if may_take_leaders and str(store_id) in {str(s) for s in obs.details.get("evict_leader_stores", [])}:
        problems.append(f"store {store_id} is under an evict-leader scheduler and refuses leaders")
    return problems


async def fetch_region(pd: PDClient, region_id: int) -> tuple[RegionInfo | None, str | None]:
    try:
        return await pd.region(region_id), None
    except PDError as e:
        if e.status == 404 or "not found" in e.message:
            return None, f"region {region_id} does not exist"
        return None, f"PD cannot describe region {region_id}: {e.message}"
    except PDUnreachable as e:
        return None, str(e)


def peer_stores(region: RegionInfo) -> set[int]:
    return {p.store_id for p in region.peers}


def voter_stores(region: RegionInfo) -> set[int]:
    return {p.store_id for p in region.peers if not p.is_learner and p.role_name != "Learner"}


OPERATOR_STATUS = re.compile(r"status:\s*([A-Z]+|\d+)")


async def wait_operator(pd: PDClient, region_id: int, ctx: ActionContext, what: str) -> str:
    """Until PD's operator on the region finishes. Cancelling us cancels it in PD too."""
    try:
        while True:
            try:
                text = await pd.operator_status(region_id)
            except PDError as e:
                if "operator not found" in e.message:
                    return "GONE"  # finished and aged out, or replaced: the caller checks the effect
                raise reason_for(e, what) from e
            except PDUnreachable as e:
                raise unreachable(e, what) from e
            m = OPERATOR_STATUS.search(text)
            status = m.group(1) if m else "?"
            if status == "SUCCESS":
                return status
            if status in ("TIMEOUT", "CANCEL", "REPLACE", "EXPIRED"):
                raise ActionFailed(f"{what}: PD's operator on region {region_id} ended {status}",
                                   retryable=status in ("REPLACE", "CANCEL"), data={"operator": text})
            ctx.progress(f"operator on region {region_id}: {status}")
            await asyncio.sleep(POLL_S)
    except asyncio.CancelledError:
        # Stop the change in PD as well, or it would carry on after we gave up on it.
        try:
            await asyncio.shield(asyncio.wait_for(pd.send("DELETE", f"operators/{region_id}"), 2.0))
        except (PDError, PDUnreachable, TimeoutError):
            pass
        raise


async def operator_running(pd: PDClient, region_id: int) -> bool | None:
    """Whether PD still runs an operator on the region (None: PD cannot tell us now)."""
    try:
        text = await pd.operator_status(region_id)
    except PDError as e:
        return False if "operator not found" in e.message or e.status == 404 else None
    except PDUnreachable:
        return None
    m = OPERATOR_STATUS.search(text)
    return m is not None and m.group(1) in ("RUNNING", "CREATED", "STARTED", "1", "0")


async def add_operator(pd: PDClient, body: dict[str, Any], what: str) -> None:
    try:
        await pd.send("POST", "operators", body)
    except PDError as e:
        raise reason_for(e, what) from e
    except PDUnreachable as e:
        raise unreachable(e, what) from e


# -- the catalogue ----------------------------------------------------------------------------

def build_actions(pd: PDClient, host_agent: PDClient | None = None) -> list[ActionDef]:
    actions = [
        _transfer_leader(pd), _transfer_peer(pd), _add_peer(pd), _remove_peer(pd), _drain_store(pd),
        _undrain_store(pd), _remove_scheduler(pd), _add_scheduler(pd), _split_region(pd), _set_store_weight(pd),
        _set_config(pd), _remove_store(pd),
    ]
    if host_agent is not None:
        from subjects.tikv.lab import host_actions

        actions.extend(host_actions(host_agent))
    return actions


def _transfer_leader(pd: PDClient) -> ActionDef:
    async def precheck(obs: Observation, p: TransferLeaderParams) -> list[str]:
        problems = store_problems(obs, p.to_store_id, may_take_leaders=True)
        region, error = await fetch_region(pd, p.region_id)
        if error:
            return [*problems, error]
        if p.to_store_id not in voter_stores(region):
            problems.append(f"store {p.to_store_id} holds no voter of region {p.region_id} "
                            f"(voters on stores {sorted(voter_stores(region))})")
        return problems

    async def execute(p: TransferLeaderParams, ctx: ActionContext) -> ActionOutcome:
        what = f"transfer leader of region {p.region_id} to store {p.to_store_id}"
        region, error = await fetch_region(pd, p.region_id)
        if error:
            raise ActionFailed(f"{what}: {error}")
        before = region.leader_store
        if before == p.to_store_id:
            return ActionOutcome(detail=f"region {p.region_id}'s leader is already on store {p.to_store_id}",
                                 data={"from_store": before, "to_store": p.to_store_id, "noop": True})
        await ctx.sending()
        try:
            await add_operator(pd, {"name": "transfer-leader", "region_id": p.region_id,
                                    "to_store_id": p.to_store_id}, what)
        except ActionFailed as e:
            if "no operator step is built" in e.reason:
                return ActionOutcome(detail=f"region {p.region_id}'s leader is already on store {p.to_store_id}")
            raise
        await wait_operator(pd, p.region_id, ctx, what)
        region, error = await fetch_region(pd, p.region_id)
        if error or region.leader_store != p.to_store_id:
            raise ActionFailed(f"{what}: PD's operator finished but the leader is on store "
                               f"{region.leader_store if region else '?'}")
        return ActionOutcome(detail=f"leader of region {p.region_id} moved from store {before} to store "
                                    f"{p.to_store_id}", data={"from_store": before, "to_store": p.to_store_id})

    async def reconcile(_obs: Observation, p: TransferLeaderParams) -> Reconciliation:
        region, error = await fetch_region(pd, p.region_id)
        if error:
            return Reconciliation(took_effect=None, detail=error)
        done = region.leader_store == p.to_store_id
        return Reconciliation(took_effect=done, detail=f"region {p.region_id}'s leader is on store "
                                                       f"{region.leader_store}")

    return ActionDef(
        "transfer_leader", "Move one region's leader to another store that holds a voter of it "
        "(PD operator transfer-leader).", TransferLeaderParams, RiskTier.low, True,
        lambda p: f"region:{p.region_id}", precheck, execute,
        lambda p: f'POST /pd/api/v1/operators {{"name":"transfer-leader","region_id":{p.region_id},'
                  f'"to_store_id":{p.to_store_id}}}', reconcile, marks_sends=True)


def _peer_action(pd: PDClient, name: str, description: str, params: type, risk: RiskTier,
                 body: Any, expect: Any, precheck_fn: Any, preview: Any) -> ActionDef:
    async def precheck(obs: Observation, p: Any) -> list[str]:
        region, error = await fetch_region(pd, p.region_id)
        if error:
            return [error]
        problems = precheck_fn(obs, p, region)
        if name == "add_peer":
            undone = await extra_replica_removed(pd, region)
            if undone:
                problems.append(undone)
        return problems

    async def execute(p: Any, ctx: ActionContext) -> ActionOutcome:
        what = f"{name.replace('_', ' ')} on region {p.region_id}"
        await ctx.sending()
        await add_operator(pd, body(p), what)
        await wait_operator(pd, p.region_id, ctx, what)
        region, error = await fetch_region(pd, p.region_id)
        if error:  # the change may well be done: only its confirmation failed (reconciled, not re-sent)
            raise ActionFailed(f"{what}: cannot confirm: {error}", retryable=True)
        ok, detail = expect(p, region)
        if not ok:
            raise ActionFailed(f"{what}: PD's operator finished but {detail}")
        return ActionOutcome(detail=detail, data={"peers": sorted(peer_stores(region))})

    async def reconcile(_obs: Observation, p: Any) -> Reconciliation:
        # The operator first, the region after: an operator that finishes between the two reads
        # then shows its effect, instead of looking neither done nor running.
        running = await operator_running(pd, p.region_id)
        region, error = await fetch_region(pd, p.region_id)
        if error:
            return Reconciliation(took_effect=None, detail=error)
        ok, detail = expect(p, region)
        if not ok and running is not False:
            # Not done yet, but PD's operator may still be doing it: neither done nor failed.
            return Reconciliation(took_effect=None, detail=f"{detail}; PD's operator on region {p.region_id} "
                                                          "may still be running")
        return Reconciliation(took_effect=ok, detail=detail)

    return ActionDef(name, description, params, risk, False, lambda p: f"region:{p.region_id}", precheck, execute,
                     preview, reconcile, marks_sends=True)


def _transfer_peer(pd: PDClient) -> ActionDef:
    def check(obs: Observation, p: TransferPeerParams, region: RegionInfo) -> list[str]:
        problems = store_problems(obs, p.to_store_id)
        if p.from_store_id not in peer_stores(region):
            problems.append(f"region {p.region_id} has no peer on store {p.from_store_id}")
        if p.to_store_id in peer_stores(region):
            problems.append(f"region {p.region_id} already has a peer on store {p.to_store_id}")
        return problems

    def expect(p: TransferPeerParams, region: RegionInfo) -> tuple[bool, str]:
        stores = peer_stores(region)
        ok = p.to_store_id in stores and p.from_store_id not in stores
        return ok, (f"region {p.region_id}'s peer moved from store {p.from_store_id} to store {p.to_store_id}"
                    if ok else f"region {p.region_id}'s peers are on stores {sorted(stores)}")

    return _peer_action(
        pd, "transfer_peer", "Move one peer of a region from one store to another (PD operator transfer-peer: "
        "add a learner, catch it up, promote it, remove the old peer).", TransferPeerParams, RiskTier.high,
        lambda p: {"name": "transfer-peer", "region_id": p.region_id, "from_store_id": p.from_store_id,
                   "to_store_id": p.to_store_id}, expect, check,
        lambda p: f'POST /pd/api/v1/operators {{"name":"transfer-peer","region_id":{p.region_id},'
                  f'"from_store_id":{p.from_store_id},"to_store_id":{p.to_store_id}}}')


async def extra_replica_removed(pd: PDClient, region: RegionInfo) -> str | None:
    """Why PD would undo an added peer at once: the region is already fully replicated and the
    replica checker removes extra peers."""
    try:
        config = await pd.config()
    except (PDError, PDUnreachable):
        return None
    wanted = int((config.get("replication") or {}).get("max-replicas", 3))
    removes = str((config.get("schedule") or {}).get("enable-remove-extra-replica", "true")) == "true"
    if removes and len(region.peers) >= wanted:
        return (f"region {region.id} already has {len(region.peers)} peers (max-replicas {wanted}): PD's replica "
                "checker would remove the extra one again; use transfer_peer to move a replica instead")
    return None


def _add_peer(pd: PDClient) -> ActionDef:
    def check(obs: Observation, p: PeerParams, region: RegionInfo) -> list[str]:
        problems = store_problems(obs, p.store_id)
        if p.store_id in peer_stores(region):
            problems.append(f"region {p.region_id} already has a peer on store {p.store_id}")
        return problems

    def expect(p: PeerParams, region: RegionInfo) -> tuple[bool, str]:
        ok = p.store_id in voter_stores(region)
        return ok, (f"region {p.region_id} has a voter on store {p.store_id}" if ok
                    else f"region {p.region_id} has no voter on store {p.store_id}")

    return _peer_action(
        pd, "add_peer", "Add a voter peer of a region on a store (PD operator add-peer; the new peer needs a "
        "snapshot).", PeerParams, RiskTier.high,
        lambda p: {"name": "add-peer", "region_id": p.region_id, "store_id": p.store_id}, expect, check,
        lambda p: f'POST /pd/api/v1/operators {{"name":"add-peer","region_id":{p.region_id},"store_id":{p.store_id}}}')


def _remove_peer(pd: PDClient) -> ActionDef:
    def check(obs: Observation, p: PeerParams, region: RegionInfo) -> list[str]:
        if p.store_id not in peer_stores(region):
            return [f"region {p.region_id} has no peer on store {p.store_id}"]
        if len(region.peers) <= 1:
            return [f"region {p.region_id} has only one peer: removing it would lose the data"]
        return []

    def expect(p: PeerParams, region: RegionInfo) -> tuple[bool, str]:
        ok = p.store_id not in peer_stores(region)
        return ok, (f"region {p.region_id} no longer has a peer on store {p.store_id}" if ok
                    else f"region {p.region_id} still has a peer on store {p.store_id}")

    return _peer_action(
        pd, "remove_peer", "Remove a region's peer from a store (PD operator remove-peer; moves the leader "
        "first if needed).", PeerParams, RiskTier.high,
        lambda p: {"name": "remove-peer", "region_id": p.region_id, "store_id": p.store_id}, expect, check,
        lambda p: f'POST /pd/api/v1/operators {{"name":"remove-peer","region_id":{p.region_id},'
                  f'"store_id":{p.store_id}}}')


async def evicted_stores(pd: PDClient) -> list[int]:
    return await pd.scheduler_stores("evict-leader-scheduler")


def _drain_store(pd: PDClient) -> ActionDef:
    async def precheck(obs: Observation, p: StoreParams) -> list[str]:
        problems = store_problems(obs, p.store_id, must_serve=False)
        evicted = {str(s) for s in obs.details.get("evict_leader_stores", [])}
        others = [n for n in obs.nodes if n.kind == "store" and n.id != str(p.store_id) and n.id not in evicted
                  and n.metrics.get("probe_ok") == 1.0 and state_name(n) == "Up"]
        if not others:
            problems.append("no other serving store could take the leaders")
        return problems

    async def execute(p: StoreParams, ctx: ActionContext) -> ActionOutcome:
        what = f"drain leaders from store {p.store_id}"
        await ctx.sending()
        try:
            await pd.send("POST", "schedulers", {"name": "evict-leader-scheduler", "store_id": p.store_id})
        except PDError as e:
            raise reason_for(e, what) from e
        except PDUnreachable as e:
            raise unreachable(e, what) from e
        leaders = None
        deadline = asyncio.get_running_loop().time() + min(DRAIN_WAIT_S, ctx.timeout_s * 0.8)
        while asyncio.get_running_loop().time() < deadline:
            try:
                leaders = (await pd.store(p.store_id)).status.leader_count
            except (PDError, PDUnreachable):
                leaders = None
            if leaders == 0:
                return ActionOutcome(detail=f"store {p.store_id} holds no leaders (evict-leader scheduler added)",
                                     data={"leaders": 0})
            ctx.progress(f"store {p.store_id}: {leaders} leaders left")
            await asyncio.sleep(POLL_S * 2)
        return ActionOutcome(detail=f"evict-leader scheduler added for store {p.store_id}; {leaders} leaders "
                                    "still there, PD keeps moving them", data={"leaders": leaders})

    async def reconcile(_obs: Observation, p: StoreParams) -> Reconciliation:
        ids = await evicted_stores(pd)
        return Reconciliation(took_effect=p.store_id in ids, detail=f"evict-leader applies to stores {ids}")

    return ActionDef(
        "drain_store", "Move every leader off a store and keep them off (adds an evict-leader scheduler). "
        "Leaves state behind: undo with undrain_store.", StoreParams, RiskTier.high, True,
        lambda p: f"store:{p.store_id}", precheck, execute,
        lambda p: f'POST /pd/api/v1/schedulers {{"name":"evict-leader-scheduler","store_id":{p.store_id}}}',
        reconcile, undo="undrain_store", marks_sends=True)


async def _delete_scheduler(pd: PDClient, name: str, what: str) -> str:
    try:
        await pd.send("DELETE", f"schedulers/{name}")
    except PDError as e:
        if e.status == 404 or "scheduler not found" in e.message or "not found" in e.message:
            return "already absent"
        raise reason_for(e, what) from e
    except PDUnreachable as e:
        raise unreachable(e, what) from e
    return "removed"


def _undrain_store(pd: PDClient) -> ActionDef:
    async def precheck(obs: Observation, p: StoreParams) -> list[str]:
        return store_problems(obs, p.store_id, must_serve=False)

    async def execute(p: StoreParams, ctx: ActionContext) -> ActionOutcome:
        what = f"let store {p.store_id} take leaders again"
        await ctx.sending()
        result = await _delete_scheduler(pd, f"evict-leader-scheduler-{p.store_id}", what)
        if p.store_id in await evicted_stores(pd):
            raise ActionFailed(f"{what}: the evict-leader scheduler still lists store {p.store_id}")
        return ActionOutcome(detail=f"evict-leader for store {p.store_id} {result}; balance-leader will bring "
                                    "leaders back", data={"result": result})

    async def reconcile(_obs: Observation, p: StoreParams) -> Reconciliation:
        ids = await evicted_stores(pd)
        return Reconciliation(took_effect=p.store_id not in ids, detail=f"evict-leader applies to stores {ids}")

    return ActionDef(
        "undrain_store", "Let a drained store take leaders again (removes its evict-leader scheduler entry).",
        StoreParams, RiskTier.low, True, lambda p: f"store:{p.store_id}", precheck, execute,
        lambda p: f"DELETE /pd/api/v1/schedulers/evict-leader-scheduler-{p.store_id}", reconcile, marks_sends=True)


PER_STORE = re.compile(r"^(evict-leader-scheduler|grant-leader-scheduler)-(\d+)$")


def scheduler_removal_risk(p: SchedulerParams) -> RiskTier:
    """A leftover per-store scheduler is cheap to remove; PD's own balancers and its slow-store
    guard keep the cluster healthy, so turning them off is not."""
    return RiskTier.high if p.name.startswith(("balance-", "evict-slow-store")) else RiskTier.low


def _remove_scheduler(pd: PDClient) -> ActionDef:
    async def present(name: str) -> bool:
        m = PER_STORE.match(name)
        if m:
            return int(m.group(2)) in await pd.scheduler_stores(m.group(1))
        return name in await pd.schedulers()

    async def precheck(obs: Observation, p: SchedulerParams) -> list[str]:
        m = PER_STORE.match(p.name)
        if m:
            return store_problems(obs, int(m.group(2)), must_serve=False)
        return []

    async def execute(p: SchedulerParams, ctx: ActionContext) -> ActionOutcome:
        what = f"remove scheduler {p.name}"
        await ctx.sending()
        result = await _delete_scheduler(pd, p.name, what)
        if await present(p.name):
            raise ActionFailed(f"{what}: PD still lists it")
        return ActionOutcome(detail=f"scheduler {p.name} {result}", data={"result": result})

    async def reconcile(_obs: Observation, p: SchedulerParams) -> Reconciliation:
        gone = not await present(p.name)
        return Reconciliation(took_effect=gone, detail=f"scheduler {p.name} {'absent' if gone else 'present'}")

    def target(p: SchedulerParams) -> str:
        m = PER_STORE.match(p.name)
        return f"store:{m.group(2)}" if m else f"scheduler:{p.name}"

    return ActionDef(
        "remove_scheduler", "Remove a PD scheduler (e.g. a leftover evict-leader-scheduler-<store id> that keeps a "
        "healthy store at 0 leaders). Removing a balancing scheduler (balance-*) or evict-slow-store is "
        "high risk: the cluster stops balancing, or stops protecting itself from a slow store.", SchedulerParams,
        RiskTier.low, True, target, precheck, execute, lambda p: f"DELETE /pd/api/v1/schedulers/{p.name}", reconcile,
        marks_sends=True, risk_for=scheduler_removal_risk)


def _add_scheduler(pd: PDClient) -> ActionDef:
    async def precheck(_obs: Observation, _p: AddSchedulerParams) -> list[str]:
        return []

    async def execute(p: AddSchedulerParams, ctx: ActionContext) -> ActionOutcome:
        what = f"add scheduler {p.name}"
        await ctx.sending()
        try:
            await pd.send("POST", "schedulers", {"name": p.name})
        except PDError as e:
            if "existed" in e.message:
                return ActionOutcome(detail=f"scheduler {p.name} was already running", data={"noop": True})
            raise reason_for(e, what) from e
        except PDUnreachable as e:
            raise unreachable(e, what) from e
        return ActionOutcome(detail=f"scheduler {p.name} is running")

    async def reconcile(_obs: Observation, p: AddSchedulerParams) -> Reconciliation:
        there = p.name in await pd.schedulers()
        return Reconciliation(took_effect=there, detail=f"scheduler {p.name} {'present' if there else 'absent'}")

    return ActionDef(
        "add_scheduler", "(Re-)enable one of PD's balancing schedulers.", AddSchedulerParams, RiskTier.low, True,
        lambda p: f"scheduler:{p.name}", precheck, execute,
        lambda p: f'POST /pd/api/v1/schedulers {{"name":"{p.name}"}}', reconcile, marks_sends=True)


def _split_region(pd: PDClient) -> ActionDef:
    async def precheck(_obs: Observation, p: SplitParams) -> list[str]:
        region, error = await fetch_region(pd, p.region_id)
        if error:
            return [error]
        return [] if region.leader_store else [f"region {p.region_id} has no leader to split it"]

    async def execute(p: SplitParams, ctx: ActionContext) -> ActionOutcome:
        what = f"split region {p.region_id}"
        before, error = await fetch_region(pd, p.region_id)
        if error:
            raise ActionFailed(f"{what}: {error}")
        recorded = (ctx.extra.get("checkpoint") or {}).get("range")
        if recorded is not None and recorded != [before.start_key, before.end_key]:
            # An earlier attempt's split happened after all (the engine reconciles before a retry;
            # this is the belt to those braces): never split twice.
            return ActionOutcome(detail=f"region {p.region_id} was already split by an earlier attempt",
                                 data={"before": recorded, "after": [before.start_key, before.end_key]})
        await ctx.sending({"range": [before.start_key, before.end_key]})
        await add_operator(pd, {"name": "split-region", "region_id": p.region_id, "policy": p.policy}, what)
        await wait_operator(pd, p.region_id, ctx, what)
        after, error = await fetch_region(pd, p.region_id)
        if error:  # the split may well be done: only its confirmation failed (reconciled, not re-sent)
            raise ActionFailed(f"{what}: cannot confirm: {error}", retryable=True)
        if after.end_key == before.end_key and after.start_key == before.start_key:
            raise ActionFailed(f"{what}: PD's operator finished but the region's range did not change")
        # TiKV derives the right half by default: the region keeps its id and end, a new one takes the left.
        return ActionOutcome(detail=f"region {p.region_id} split: it now spans [{after.start_key or '-inf'}, "
                                    f"{after.end_key or '+inf'}) instead of [{before.start_key or '-inf'}, "
                                    f"{before.end_key or '+inf'})",
                             data={"before": [before.start_key, before.end_key],
                                   "after": [after.start_key, after.end_key]})

    async def reconcile(_obs: Observation, p: SplitParams, checkpoint: dict[str, Any] | None = None
                        ) -> Reconciliation:
        before = (checkpoint or {}).get("range")
        if before is None:
            return Reconciliation(took_effect=None, detail=f"no record of region {p.region_id}'s range before the split")
        running = await operator_running(pd, p.region_id)  # before the region: see _peer_action's reconcile
        region, error = await fetch_region(pd, p.region_id)
        if error:
            return Reconciliation(took_effect=None, detail=error)
        now = [region.start_key, region.end_key]
        split = now != before
        if not split and running is not False:
            return Reconciliation(took_effect=None, detail=f"region {p.region_id} is not split yet, and PD's "
                                                           "operator on it may still be running")
        return Reconciliation(took_effect=split, detail=f"region {p.region_id} spans {now} "
                                                        f"({'split' if split else 'unchanged'}; before: {before})")

    return ActionDef(
        "split_region", "Split a region in two (e.g. a hot region, so PD can spread its load).", SplitParams,
        RiskTier.low, False, lambda p: f"region:{p.region_id}", precheck, execute,
        lambda p: f'POST /pd/api/v1/operators {{"name":"split-region","region_id":{p.region_id},'
                  f'"policy":"{p.policy}"}}', reconcile, marks_sends=True)


def _set_store_weight(pd: PDClient) -> ActionDef:
    async def precheck(obs: Observation, p: WeightParams) -> list[str]:
        return store_problems(obs, p.store_id, must_serve=False)

    async def execute(p: WeightParams, ctx: ActionContext) -> ActionOutcome:
        what = f"set weights of store {p.store_id}"
        await ctx.sending()
        try:
            await pd.send("POST", f"store/{p.store_id}/weight", {"leader": p.leader, "region": p.region})
            status = (await pd.store(p.store_id)).status
        except PDError as e:
            raise reason_for(e, what) from e
        except PDUnreachable as e:
            raise unreachable(e, what) from e
        if (status.leader_weight, status.region_weight) != (p.leader, p.region):
            raise ActionFailed(f"{what}: PD reports leader weight {status.leader_weight}, region weight "
                               f"{status.region_weight}")
        return ActionOutcome(detail=f"store {p.store_id}: leader weight {p.leader:g}, region weight {p.region:g}")

    async def reconcile(_obs: Observation, p: WeightParams) -> Reconciliation:
        status = (await pd.store(p.store_id)).status
        ok = (status.leader_weight, status.region_weight) == (p.leader, p.region)
        return Reconciliation(took_effect=ok, detail=f"weights {status.leader_weight}/{status.region_weight}")

    return ActionDef(
        "set_store_weight", "Change how many leaders and regions PD gives a store relative to others "
        "(weights default to 1; lower means fewer).", WeightParams, RiskTier.high, True,
        lambda p: f"store:{p.store_id}", precheck, execute,
        lambda p: f'POST /pd/api/v1/store/{p.store_id}/weight {{"leader":{p.leader:g},"region":{p.region:g}}}',
        reconcile, marks_sends=True)


def _same_value(current: Any, wanted: Any, kind: str) -> bool:
    if kind == "duration":
        return parse_duration(str(current)) == parse_duration(str(wanted))
    try:
        return float(current) == float(wanted)
    except (TypeError, ValueError):
        return False


def _set_config(pd: PDClient) -> ActionDef:
    async def precheck(_obs: Observation, _p: ConfigParams) -> list[str]:
        return []

    async def execute(p: ConfigParams, ctx: ActionContext) -> ActionOutcome:
        what = f"set {p.key}"
        try:
            before = (await pd.schedule_config()).get(p.key)
            await ctx.sending({"before": before})
            await pd.send("POST", "config", {p.key: p.value})
            after = (await pd.schedule_config()).get(p.key)
        except PDError as e:
            raise reason_for(e, what) from e
        except PDUnreachable as e:
            raise unreachable(e, what) from e
        if not _same_value(after, p.value, CONFIG_KEYS[p.key]):
            raise ActionFailed(f"{what}: PD reports {after!r} after the change")
        return ActionOutcome(detail=f"{p.key}: {before} -> {after}", data={"before": before, "after": after})

    async def reconcile(_obs: Observation, p: ConfigParams) -> Reconciliation:
        current = (await pd.schedule_config()).get(p.key)
        ok = _same_value(current, p.value, CONFIG_KEYS[p.key])
        return Reconciliation(took_effect=ok, detail=f"{p.key} is {current!r}")

    return ActionDef(
        "set_config", "Change one of PD's schedule settings (e.g. max-store-down-time, leader-schedule-limit).",
        ConfigParams, RiskTier.high, True, lambda p: f"config:{p.key}", precheck, execute,
        lambda p: f"POST /pd/api/v1/config {{{p.key!r}: {p.value!r}}}".replace("'", '"'), reconcile, marks_sends=True)


def _remove_store(pd: PDClient) -> ActionDef:
    async def precheck(obs: Observation, p: StoreParams) -> list[str]:
        problems = store_problems(obs, p.store_id, must_serve=False)
        n = store_node(obs, p.store_id)
        if n is not None and state_name(n) == "Offline":
            problems.append(f"store {p.store_id} is already being removed")
        return problems

    async def execute(p: StoreParams, ctx: ActionContext) -> ActionOutcome:
        what = f"remove store {p.store_id}"
        await ctx.sending()
        try:
            await pd.send("DELETE", f"store/{p.store_id}")
            state = (await pd.store(p.store_id)).store.state_name
        except PDError as e:
            raise reason_for(e, what) from e
        except PDUnreachable as e:
            raise unreachable(e, what) from e
        return ActionOutcome(detail=f"store {p.store_id} is {state}; PD moves its replicas to other stores and "
                                    "then marks it Tombstone", data={"state": state})

    async def reconcile(_obs: Observation, p: StoreParams) -> Reconciliation:
        state = (await pd.store(p.store_id)).store.state_name
        return Reconciliation(took_effect=state in ("Offline", "Tombstone"), detail=f"store {p.store_id} is {state}")

    return ActionDef(
        "remove_store", "Take a store out of the cluster for good (DELETE /store): PD re-creates its replicas "
        "elsewhere. Destructive: the store cannot simply come back.", StoreParams, RiskTier.destructive, False,
        lambda p: f"store:{p.store_id}", precheck, execute, lambda p: f"DELETE /pd/api/v1/store/{p.store_id}",
        reconcile, marks_sends=True)
