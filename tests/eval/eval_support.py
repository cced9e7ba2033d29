"""Shared by the eval tests: a slot and ports no other test uses, short timings, one-trial runs."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

from eval.spec import FaultSpec, Timings, TrialSpec, VariantSpec
from eval.trial import run_trial
from operator_tui.store import Store
from operator_tui.store.evals import EvalTrial

FAST = Timings(pre_window_s=1.5, observe_budget_s=25.0, hold_s=1.5, clean_checks=2, check_interval_s=0.5,
               healthy=30.0, lab_reset=30.0)
LAB = {"stores": 4, "regions": 40, "time_scale": 10.0}
_rng = random.Random()


def free_slot() -> int:
    """A slot (address block 127.(k+10).0.0/24) unlikely to be in use by anyone else right now."""
    return _rng.randint(100, 230)


def free_port_base() -> int:
    return _rng.randrange(20000, 31000, 100)


async def one_trial(store: Store, tmp: Path, variant: VariantSpec, faults: list[FaultSpec], *, seed: int = 1,
                    slot: int | None = None, timings: Timings = FAST, lab: dict[str, Any] | None = None) -> EvalTrial:
    campaign = await store.create_campaign("test")
    vid = await store.add_variant(campaign, variant.name, variant.kind, variant.model_dump())
    sid = await store.add_scenario(campaign, "s", "tikv", faults=[f.model_dump() for f in faults])
    spec = TrialSpec(subject="tikv", scenario="s", faults=faults, variant=variant, seed=seed,
                     slot=free_slot() if slot is None else slot, port_base=free_port_base(), lab=lab or LAB,
                     timings=timings, artifacts_root=tmp)
    return await run_trial(store, spec, campaign_id=campaign, scenario_id=sid, variant_id=vid)


def chains_named(fragment: str) -> list[str]:
    out = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if fragment in line]


def processes_with(fragment: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if fragment in line and "ps -eo" not in line]
