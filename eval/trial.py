"""One fault-injection trial, phase by phase (reference eval.md §2):

    lab_reset -> healthy -> operator_start -> workload_start -> pre_window -> inject -> observe
    -> quiesce -> revert -> verify_revert -> capture

Each phase has its own deadline and is recorded as a condition (start, end, ok, reason). Faults
are written down with what undoes them before they are applied; a fault that does not land makes
the trial `invalid`. Whatever happens after the lab exists (an error, a cancellation, Ctrl-C), the
faults are reverted in reverse order, each revert is verified, and the lab is torn down; what
cannot be undone is left marked in the store for `operator-tui eval cleanup`.

    trial = await run_trial(store, spec, campaign_id=..., scenario_id=..., variant_id=...)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.adapters import adapter as adapter_for
from eval.clock import NS, TrialClock
from eval.operator_proc import exit_status, log_tail, start_operator, stop_operator, write_config
from eval.record import load_record
from eval.scores import end_condition, rounds_of, score
from eval.spec import TrialSpec
from operator_tui.actions.decisions import engage_run_killswitch
from operator_tui.policy import set_approval, set_mode
from operator_tui.store import Store
from operator_tui.store.evals import EvalTrial
from subjects.evaluation import (
    AddressBlock,
    EvaluationAdapter,
    FaultPlan,
    LabRequest,
    Manifest,
    ProcessRef,
    WorkloadSpec,
    proc_start_time,
)

log = logging.getLogger("eval.trial")
Progress = Callable[[str, str], None]
HARNESS = "harness:eval"


class PhaseFailed(Exception):
    def __init__(self, phase: str, reason: str, invalid: bool = True):
        super().__init__(f"{phase}: {reason}")
        self.phase, self.reason, self.invalid = phase, reason, invalid


@dataclass
class TrialState:
    trial: EvalTrial
    spec: TrialSpec
    clock: TrialClock
    folder: Path
    adapter: EvaluationAdapter
    workload: WorkloadSpec
    progress: Progress
    phases: list[dict[str, Any]] = field(default_factory=list)
    manifest: Manifest | None = None
    baseline: dict[str, Any] | None = None
    plans: list[tuple[int, FaultPlan]] = field(default_factory=list)  # (eval_faults id, plan)
    operator: ProcessRef | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    buckets: list[dict[str, Any]] = field(default_factory=list)
    last_bucket_wall: float | None = None


async def run_trial(store: Store, spec: TrialSpec, *, campaign_id: int, scenario_id: int, variant_id: int,
                    progress: Progress | None = None, attempt: int = 1) -> EvalTrial:
    """Run one trial to its end and return its stored record (outcome, metrics, phases)."""
    adapter = adapter_for(spec.subject)
    ident = uuid.uuid4().hex[:8]
    trial = await store.create_trial(campaign_id, scenario_id, variant_id, subject=spec.subject, seed=spec.seed,
                                     ident=ident, slot=spec.slot, seed_index=spec.seed_index, repeat=spec.repeat,
                                     attempt=attempt, scenario_name=spec.scenario)
    folder = spec.artifacts_root / "trials" / f"{trial.id}-{ident}"
    folder.mkdir(parents=True, exist_ok=True)
    clock = TrialClock.start()
    defaults = adapter.workload_defaults()
    workload = WorkloadSpec(**{**defaults.to_dict(), **spec.workload, "seed": spec.seed})
    await store.update_trial(trial.id, artifacts_dir=str(folder), t_origin_mono_ns=clock.origin_mono_ns,
                             t_origin_wall=clock.origin_wall, harness_pid=os.getpid(),
                             harness_start_time=proc_start_time(os.getpid()), phase="lab_reset",
                             metrics_json={"timings": spec.timings.model_dump()})
    state = TrialState(trial, spec, clock, folder, adapter, workload, progress or (lambda _p, _d: None))
    try:
        await _lifecycle(store, state)
    finally:
        # BaseException-safe: a cancelled or crashed trial still reverts, verifies and tears down.
        await _shielded(_wind_down(store, state))
    result = await store.get_trial(trial.id)
    assert result is not None
    return result


async def _shielded(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue  # keep winding down; the caller's cancellation is re-raised by the caller's own await
    task.result()


# -- the phases ---------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _phase(store: Store, st: TrialState, name: str, deadline_s: float | None) -> AsyncIterator[dict[str, Any]]:
    entry: dict[str, Any] = {"phase": name, "start_s": round(st.clock.now_ns() / NS, 3), "end_s": None, "ok": None,
                             "reason": "", "deadline_s": deadline_s}
    st.phases.append(entry)
    st.progress(name, "")
    await store.update_trial(st.trial.id, phase=name, phases_json=st.phases)
    await store.add_eval_event(st.trial.id, st.clock.now_ns(), "harness", "phase_start", {"phase": name})
    try:
        if deadline_s is None:
            yield entry
        else:
            try:
                async with asyncio.timeout(deadline_s):
                    yield entry
            except TimeoutError as e:
                raise PhaseFailed(name, f"deadline of {deadline_s:g} s passed") from e
        entry["ok"] = True
    except PhaseFailed as e:
        entry["ok"], entry["reason"] = False, e.reason
        raise
    except Exception as e:
        entry["ok"], entry["reason"] = False, f"{type(e).__name__}: {e}"
        raise PhaseFailed(name, entry["reason"]) from e
    except BaseException:
        entry["ok"], entry["reason"] = False, "interrupted"
        raise
    finally:
        entry["end_s"] = round(st.clock.now_ns() / NS, 3)
        await _shielded(_record_phase(store, st, entry))


async def _record_phase(store: Store, st: TrialState, entry: dict[str, Any]) -> None:
    await store.update_trial(st.trial.id, phases_json=st.phases)
    await store.add_eval_event(st.trial.id, st.clock.now_ns(), "harness", "phase_end",
                               {k: entry[k] for k in ("phase", "ok", "reason")})


async def _lifecycle(store: Store, st: TrialState) -> None:
    spec, t, adapter = st.spec, st.spec.timings, st.adapter
    try:
        async with _phase(store, st, "lab_reset", t.lab_reset):
            request = LabRequest(AddressBlock.for_slot(spec.slot, spec.port_base), st.folder / "lab", st.trial.ident,
                                 spec.seed, dict(spec.lab))
            await _reset(store, st, request)
        async with _phase(store, st, "healthy", t.healthy) as entry:
            while True:
                checks = await _observe_once(store, st)
                if checks and all(c["ok"] for c in checks):
                    break
                entry["reason"] = "waiting: " + ", ".join(f"{c['check']}({c['entity']})" for c in checks if not c["ok"])
                await asyncio.sleep(min(0.5, t.check_interval_s))
            entry["reason"] = ""
        async with _phase(store, st, "operator_start", t.start):
            await _start_operator(store, st)
        async with _phase(store, st, "workload_start", t.start):
            assert st.manifest is not None
            await adapter.workload_start(st.manifest, st.workload)
    except PhaseFailed as e:
        await _invalid(store, st, e.phase, e.reason)
        return

    sampler = asyncio.create_task(_sample_forever(store, st), name=f"trial-{st.trial.id}-oracle")
    try:
        try:
            async with _phase(store, st, "pre_window", t.pre_window_s + t.check_interval_s * 3 + 10):
                await asyncio.sleep(t.pre_window_s)
                assert st.manifest is not None
                st.baseline = await adapter.baseline(st.manifest)  # after healthy, before inject
                await store.add_eval_event(st.trial.id, st.clock.now_ns(), "harness", "baseline", st.baseline)
            async with _phase(store, st, "inject", t.inject + t.effect * max(1, len(spec.faults))):
                await _inject(store, st)
        except PhaseFailed as e:
            await _invalid(store, st, e.phase, e.reason)
            return
        async with _phase(store, st, "observe", None) as entry:
            entry["reason"] = await _observe(store, st)
        await store.add_eval_event(st.trial.id, st.clock.now_ns(), "harness", "observe_end", {"why": entry["reason"]})
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler


async def _reset(store: Store, st: TrialState, request: LabRequest) -> None:
    """Start the lab and record its manifest. Cancelled meanwhile (the phase's deadline, Ctrl-C,
    the campaign stopping), the reset is still waited for: it may already have started processes
    (in a thread that a cancellation does not stop), and only a recorded lab is torn down."""
    task = asyncio.ensure_future(st.adapter.reset(request))
    try:
        st.manifest = await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await _shielded(_keep_manifest(store, st, task))
        raise
    await store.update_trial(st.trial.id, lab_manifest_json=st.manifest.to_dict(), lab_state="up")


async def _keep_manifest(store: Store, st: TrialState, task: asyncio.Future[Manifest]) -> None:
    st.manifest = await task
    await store.update_trial(st.trial.id, lab_manifest_json=st.manifest.to_dict(), lab_state="up")


async def _invalid(store: Store, st: TrialState, phase: str, reason: str) -> None:
    log.warning("trial %d invalid in %s: %s", st.trial.id, phase, reason)
    await store.update_trial(st.trial.id, error_json={"phase": phase, "reason": reason}, valid="false",
                             outcome="invalid")


async def _start_operator(store: Store, st: TrialState) -> None:
    assert st.manifest is not None
    variant, run_id, actor = st.spec.variant, st.trial.run_id, HARNESS
    # the run's own policy, before the operator looks at it
    await set_mode(store, variant.mode, actor, run_id, for_run=run_id)
    await set_approval(store, variant.approval, actor, run_id, for_run=run_id)
    settings = {"log_level": "info", **st.adapter.operator_settings(), **st.spec.operator, **variant.operator_config()}
    config = write_config(st.folder, st.spec.subject, st.manifest.section, settings)
    st.operator = start_operator(st.folder, config, store.path, run_id)
    await store.update_trial(st.trial.id, metrics_json={"timings": st.spec.timings.model_dump(),
                                                        "operator": {"pid": st.operator.pid,
                                                                     "start_time": st.operator.start_time}})
    while not await store.db.scalar("SELECT 1 FROM samples WHERE run_id = ? LIMIT 1", (run_id,)):
        status = exit_status(st.operator)
        if status is not None:
            raise PhaseFailed("operator_start", f"the operator exited with status {status}: "
                              + (log_tail(st.folder, 3).splitlines() or [""])[-1])
        await asyncio.sleep(0.1)
    await store.add_eval_event(st.trial.id, st.clock.now_ns(), "harness", "operator_started",
                               {"pid": st.operator.pid, "variant": variant.name})


async def _inject(store: Store, st: TrialState) -> None:
    assert st.manifest is not None
    rng = random.Random(st.spec.seed)
    if not st.spec.faults:
        await store.add_eval_event(st.trial.id, st.clock.now_ns(), "nemesis", "inject", {"faults": 0})
        return
    for seq, fault in enumerate(st.spec.faults, start=1):
        plan = await st.adapter.plan_fault(st.manifest, fault.kind, fault.target, dict(fault.params), rng,
                                           f"{st.trial.ident}{seq}")
        fid = await store.add_eval_fault(st.trial.id, seq, plan.kind, plan.target, plan.to_dict(), plan.affected,
                                         plan.undo)  # write-ahead: the undo is on disk before anything happens
        st.plans.append((fid, plan))
        await store.update_eval_fault(fid, status="applying", invoke_ns=st.clock.now_ns())
        evidence = await st.adapter.apply_fault(st.manifest, plan)
        applied = st.clock.now_ns()
        await store.update_eval_fault(fid, status="applied", applied_ns=applied, undo_json=plan.undo,
                                      verify_json={"apply": evidence})
        await store.add_eval_event(st.trial.id, applied, "nemesis", "inject",
                                   {"seq": seq, "kind": plan.kind, "target": plan.target})
        st.progress("inject", f"{plan.kind} on {plan.target}")
        deadline = time.monotonic() + st.spec.timings.effect
        verdict = await st.adapter.fault_effect(st.manifest, plan)
        while not verdict.ok and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            verdict = await st.adapter.fault_effect(st.manifest, plan)
        if not verdict.ok:
            await store.update_eval_fault(fid, status="not_landed", verify_json={"apply": evidence,
                                                                                 "effect": verdict.to_dict()})
            raise PhaseFailed("inject", f"fault {plan.kind} on {plan.target} did not land: {verdict.detail}")
        await store.update_eval_fault(fid, status="effect_verified", effect_verified_ns=st.clock.now_ns(),
                                      verify_json={"apply": evidence, "effect": verdict.to_dict()})


# -- observing ----------------------------------------------------------------------------------

async def _observe_once(store: Store, st: TrialState) -> list[dict[str, Any]]:
    assert st.manifest is not None
    t_ns = st.clock.now_ns()
    try:
        async with asyncio.timeout(max(2.0, st.spec.timings.check_interval_s * 3)):
            result = await st.adapter.oracle(st.manifest, st.baseline, [p for _, p in st.plans])
        checks = [c.to_dict() for c in result]
    except TimeoutError:
        checks = [{"check": "oracle_answered", "entity": "harness", "ok": False, "detail": "the oracle timed out",
                   "kind": "health"}]
    await store.add_oracle_checks(st.trial.id, t_ns, checks)
    rows = [{**c, "t_mono_ns": t_ns} for c in checks]
    st.checks.extend(rows)
    return checks


async def _read_workload(store: Store, st: TrialState) -> None:
    assert st.manifest is not None
    buckets = await st.adapter.workload_read(st.manifest, st.last_bucket_wall)
    rows = []
    for b in buckets:
        if st.last_bucket_wall is not None and b.t_wall <= st.last_bucket_wall:
            continue
        t_ns = st.clock.wall_to_ns(b.t_wall)
        rows.append((t_ns, b.to_dict(), b.meets(st.workload)))
        st.buckets.append({**b.to_dict(), "t_bucket_ns": t_ns, "slo_ok": b.meets(st.workload)})
        st.last_bucket_wall = b.t_wall
    await store.add_workload_buckets(st.trial.id, rows)


async def _sample_forever(store: Store, st: TrialState) -> None:
    interval = st.spec.timings.check_interval_s
    next_at = time.monotonic()
    while True:
        try:
            await _observe_once(store, st)
            await _read_workload(store, st)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("trial %d: oracle round failed", st.trial.id)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def _observe(store: Store, st: TrialState) -> str:
    """Until the end condition (the same for every variant), the budget, or the operator's exit."""
    t = st.spec.timings
    t0 = min((p_applied for p_applied in await _applied_times(store, st)), default=st.clock.now_ns())
    budget_end = t0 + int(t.observe_budget_s * NS)
    while True:
        state = end_condition(rounds_of(st.checks), st.buckets, t0, t.clean_checks, int(t.hold_s * NS))
        if state.kind == "mitigated":
            return "mitigated: " + state.detail
        if state.kind == "harmful":
            return "harmful: " + state.detail
        if st.clock.now_ns() >= budget_end:
            return f"budget of {t.observe_budget_s:g} s spent"
        if st.operator is not None and exit_status(st.operator) is not None:
            await store.add_eval_event(st.trial.id, st.clock.now_ns(), "harness", "operator_exited",
                                       {"tail": log_tail(st.folder, 5)})
            return "the operator exited"
        st.progress("observe", state.detail)
        await asyncio.sleep(min(0.25, t.check_interval_s))


async def _applied_times(store: Store, st: TrialState) -> list[int]:
    faults = await store.eval_faults(st.trial.id)
    times = [f.applied_ns for f in faults if f.applied_ns is not None]
    if not faults:
        inject = next((e for e in await store.eval_events(st.trial.id) if e["kind"] == "inject"), None)
        times = [int(inject["t_mono_ns"])] if inject else []
    return times


# -- winding down: quiesce, revert, verify, capture ---------------------------------------------

async def _wind_down(store: Store, st: TrialState) -> None:
    t = st.spec.timings
    if st.operator is not None:
        with contextlib.suppress(PhaseFailed):
            async with _phase(store, st, "quiesce", t.quiesce):
                await _quiesce(store, st)
    faults_ok = True
    if st.plans:
        with contextlib.suppress(PhaseFailed):
            async with _phase(store, st, "revert", t.revert_per_fault * len(st.plans) + 5):
                faults_ok = await _revert_all(store, st)
    await _capture(store, st, faults_ok)


async def _quiesce(store: Store, st: TrialState) -> None:
    """Engage the RUN's kill switch and measure until it holds (nothing of the run pending or
    executing), then stop the operator."""
    assert st.operator is not None
    run_id = st.trial.run_id
    engaged = time.monotonic()
    await engage_run_killswitch(store, run_id, HARNESS)
    open_states = ["proposed", "validated", "awaiting_approval", "approved", "scheduled", "executing"]
    held = False
    while time.monotonic() - engaged < st.spec.timings.quiesce - 1:
        if not await store.list_actions(states=open_states, run_id=run_id, limit=1):
            held = True
            break
        await asyncio.sleep(0.02)
    latency_ms = round((time.monotonic() - engaged) * 1000, 1)
    how = await stop_operator(st.operator)
    await store.add_eval_event(st.trial.id, st.clock.now_ns(), "harness", "quiesce",
                               {"latency_ms": latency_ms, "held": held, "operator": how})


async def _revert_all(store: Store, st: TrialState) -> bool:
    """Every fault in reverse order, each from its record alone, each verified."""
    all_ok = True
    for fid, plan in reversed(st.plans):
        ok = await revert_one(store, st.adapter, fid, plan.undo, st.clock.now_ns, st.spec.timings.revert_per_fault)
        all_ok = all_ok and ok
        st.progress("revert", f"{plan.kind} on {plan.target}: {'verified' if ok else 'NOT verified'}")
    return all_ok


async def revert_one(store: Store, adapter: EvaluationAdapter, fault_id: int, undo: dict[str, Any],
                     now_ns: Callable[[], int | None], deadline_s: float) -> bool:
    """Revert one fault (idempotent) and verify it; used by the trial and by the sweeper."""
    attempts = 0
    detail = ""
    verdict = None
    deadline = time.monotonic() + deadline_s
    await store.update_eval_fault(fault_id, status="reverting", revert_invoke_ns=now_ns())
    while time.monotonic() < deadline:
        attempts += 1
        try:
            async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                detail = await adapter.revert_fault(undo)
                await store.update_eval_fault(fault_id, status="reverted", reverted_ns=now_ns(),
                                              revert_attempts=attempts)
                verdict = await adapter.fault_reverted(undo)
        except Exception as e:
            # Any adapter failure fails this attempt (a firewall, tmpfs, PD or Docker error too): the
            # fault must end revert_verified or revert_failed, never stay "reverting".
            detail = f"{type(e).__name__}: {e}"
            verdict = None
        if verdict is not None and verdict.ok:
            break
        await asyncio.sleep(0.5)
    ok = verdict is not None and verdict.ok
    fault = next((f for f in await _faults_by_id(store, fault_id)), None)
    verify = dict(fault.verify_json) if fault else {}
    verify["revert"] = {"detail": detail, "verdict": verdict.to_dict() if verdict else None, "attempts": attempts}
    await store.update_eval_fault(fault_id, status="revert_verified" if ok else "revert_failed",
                                  revert_verified_ns=now_ns() if ok else None, verify_json=verify,
                                  revert_attempts=attempts)
    return ok


async def _faults_by_id(store: Store, fault_id: int) -> list[Any]:
    row = await store.db.fetchone("SELECT trial_id FROM eval_faults WHERE id = ?", (fault_id,))
    if row is None:
        return []
    return [f for f in await store.eval_faults(row["trial_id"]) if f.id == fault_id]


async def _capture(store: Store, st: TrialState, faults_ok: bool) -> None:
    with contextlib.suppress(PhaseFailed):
        async with _phase(store, st, "capture", st.spec.timings.capture) as entry:
            final: dict[str, Any] = {}
            if st.manifest is not None:
                checks = await st.adapter.oracle(st.manifest, st.baseline, [])
                final["oracle"] = [c.to_dict() for c in checks]
                final["lab_logs"] = await st.adapter.log_tails(st.manifest)
            final["operator_log"] = log_tail(st.folder)
            ok, checked, why = await store.verify_audit()
            run_events = await store.db.scalar("SELECT count(*) FROM audit_events WHERE run_id = ?",
                                               (st.trial.run_id,))
            final["audit_chain"] = {"ok": ok, "events_checked": checked, "run_events": run_events, "detail": why}
            await store.update_trial(st.trial.id, final_observation_json=final)
            if st.manifest is not None:
                removed = await st.adapter.teardown(st.manifest)
                left = await st.adapter.leftovers(st.manifest)
                final["teardown"] = {"removed": removed, "left": left}
                await store.update_trial(st.trial.id, lab_state="leaked" if left else "down",
                                         final_observation_json=final)
                if left:
                    entry["reason"] = "left behind: " + "; ".join(left)
    await store.end_run(st.trial.run_id, "completed")
    await finish_scores(store, st.trial.id, integrity={"faults_reverted": faults_ok})


async def finish_scores(store: Store, trial_id: int, integrity: dict[str, Any] | None = None) -> EvalTrial:
    """Score the trial from the store and write outcome and metrics (also `eval analyze`)."""
    trial = await store.get_trial(trial_id)
    assert trial is not None
    record = await load_record(store, trial)
    result = score(record)
    metrics = {**(trial.metrics_json or {}), **result["metrics"], "reason": result["reason"],
               "self_healed": result["self_healed"]}
    faults = await store.eval_faults(trial_id)
    metrics["integrity"] = {**(trial.metrics_json or {}).get("integrity", {}), **(integrity or {}),
                            "faults_not_verified": sum(1 for f in faults if f.status != "revert_verified"),
                            "audit_chain_ok": ((trial.final_observation_json or {}).get("audit_chain") or {}).get("ok"),
                            "lab_state": trial.lab_state}
    await store.update_trial(trial_id, outcome=result["outcome"], valid=result["valid"], metrics_json=metrics,
                             phase="done", ended_at=trial.ended_at or _now())
    updated = await store.get_trial(trial_id)
    assert updated is not None
    return updated


def _now() -> str:
    from operator_tui.timeutil import now_text

    return now_text()

