"""A campaign from file to verdict: plan, record, run on N slots, analyse, report.

    outcome = await run_campaign(campaign, db=PATH, parallel=2, shard=(1, 1), progress=Progress(...))
    outcome.exit_code   # 0 pass, 1 threshold failed, 3 incomplete, 4 integrity (2 is raised as SpecError)

`resume_campaign` runs the missing and invalid trials of a stored campaign again, when its spec
still hashes the same. Both leave the store holding everything the reports are made from, so
`eval report ID` gives the same reports later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval import campaign_store
from eval.campaign_analysis import Analysis, analyse
from eval.campaign_dispatch import dispatch
from eval.campaign_plan import Plan, PlannedTrial, plan_campaign
from eval.campaign_progress import Progress
from eval.campaign_results import CampaignRecord, TrialResult
from eval.campaign_spec import Campaign, SpecError
from eval.report_json import report as json_report

log = logging.getLogger("eval.campaign")

LIVE_VERDICT_RESAMPLES = 200  # the running verdict on screen; the reports use the campaign's B


@dataclass
class CampaignOutcome:
    campaign_id: int
    campaign: Campaign
    record: CampaignRecord
    trials: list[TrialResult]
    analysis: Analysis
    report: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return self.analysis.exit_code


def live_verdict(campaign: Campaign, trials: list[TrialResult]) -> str:
    """A short line for the progress display: outcomes so far and the thresholds as they stand."""
    quick = campaign.spec.model_copy(update={"stats": campaign.spec.stats.model_copy(
        update={"bootstrap_resamples": LIVE_VERDICT_RESAMPLES})})
    c = Campaign(quick, campaign.source, campaign.path, campaign.prompts, campaign.spec_sha256)
    done = [t for t in trials if t.outcome not in ("missing", "skipped")]
    if not done:
        return "no trial finished yet"
    a = analyse(c, done)
    counts = ", ".join(f"{v} {k}" for k, v in a.outcomes.items() if v)
    failing = [r["rule"] for r in a.thresholds if not r["passed"]]
    rules = (f"{len(a.thresholds) - len(failing)}/{len(a.thresholds)} thresholds passing"
             + (f" (failing: {failing[0]}{' …' if len(failing) > 1 else ''})" if failing else ""))
    integrity = "" if a.integrity["ok"] else "; INTEGRITY: " + a.integrity["problems"][0]
    return f"{counts}; {rules}{integrity}"


def will_retry(campaign: Campaign, result: dict[str, Any]) -> bool:
    """The dispatcher's rule (eval/campaign_dispatch.py), for the progress display."""
    return (result.get("outcome") == "invalid" and result.get("injected") is False
            and int(result.get("attempt", 1)) <= campaign.spec.infra_retries)


async def _execute(store: Any, campaign_id: int, campaign: Campaign, plan: Plan, todo: list[PlannedTrial],
                   progress: Progress | None, budget_s: float, started: float) -> bool:
    """Run `todo`; returns whether the run was cancelled."""
    db = Path(store.path)
    log_dir = campaign_store.campaign_dir(db, campaign_id)
    labels = {t.key: f"{t.scenario}/{t.variant} seed={t.seed_index} rep={t.repeat}" for t in todo}

    def make_job(t: PlannedTrial, attempt: int, slot: int) -> dict[str, Any]:
        return {"campaign_id": campaign_id, "key": t.key, "attempt": attempt, "slot": slot}

    started_attempts: dict[str, int] = {}

    def on_start(slot: int, t: PlannedTrial, attempt: int) -> None:
        started_attempts[t.key] = attempt
        if progress is not None:
            progress.trial_started(slot, labels[t.key] + (f" attempt {attempt}" if attempt > 1 else ""))

    async def on_result(slot: int, t: PlannedTrial, result: dict[str, Any]) -> None:
        if result.get("trial_id") is None:
            # the worker died or failed before the trial had a record: record it invalid
            result["trial_id"] = await campaign_store.record_harness_failure(store, campaign_id, campaign, t, result,
                                                                             slot)
        if progress is not None:
            err = result.get("error") or {}
            why = err.get("type") or err.get("phase") or ""
            if err.get("reason"):
                why += f": {str(err['reason'])[:100]}"
            retry = will_retry(campaign, result)
            progress.trial_finished(slot, labels[t.key], str(result.get("outcome")),
                                    float(result.get("duration_s") or 0.0), why, final=not retry)
            trials = await campaign_store.results(store, campaign_id, campaign, plan)
            progress.set_verdict(await asyncio.to_thread(live_verdict, campaign, trials))

    ticker: asyncio.Task[None] | None = None
    if progress is not None and progress.live:
        async def tick() -> None:
            while True:
                await asyncio.sleep(1.0)
                progress.tick()
        ticker = asyncio.create_task(tick())
    try:
        remaining = max(0.0, budget_s - (time.monotonic() - started))
        out = await dispatch(todo, parallel=plan.parallel, db=db, log_dir=log_dir, budget_s=remaining,
                             infra_retries=campaign.spec.infra_retries, make_job=make_job, on_start=on_start,
                             on_result=on_result)
    finally:
        if ticker is not None:
            ticker.cancel()
    if out.cancelled:
        # a trial cut short by the interruption has no outcome of its own: invalid, so that
        # `eval resume` runs it again
        unfinished = {k: a for k, a in started_attempts.items()
                      if k not in out.results or out.results[k].get("attempt") != a}
        await campaign_store.mark_interrupted(store, campaign_id, campaign, plan, unfinished)
    if out.not_run and not out.cancelled:
        await campaign_store.mark_skipped(store, campaign_id, out.not_run)
        if progress is not None:
            progress.line(f"campaign budget of {budget_s:.0f} s spent: {len(out.not_run)} trials skipped")
    return out.cancelled


async def _finish(store: Any, campaign_id: int, campaign: Campaign, plan: Plan, started: float,
                  cancelled: bool) -> CampaignOutcome:
    trials = await campaign_store.results(store, campaign_id, campaign, plan)
    analysis = await asyncio.to_thread(analyse, campaign, trials, planned=len(trials))
    if cancelled:
        if analysis.exit_code < 3:
            analysis.exit_code, analysis.verdict, analysis.status = 3, "error", "incomplete"
        analysis.reasons.insert(0, "incomplete: the campaign was interrupted")
    await campaign_store.finish(store, campaign_id, analysis, time.monotonic() - started,
                                aborted=cancelled)
    record = await campaign_store.record(store, campaign_id)
    return CampaignOutcome(campaign_id, campaign, record, trials, analysis,
                           json_report(campaign, record, trials, analysis))


@contextlib.contextmanager
def _sigterm_cancels() -> Iterator[None]:
    """SIGTERM (a CI job cancelled) stops the campaign like Ctrl-C: running trials wind down
    (faults reverted, labs torn down), the reports say what ran, the exit code is 3."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = False
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
            installed = True
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)


async def run_campaign(campaign: Campaign, *, db: Path, parallel: int | None = None, shard: tuple[int, int] = (1, 1),
                       allow_over_budget: bool = False, progress_stream: Any = None,
                       live: bool | None = None) -> CampaignOutcome:
    """Plan (SpecError before anything starts), record, run, analyse. The store at `db` is created
    when missing."""
    from operator_tui.store import Store

    plan = plan_campaign(campaign, parallel=parallel, shard=shard, allow_over_budget=allow_over_budget)
    started = time.monotonic()
    store = await Store.open(db)
    try:
        campaign_id = await campaign_store.create(store, campaign, plan)
        progress = _progress(plan, plan.mine, progress_stream, live)
        if progress is not None:
            progress.line(f"campaign {campaign_id}: {plan.summary()}")
            for w in plan.warnings:
                progress.line(f"note: {w}")
        with _sigterm_cancels():
            cancelled = await _execute(store, campaign_id, campaign, plan, plan.mine, progress,
                                       campaign.spec.budget.campaign_wall_s, started)
        if progress is not None:
            progress.close()
        return await _finish(store, campaign_id, campaign, plan, started, cancelled)
    finally:
        await store.close()


async def resume_campaign(campaign_id: int, *, db: Path, parallel: int | None = None, allow_over_budget: bool = False,
                          progress_stream: Any = None, live: bool | None = None) -> CampaignOutcome:
    """Run again the trials of a stored campaign that are missing, skipped or invalid."""
    from operator_tui.store import Store

    store = await Store.open(db)
    try:
        campaign, record = await campaign_store.load(store, campaign_id)  # SpecError when the hash moved
        shard = await campaign_store.shard_of(store, campaign_id)
        plan = plan_campaign(campaign, parallel=parallel or record.parallel, shard=shard,
                             allow_over_budget=True)
        done = {t.key for t in await campaign_store.results(store, campaign_id, campaign, plan)
                if t.outcome not in ("missing", "skipped", "invalid")}
        todo = [t for t in plan.mine if t.key not in done]
        from eval.campaign_plan import makespan

        worst = makespan([t.worst_case_s for t in todo], plan.parallel)
        budget = campaign.spec.budget.campaign_wall_s
        if worst > budget and not allow_over_budget:
            raise SpecError(str(campaign.path), None, "budget.campaign_wall_s",
                            f"resuming {len(todo)} trials takes up to {worst:.0f} s, over the budget of {budget:.0f} s; "
                            "pass --allow-over-budget")
        started = time.monotonic()
        await campaign_store.reopen(store, campaign_id)
        progress = _progress(plan, todo, progress_stream, live)
        if progress is not None:
            progress.line(f"campaign {campaign_id}: resuming {len(todo)} of {len(plan.mine)} trials "
                          f"(missing, skipped or invalid)")
        cancelled = False
        if todo:
            with _sigterm_cancels():
                cancelled = await _execute(store, campaign_id, campaign, plan, todo, progress, budget, started)
        if progress is not None:
            progress.close()
        return await _finish(store, campaign_id, campaign, plan, started, cancelled)
    finally:
        await store.close()


def _progress(plan: Plan, todo: list[PlannedTrial], stream: Any, live: bool | None) -> Progress | None:
    if stream is None:
        return None
    typical = sum(t.worst_case_s for t in todo) / len(todo) / 3 if todo else None
    return Progress(total=len(todo), parallel=plan.parallel, stream=stream, live=live, typical_s=typical)
