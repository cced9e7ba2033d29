"""What the eval browser reads from the store, as plain data (no Textual here).

- `campaign_rows`: every campaign with its progress (finished/planned trials, what runs now) and a
  version that changes whenever one of its trials does: the browser re-reads only what moved.
- `campaign_view`: one campaign's trials as `TrialResult`s and its matrix cells (without bootstrap
  intervals, so a live view stays fast); `analyse` gives the rest (comparisons, thresholds).
- `trial_view`: everything one trial's detail shows, on the trial's clock: phases, faults, the
  harness's and the operator's events, workload buckets, the oracle's clean/dirty over time, the
  agent's sessions (diagnosis with alternatives, tool calls).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from eval.campaign_analysis import Analysis, analyse, matrix
from eval.campaign_results import CampaignRecord, TrialResult
from eval.campaign_spec import Campaign
from eval.clock import NS


@dataclass
class CampaignRow:
    id: int
    name: str
    started: str
    status: str
    verdict: str | None
    exit_code: int | None
    done: int
    total: int
    running: list[str]  # the phase of each trial running now
    version: tuple[Any, ...]


async def campaign_rows(store: Any, limit: int = 200) -> list[CampaignRow]:
    progress = await store.campaign_progress()
    out = []
    for c in await store.list_campaigns(limit=limit):
        p = progress.get(c.id, {"done": 0, "running": [], "version": ()})
        extra = (c.host_json or {}).get("campaign") or {}
        out.append(CampaignRow(
            id=c.id, name=c.name, started=c.created_at, status=c.status, verdict=c.verdict, exit_code=c.exit_code,
            done=p["done"], total=int(extra.get("planned") or p["done"]), running=p["running"],
            version=(c.status, c.exit_code, *p["version"])))
    return out


@dataclass
class CampaignView:
    campaign_id: int
    campaign: Campaign
    record: CampaignRecord
    trials: list[TrialResult]
    cells: list[dict[str, Any]]  # campaign_analysis.matrix
    version: tuple[Any, ...]


async def campaign_version(store: Any, campaign_id: int) -> tuple[Any, ...] | None:
    row = await store.get_campaign(campaign_id)
    if row is None:
        return None
    p = (await store.campaign_progress(campaign_id)).get(campaign_id, {"version": ()})
    return (row.status, row.exit_code, *p["version"])


async def campaign_view(store: Any, campaign_id: int) -> CampaignView:
    from eval.campaign_store import load_results

    version = await campaign_version(store, campaign_id)
    campaign, record, trials = await load_results(store, campaign_id)
    cells = await asyncio.to_thread(matrix, campaign, trials)
    return CampaignView(campaign_id, campaign, record, trials, cells, version or ())


async def campaign_analysis(view: CampaignView) -> Analysis:
    """The whole analysis (bootstrap intervals, comparisons, thresholds), in a thread. A trial
    still running has its fault applied on purpose: it is not a leaked one (yet)."""
    trials = [replace(t, faults=[]) if t.outcome == "missing" else t for t in view.trials]
    return await asyncio.to_thread(analyse, view.campaign, trials, planned=len(trials))


# -- one trial ---------------------------------------------------------------------------------------


@dataclass
class TrialView:
    trial: Any  # EvalTrial
    scenario: str
    subject: str
    variant: str
    variant_kind: str
    diagnoser: str  # the variant's diagnoser (embedded, claude) or "" for a baseline
    origin: datetime | None  # the trial's t=0 as wall time (None: never started)
    phases: list[dict[str, Any]]
    faults: list[Any]  # EvalFault
    events: list[dict[str, Any]]  # eval_events: t_mono_ns, source, kind, payload
    buckets: list[dict[str, Any]]
    oracle: list[tuple[int, bool]]  # (t_ns, every check clean at that round)
    incidents: list[Any]  # store.incident() of each ticket of the trial
    sessions: list[dict[str, Any]]  # id, ticket_id, diagnoser, diagnosis, outcome, tokens, tool_calls
    metrics: dict[str, Any] = field(default_factory=dict)

    def at(self, t_ns: int | float | None) -> datetime | None:
        """A time on the trial's clock (ns since its origin) as a wall time."""
        if t_ns is None or self.origin is None:
            return None
        return datetime.fromtimestamp(self.origin.timestamp() + t_ns / NS, UTC)

    @property
    def ended(self) -> bool:
        return self.trial.ended_at is not None


def oracle_rounds(checks: list[dict[str, Any]]) -> list[tuple[int, bool]]:
    """The oracle's checks grouped by round (same time): clean when every check of the round passed."""
    rounds: dict[int, bool] = {}
    for c in checks:
        rounds[c["t_mono_ns"]] = rounds.get(c["t_mono_ns"], True) and bool(c["ok"])
    return sorted(rounds.items())


async def trial_view(store: Any, trial_id: int) -> TrialView | None:
    trial = await store.get_trial(trial_id)
    if trial is None:
        return None
    variant = await store.get_variant(trial.variant_id)
    scenario = await store.get_scenario(trial.scenario_id)
    origin = datetime.fromtimestamp(trial.t_origin_wall, UTC) if trial.t_origin_wall is not None else None
    incidents = []
    tickets = await store.list_tickets(run_id=trial.run_id, limit=1000)
    for t in sorted(tickets, key=lambda t: t.id):
        if origin is not None and t.opened_at < origin:
            continue  # not this trial's (the harness reads only after the origin)
        incident = await store.incident(t.id)
        if incident is not None:
            incidents.append(incident)
    sessions = []
    for s in sorted(await store.list_sessions(run_id=trial.run_id, limit=1000), key=lambda s: s.id):
        calls = [{"at": step.at, "name": step.title, "input": (step.content or {}).get("input")}
                 for step in await store.session_steps(s.id) if step.kind == "tool_call"]
        sessions.append({"id": s.id, "ticket_id": s.ticket_id, "entity": s.entity, "diagnoser": s.diagnoser,
                         "attempt": s.attempt, "status": s.status, "outcome": s.outcome, "diagnosis": s.diagnosis,
                         "verification": s.verification, "input_tokens": s.input_tokens,
                         "output_tokens": s.output_tokens, "tool_calls": calls})
    return TrialView(
        trial=trial, scenario=scenario.name if scenario else "?", subject=scenario.subject if scenario else "?",
        variant=variant.name if variant else "?", variant_kind=variant.kind if variant else "?",
        diagnoser=str((variant.config_json or {}).get("diagnoser") or "") if variant else "",
        origin=origin, phases=list(trial.phases_json or []), faults=await store.eval_faults(trial.id),
        events=await store.eval_events(trial.id), buckets=await store.workload_buckets(trial.id),
        oracle=oracle_rounds(await store.oracle_checks(trial.id)), incidents=incidents, sessions=sessions,
        metrics=dict(trial.metrics_json or {}))
