"""Nothing left behind: undo what crashed or interrupted trials left on the host.

For every trial whose harness is gone (pid plus start time no longer match) and which still has a
fault not verified reverted or a lab not torn down: revert each such fault from its recorded undo
(its identity only: simulator fault id, chain name, mount path, pid plus start time), verify it,
stop the trial's operator process (pid plus start time), and tear the lab down from its manifest.
Never from name patterns. Runs at the start of `eval run` and as `operator-tui eval cleanup`.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from eval.adapters import adapter as adapter_for
from eval.trial import finish_scores, revert_one
from operator_tui.store import Store
from operator_tui.store.evals import FAULT_DONE, EvalTrial
from subjects.evaluation import Manifest, same_process, signal_process
from subjects.plugin import PluginError


@dataclass
class SweepReport:
    trials: list[int] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped_live: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"trials": self.trials, "actions": self.actions, "failures": self.failures,
                "skipped_live": self.skipped_live, "nothing_to_do": not self.actions and not self.failures}


def harness_alive(trial: EvalTrial) -> bool:
    if trial.harness_pid is None or trial.harness_start_time is None:
        return False
    if trial.harness_pid == os.getpid():
        return False  # this process is sweeping: whatever it ran earlier is over
    return same_process(trial.harness_pid, trial.harness_start_time)


async def sweep(store: Store) -> SweepReport:
    report = SweepReport()
    for trial in await store.trials_to_sweep():
        if harness_alive(trial):
            report.skipped_live.append(trial.id)
            continue
        report.trials.append(trial.id)
        await _sweep_trial(store, trial, report)
    return report


async def _sweep_trial(store: Store, trial: EvalTrial, report: SweepReport) -> None:
    subject = (await store.get_run(trial.run_id))
    try:
        adapter = adapter_for(subject.subject if subject else "")
    except PluginError as e:
        report.failures.append(f"trial {trial.id}: {e}")
        return
    operator = (trial.metrics_json or {}).get("operator") or {}
    if operator.get("pid") and same_process(int(operator["pid"]), int(operator["start_time"])):
        signal_process(int(operator["pid"]), int(operator["start_time"]), signal.SIGKILL)
        report.actions.append(f"trial {trial.id}: killed its operator (pid {operator['pid']})")
    faults_ok = True
    for fault in reversed(await store.eval_faults(trial.id)):
        if fault.status in FAULT_DONE:
            continue
        ok = await revert_one(store, adapter, fault.id, fault.undo_json, lambda: None, 15.0)
        faults_ok = faults_ok and ok
        line = f"trial {trial.id}: fault {fault.seq} {fault.kind} on {fault.target_entity} " + (
            "reverted and verified" if ok else "NOT verified reverted")
        (report.actions if ok else report.failures).append(line)
    if trial.lab_manifest_json and trial.lab_state in ("up", "leaked"):
        manifest = Manifest.from_dict(trial.lab_manifest_json)
        removed = await adapter.teardown(manifest)
        left = await adapter.leftovers(manifest)
        await store.update_trial(trial.id, lab_state="leaked" if left else "down")
        report.actions += [f"trial {trial.id}: {line}" for line in removed] or [f"trial {trial.id}: lab already gone"]
        report.failures += [f"trial {trial.id}: {line}" for line in left]
    if trial.phase != "done":
        await store.add_eval_event(trial.id, 0, "harness", "swept", {"faults_reverted": faults_ok})
        await store.update_trial(trial.id, error_json=trial.error_json or {
            "phase": trial.phase, "reason": "the harness died during the trial; swept by eval cleanup"})
        await store.end_run(trial.run_id, "crashed")
        if trial.t_origin_mono_ns is not None:
            await finish_scores(store, trial.id, integrity={"faults_reverted": faults_ok, "swept": True})
        await asyncio.sleep(0)
