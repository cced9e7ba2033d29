"""`operator-tui eval run`: N trials of one fault under one variant, as a campaign of its own
(named "adhoc …"), so that every trial has the same shape as a campaign's."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.adapters import adapter as adapter_for
from eval.spec import FaultSpec, Timings, TrialSpec, VariantSpec, derive_seed
from eval.trial import Progress, run_trial
from operator_tui.store import Store
from operator_tui.store.evals import EvalTrial, sha256_of


@dataclass
class AdhocRequest:
    subject: str
    chaos: str  # a fault kind, or "none" for a no-fault control
    variant: VariantSpec
    trials: int = 1
    seed: int = 0
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    lab: dict[str, Any] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    slot: int = 0
    port_base: int = 24000
    artifacts_root: Path = Path(".")


def validate(req: AdhocRequest) -> None:
    """ValueError for what the user can fix, before anything starts."""
    adapter = adapter_for(req.subject)
    kinds = adapter.fault_kinds()
    if req.chaos != "none" and req.chaos not in kinds:
        raise ValueError(f"unknown {req.subject} fault {req.chaos!r}; known: {', '.join(kinds)}, or none")
    if req.chaos != "none":
        unknown = set(req.params) - set(kinds[req.chaos].params)
        if unknown:
            raise ValueError(f"{req.chaos} has no parameter(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(kinds[req.chaos].params)) or 'none'}")
    if req.trials < 1:
        raise ValueError("--trials must be at least 1")


async def run_adhoc(store: Store, req: AdhocRequest, progress: Progress | None = None,
                    on_trial: Any = None) -> tuple[int, list[EvalTrial]]:
    validate(req)
    scenario = f"{req.subject}-{req.chaos}"
    faults = [] if req.chaos == "none" else [FaultSpec(kind=req.chaos, target=req.target, params=req.params)]
    spec_doc = {"subject": req.subject, "chaos": req.chaos, "target": req.target, "params": req.params,
                "variant": req.variant.model_dump(), "trials": req.trials, "seed": req.seed, "lab": req.lab,
                "timings": req.timings.model_dump()}
    campaign_id = await store.create_campaign(
        f"adhoc {req.subject} {req.chaos} {req.variant.name}", spec_sha256=sha256_of(spec_doc), root_seed=req.seed,
        git_rev=_git("rev-parse", "HEAD"), git_dirty=bool(_git("status", "--porcelain")),
        host={"python": platform.python_version(), "kernel": platform.release(), "machine": platform.machine()})
    variant_id = await store.add_variant(campaign_id, req.variant.name, req.variant.kind, req.variant.model_dump())
    scenario_id = await store.add_scenario(campaign_id, scenario, req.subject, lab=req.lab,
                                           faults=[f.model_dump() for f in faults],
                                           budgets=req.timings.model_dump())
    results = []
    status = "aborted"
    try:
        for i in range(req.trials):
            spec = TrialSpec(subject=req.subject, scenario=scenario, faults=faults, variant=req.variant,
                             seed=derive_seed(req.seed, scenario, i, 0), seed_index=i, slot=req.slot,
                             port_base=req.port_base, lab=req.lab, timings=req.timings,
                             artifacts_root=req.artifacts_root / f"campaign-{campaign_id}")
            trial = await run_trial(store, spec, campaign_id=campaign_id, scenario_id=scenario_id,
                                    variant_id=variant_id, progress=progress)
            results.append(trial)
            if on_trial is not None:
                on_trial(trial)
        status = "complete"
    finally:
        verdict = "pass" if results and all(t.outcome != "invalid" for t in results) else "error"
        await store.finish_campaign(campaign_id, status, verdict)
    return campaign_id, results


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""
