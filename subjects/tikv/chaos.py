"""Faults for TiKV, injected through the simulator's fault API (its admin listener, never PD's
port) and undone through it.

A real cluster has no such API; faults there come from the lab that runs it (signals, iptables,
full disks). Every record names the exact call that undoes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from subjects.base import FaultRecord
from subjects.plugin import PluginError, SubjectContext
from subjects.tikv.pd_client import PDClient, PDError, PDUnreachable

# kind -> (what it does, the parameter --target fills, other parameters)
KINDS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "kill_store": ("kill a store's process (status port closed, heartbeats stop)", "store_id", ()),
    "slow_store": ("make a store slow (slow score rises, requests slower)", "store_id", ("latency_ms",)),
    "disk_full": ("fill a store's disk", "store_id", ("used_ratio",)),
    "partition_store": ("cut a store off from PD and its peers (process keeps running)", "store_id", ()),
    "hot_region": ("send extra traffic to one region", "region_id", ("qps",)),
    "skew_leaders": ("pile leaders onto one store and stop balance-leader", "store_id", ()),
    "pd_down": ("PD drops every API connection", None, ()),
    "pd_garbage": ("PD answers with malformed data", None, ()),
    "status_hang": ("a store's status port accepts connections but never answers", "store_id", ()),
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "slow_store": {"latency_ms": 200},
    "disk_full": {"used_ratio": 0.9},
    "hot_region": {"qps": 5000},
}


class ChaosError(PluginError):
    pass


def kinds() -> dict[str, str]:
    return {k: v[0] for k, v in KINDS.items()}


async def inject(options: dict[str, Any], kind: str, target: str | None, params: dict[str, Any]) -> FaultRecord:
    if kind not in KINDS:
        raise ChaosError(f"unknown fault {kind!r} for tikv; known: {', '.join(KINDS)}")
    _, target_param, _ = KINDS[kind]
    body: dict[str, Any] = {"kind": kind, **DEFAULTS.get(kind, {}), **params}
    if target_param is not None:
        if target is not None:
            if not str(target).isdigit():
                raise ChaosError(f"--target for {kind} is a {target_param.replace('_', ' ')} (a number), got {target!r}")
            body[target_param] = int(target)
        elif target_param not in body:
            body[target_param] = 1  # a deterministic default; the record says which
    pd = PDClient(options["admin_url"])
    try:
        response = await pd.request("POST", "/sim/v1/faults", json_body=body)
        fault_id = response.json()["id"]
    except PDError as e:
        raise ChaosError(f"the simulator refused {kind}: {e.message}") from e
    except PDUnreachable as e:
        raise ChaosError(f"cannot reach the simulator's fault API: {e}") from e
    finally:
        await pd.aclose()
    target_value = body.get(target_param) if target_param else None
    return FaultRecord(subject="tikv", kind=kind, target=None if target_value is None else str(target_value),
                       params=body, undo={"method": "DELETE", "url": options["admin_url"], "path": f"/sim/v1/faults/{fault_id}"},
                       detail=f"{kind} {target_param}={target_value}" if target_param else kind)


async def revert(options: dict[str, Any], record: FaultRecord) -> str:
    pd = PDClient(record.undo.get("url") or options["admin_url"])
    try:
        await pd.request(record.undo["method"], record.undo["path"])
    except PDError as e:
        if e.status == 404:
            return "the simulator no longer knows this fault (it was restarted?): nothing left to undo"
        raise ChaosError(f"the simulator refused to revert: {e.message}") from e
    except PDUnreachable as e:
        raise ChaosError(f"cannot reach the simulator to revert {record.kind}: {e}") from e
    finally:
        await pd.aclose()
    return f"reverted {record.kind}" + (f" on {record.target}" if record.target else "")


def options(section: Any, ctx: SubjectContext) -> dict[str, Any]:
    """Where faults go: the simulator's admin API the section names, else the lab's or a console's
    embedded simulator (when the section names no PD, or the same PD)."""
    if section.sim_admin:
        return {"pd_url": section.pd, "admin_url": section.sim_admin}
    from subjects.tikv.lab import lab_status

    state = lab_status(ctx.lab_dir)
    alive = bool(state and state.get("alive") and state.get("admin_url"))
    if section.pd and not (alive and state and state["pd_url"] == section.pd.rstrip("/")):
        raise ChaosError(f"faults go to a simulator's admin API, not to PD: pass --sim-admin URL (printed by "
                         f"`operator-tui sim tikv`) with --pd {section.pd}")
    if not alive or state is None:
        raise ChaosError("no TiKV cluster to hit: `operator-tui lab up tikv`, or pass --sim-admin URL (a simulator)")
    return {"pd_url": state["pd_url"], "admin_url": state["admin_url"]}


def of_lab(lab_dir: Path, record: FaultRecord) -> bool:
    """A fault lives in the simulator that took it, so it acts on the lab whose admin API that is."""
    from subjects.tikv.lab import lab_status

    state = lab_status(lab_dir)
    return bool(state and state.get("admin_url") and record.undo.get("url") == state["admin_url"])
