"""Read one trial back from the store as a `TrialRecord` for scoring: the harness's own rows, and
the operator's rows of the trial's run only, created after the trial's origin."""

from __future__ import annotations

from typing import Any

from eval.clock import NS, TrialClock
from eval.scores import TrialRecord
from operator_tui.store import Store
from operator_tui.store.evals import EvalTrial


async def load_record(store: Store, trial: EvalTrial) -> TrialRecord:
    if trial.t_origin_mono_ns is None or trial.t_origin_wall is None:
        raise ValueError(f"trial {trial.id} never started: nothing to score")
    clock = TrialClock(trial.t_origin_mono_ns, trial.t_origin_wall)
    variant = await store.get_variant(trial.variant_id)
    timings = (trial.metrics_json or {}).get("timings") or {}
    faults = [{"kind": f.kind, "status": f.status, "invoke_ns": f.invoke_ns, "applied_ns": f.applied_ns,
               "affected": f.affected_json,
               "target": f.target_entity} for f in await store.eval_faults(trial.id)]
    tickets = []
    for t in await store.list_tickets(run_id=trial.run_id, limit=10_000):
        opened = clock.wall_to_ns(t.opened_at)
        if opened < 0:
            continue  # not this trial's (the harness reads only after the origin)
        tickets.append({"id": t.id, "invariant": t.invariant, "entity": t.entity, "status": str(t.status),
                        "opened_ns": opened,
                        "resolved_ns": clock.wall_to_ns(t.resolved_at) if t.resolved_at else None,
                        "resolved_by": (t.resolution or {}).get("by")})
    actions = []
    for a in await store.list_actions(run_id=trial.run_id, limit=10_000):
        created = clock.wall_to_ns(a.created_at)
        if created < 0:
            continue
        transitions = await store.action_transitions(a.id)
        actions.append({"id": a.id, "name": a.name, "target": a.target, "risk": a.risk, "state": a.state,
                        "created_ns": created, "requested_by": a.requested_by,
                        "executed": any(tr.to_state == "executing" for tr in transitions),
                        "approved_by_human": any(tr.to_state == "approved" and tr.actor.startswith("human")
                                                 for tr in transitions)})
    sessions = []
    for s in await store.list_sessions(run_id=trial.run_id, limit=10_000):
        if clock.wall_to_ns(s.started_at) < 0:
            continue
        turns = 0
        for step in await store.session_steps(s.id):
            if step.kind == "usage" and isinstance(step.content, dict):
                turns += int(step.content.get("model_calls", 0))
        ended = s.ended_at or s.started_at
        sessions.append({"input_tokens": s.input_tokens, "output_tokens": s.output_tokens, "turns": turns,
                         "wall_s": (ended - s.started_at).total_seconds()})
    return TrialRecord(
        variant_kind=variant.kind if variant else "agent",
        error=trial.error_json, faults=faults, checks=await store.oracle_checks(trial.id),
        buckets=await store.workload_buckets(trial.id), events=await store.eval_events(trial.id),
        tickets=tickets, actions=actions, sessions=sessions,
        clean_checks=int(timings.get("clean_checks", 3)), hold_ns=int(float(timings.get("hold_s", 5)) * NS),
        observe_budget_ns=int(float(timings.get("observe_budget_s", 90)) * NS))


def ticket_rows(record: TrialRecord) -> list[dict[str, Any]]:
    return sorted(record.tickets, key=lambda t: t["opened_ns"])
