"""One campaign trial, in a slot worker: the planned trial becomes the runner's `TrialSpec`
(eval/spec.py) and runs through `eval.trial.run_trial`, with the harness approver beside it when
the variant has an approval policy.

What the campaign adds to a single trial:
- the slot's address block (slot k: 127.(k+10).0.0/24) and this worker's core;
- the inject moment: the pre-window plus a jitter drawn from the trial seed, the same for every
  variant of a pair;
- the variant's settings: policy, diagnoser, model, tool allowlist, budgets, and the system
  prompt's text (read from the file whose hash is in the variant's config);
- the attempt number, and whether a fault was injected: the campaign retries an invalid trial
  only when none was (infrastructure retries never re-roll a trial that met its fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

from eval.approver import Approver
from eval.campaign_plan import Plan, plan_campaign
from eval.campaign_spec import Campaign, Scenario, Variant
from eval.spec import FaultSpec, Timings, TrialSpec, VariantSpec, derive_seed

PORT_RANGE = (20000, 32000)  # the project's test range, below the ephemeral ports
PORT_SPAN = 300  # ports a lab may use from its base (the simulator's stores, the rate limiter's proxy links)
PRE_INJECTION = ("lab_reset", "healthy", "operator_start", "workload_start", "pre_window")
_cache: dict[int, tuple[Campaign, Plan]] = {}


def variant_spec(campaign: Campaign, v: Variant) -> VariantSpec:
    policy = v.effective_policy
    budgets = {k: float(x) for k, x in (v.budgets.model_dump() if v.budgets else {}).items() if x is not None}
    options: dict[str, Any] = {}
    prompt = campaign.prompt_text(v.name)
    if prompt is not None:
        options["claude"] = {"system_prompt": prompt}
    return VariantSpec(name=v.name, kind=v.kind, diagnoser=v.diagnoser, mode=policy.mode, approval=policy.approval,
                       model=v.model, tools=v.tools, budgets=budgets, agent_options=options, memory=v.memory)


def trial_spec(campaign: Campaign, scenario: Scenario, variant: Variant, *, seed: int, seed_index: int, repeat: int,
               slot: int, artifacts_root: Path, port_base: int = 24000) -> TrialSpec:
    spec = campaign.spec
    t = scenario.timing(spec.defaults)
    lo, hi = t.inject_jitter_s
    jitter = random.Random(derive_seed(seed, "inject_jitter")).uniform(lo, hi)
    to = t.timeouts
    timings = Timings(lab_reset=to.lab_reset, healthy=to.healthy, start=to.start, inject=to.inject, effect=to.effect,
                      quiesce=to.quiesce, revert_per_fault=to.revert_per_fault, capture=to.capture,
                      pre_window_s=t.pre_window_s + jitter, observe_budget_s=t.observe_budget_s,
                      check_interval_s=t.oracle.check_interval_s, clean_checks=t.oracle.clean_checks,
                      hold_s=t.oracle.hold_s)
    faults = [FaultSpec(kind=f.kind, target=f.target,
                        params={**f.params, **({"duration_s": f.duration_s} if f.duration_s is not None else {})})
              for f in scenario.faults]
    w = scenario.workload
    workload: dict[str, Any] = {}
    if w.rate_per_s is not None:
        workload["rate_per_s"] = w.rate_per_s
    if w.slo is not None:
        workload["slo_success"], workload["slo_p99_ms"] = w.slo.success, w.slo.p99_ms
    if w.params:
        workload["params"] = dict(w.params)
    return TrialSpec(subject=scenario.subject, scenario=scenario.name, faults=faults,
                     variant=variant_spec(campaign, variant), seed=seed, seed_index=seed_index, repeat=repeat,
                     slot=slot, port_base=port_base, lab=dict(scenario.lab), workload=workload, timings=timings,
                     artifacts_root=artifacts_root)


def listening(prefix: str) -> set[int]:
    """Ports with a listening TCP socket on any address of `prefix`.0/24 (from /proc/net/tcp)."""
    a, b, c = (int(x) for x in prefix.split("."))
    ports: set[int] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return ports
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
            continue
        addr, port = fields[1].split(":")
        raw = bytes.fromhex(addr)[::-1]  # little-endian on x86 and arm
        if (raw[0], raw[1], raw[2]) == (a, b, c):
            ports.add(int(port, 16))
    return ports


def free_port_base(slot: int) -> int:
    """A port base whose whole span is free on the slot's address block. The machine is shared
    (other labs may use the same block), so it is chosen per trial attempt, at random; port
    numbers never change what a trial measures."""
    from subjects.evaluation import AddressBlock

    taken = listening(AddressBlock.for_slot(slot).prefix)
    bases = list(range(PORT_RANGE[0], PORT_RANGE[1] - PORT_SPAN, PORT_SPAN))
    random.SystemRandom().shuffle(bases)
    for base in bases:
        if not any(base <= p < base + PORT_SPAN for p in taken):
            return base
    raise RuntimeError(f"no free span of {PORT_SPAN} ports on {AddressBlock.for_slot(slot).cidr}")


async def _campaign(store: Any, campaign_id: int) -> tuple[Campaign, Plan]:
    if campaign_id not in _cache:
        from eval import campaign_store

        campaign, _ = await campaign_store.load(store, campaign_id)
        shard = await campaign_store.shard_of(store, campaign_id)
        _cache[campaign_id] = (campaign, plan_campaign(campaign, adapter_of=None, shard=shard,
                                                       allow_over_budget=True))
    return _cache[campaign_id]


async def _find_run(store: Any, ids: tuple[int, int, int], t: Any, attempt: int) -> int | None:
    row = await store.db.fetchone(
        "SELECT run_id FROM eval_trials WHERE campaign_id = ? AND scenario_id = ? AND variant_id = ? AND seed_index = ? "
        "AND repeat = ? AND attempt = ? ORDER BY id DESC LIMIT 1", (*ids, t.seed_index, t.repeat, attempt))
    return None if row is None else int(row["run_id"])


async def execute(store: Any, job: dict[str, Any], slot: int) -> dict[str, Any]:
    """Run the job's trial; the result the dispatcher needs (the store holds the rest)."""
    from eval import campaign_store
    from eval.trial import run_trial

    campaign_id, attempt = int(job["campaign_id"]), int(job.get("attempt", 1))
    campaign, plan = await _campaign(store, campaign_id)
    planned = next(t for t in plan.trials if t.key == job["key"])
    scenario = campaign.spec.scenario(planned.scenario)
    variant = campaign.spec.variant(planned.variant)
    scenarios = {s.name: s.id for s in await store.scenarios(campaign_id)}
    variants = {v.name: v.id for v in await store.variants(campaign_id)}
    ids = (campaign_id, scenarios[scenario.name], variants[variant.name])
    spec = trial_spec(campaign, scenario, variant, seed=planned.seed, seed_index=planned.seed_index,
                      repeat=planned.repeat, slot=slot, port_base=free_port_base(slot),
                      artifacts_root=campaign_store.campaign_dir(Path(store.path), campaign_id))

    approver_task: asyncio.Task[None] | None = None
    approver: Approver | None = None

    def progress(phase: str, _detail: str) -> None:
        nonlocal approver_task
        if variant.approver is None or approver_task is not None or phase != "operator_start":
            return

        async def start() -> None:
            nonlocal approver
            run_id = await _find_run(store, ids, planned, attempt)
            if run_id is not None:
                approver = Approver(store, run_id, variant.approver.model_dump(), planned.seed)  # type: ignore[union-attr]
                await approver.run()

        approver_task = asyncio.create_task(start())

    try:
        trial = await run_trial(store, spec, campaign_id=ids[0], scenario_id=ids[1], variant_id=ids[2],
                                progress=progress, attempt=attempt)
    finally:
        if approver_task is not None:
            approver_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await approver_task
    if approver is not None:
        await store.update_trial(trial.id, metrics_json={**(trial.metrics_json or {}), "approver": approver.summary()})
    faults = await store.eval_faults(trial.id)
    phase = (trial.error_json or {}).get("phase")
    return {
        "key": planned.key, "trial_id": trial.id, "outcome": trial.outcome, "attempt": attempt,
        # a fault row is written before a fault is applied, so no row means nothing was injected
        "injected": bool(faults) or phase not in PRE_INJECTION,
        "error": trial.error_json, "duration_s": campaign_store.seconds_between(trial.created_at, trial.ended_at),
    }
