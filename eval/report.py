"""Trials and campaigns as plain data (the `--json` of `eval show|list|run`, schema
operator-eval-report/1) and as lines for people."""

from __future__ import annotations

from typing import Any

from eval.clock import seconds
from operator_tui.store import Store
from operator_tui.store.evals import EvalCampaign, EvalFault, EvalTrial

SCHEMA = "operator-eval-report/1"


def fault_data(f: EvalFault) -> dict[str, Any]:
    return {"seq": f.seq, "kind": f.kind, "target": f.target_entity, "status": f.status, "affected": f.affected_json,
            "applied_s": seconds(f.applied_ns), "effect_verified_s": seconds(f.effect_verified_ns),
            "reverted_s": seconds(f.reverted_ns), "revert_verified_s": seconds(f.revert_verified_ns),
            "revert_attempts": f.revert_attempts, "undo": f.undo_json, "verify": f.verify_json}


async def trial_data(store: Store, trial: EvalTrial, *, events: bool = True) -> dict[str, Any]:
    variant = await store.get_variant(trial.variant_id)
    scenario = await store.get_scenario(trial.scenario_id)
    faults = await store.eval_faults(trial.id)
    out: dict[str, Any] = {
        "id": trial.id, "campaign_id": trial.campaign_id, "key": trial.pair_key, "run_id": trial.run_id,
        "scenario": scenario.name if scenario else None, "subject": scenario.subject if scenario else None,
        "variant": variant.name if variant else None, "seed": trial.seed, "seed_index": trial.seed_index,
        "slot": trial.slot, "attempt": trial.attempt, "phase": trial.phase, "outcome": trial.outcome,
        "valid": trial.valid, "self_healed": (trial.metrics_json or {}).get("self_healed", False),
        "reason": (trial.metrics_json or {}).get("reason"), "error": trial.error_json,
        "phases": trial.phases_json, "faults": [fault_data(f) for f in faults],
        "metrics": {k: v for k, v in (trial.metrics_json or {}).items() if k not in ("reason", "self_healed")},
        "lab_state": trial.lab_state, "artifacts_dir": trial.artifacts_dir,
        "created_at": trial.created_at, "ended_at": trial.ended_at,
    }
    if events:
        out["events"] = await incident_events(store, trial)
    return out


async def incident_events(store: Store, trial: EvalTrial) -> list[dict[str, Any]]:
    """The incident on the trial's clock: the harness's events, and the run's tickets, agent
    sessions and actions (after the trial's origin only)."""
    from eval.record import load_record

    items: list[dict[str, Any]] = []
    for e in await store.eval_events(trial.id):
        if e["kind"] in ("phase_start",):
            continue
        items.append({"t_s": seconds(e["t_mono_ns"]), "source": e["source"], "kind": e["kind"],
                      "detail": _short(e["payload"])})
    if trial.t_origin_mono_ns is not None and trial.t_origin_wall is not None:
        record = await load_record(store, trial)
        for t in record.tickets:
            items.append({"t_s": seconds(t["opened_ns"]), "source": "operator", "kind": "ticket.opened",
                          "detail": f"#{t['id']} {t['invariant']} {t['entity']}"})
            if t["resolved_ns"] is not None:
                items.append({"t_s": seconds(t["resolved_ns"]), "source": "operator", "kind": "ticket.resolved",
                              "detail": f"#{t['id']} by {t['resolved_by']}"})
        for a in record.actions:
            items.append({"t_s": seconds(a["created_ns"]), "source": "operator", "kind": "action",
                          "detail": f"#{a['id']} {a['name']} {a['target']} [{a['risk']}] -> {a['state']}"})
    return sorted(items, key=lambda i: (i["t_s"] is None, i["t_s"] or 0))


def _short(payload: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in payload.items() if k not in ("tail",))[:160]


async def campaign_data(store: Store, campaign: EvalCampaign, *, events: bool = False) -> dict[str, Any]:
    trials = await store.list_trials(campaign.id)
    data = [await trial_data(store, t, events=events) for t in trials]
    return {
        "schema": SCHEMA,
        "campaign": {"id": campaign.id, "name": campaign.name, "root_seed": campaign.root_seed,
                     "spec_sha256": campaign.spec_sha256, "git": {"rev": campaign.git_rev, "dirty": campaign.git_dirty},
                     "host": campaign.host_json, "parallel": campaign.parallel, "created_at": campaign.created_at,
                     "ended_at": campaign.ended_at},
        "status": campaign.status, "verdict": campaign.verdict, "exit_code": campaign.exit_code,
        "variants": [{"name": v.name, "kind": v.kind, "config": v.config_json, "config_sha256": v.config_sha256}
                     for v in await store.variants(campaign.id)],
        "scenarios": [{"name": s.name, "subject": s.subject, "spec_sha256": s.spec_sha256}
                      for s in await store.scenarios(campaign.id)],
        "trials": data,
        "integrity": integrity(data),
    }


def integrity(trials: list[dict[str, Any]]) -> dict[str, Any]:
    faults = [f for t in trials for f in t["faults"]]
    return {"leaked_faults": sum(1 for f in faults if f["status"] != "revert_verified"),
            "revert_failed": sum(1 for f in faults if f["status"] == "revert_failed"),
            "labs_left": sum(1 for t in trials if t["lab_state"] in ("up", "leaked")),
            "audit_chain_ok": all((t["metrics"].get("integrity") or {}).get("audit_chain_ok") is not False
                                  for t in trials),
            "invalid_trials": sum(1 for t in trials if t["outcome"] == "invalid")}


def outcome_text(t: dict[str, Any]) -> str:
    if t["outcome"] == "success" and t.get("self_healed"):
        return "success (self_healed)"
    return t["outcome"] or t["phase"]


def fmt_s(value: Any, censored: bool = False) -> str:
    if value is None:
        return "-"
    return f">{value:.1f}s" if censored else f"{value:.1f}s"


def trial_row(t: dict[str, Any]) -> list[Any]:
    m = t["metrics"]
    faults = t["faults"]
    verified = sum(1 for f in faults if f["status"] == "revert_verified")
    return [t["id"], t["variant"], t["seed"], ", ".join(f"{f['kind']} {f['target']}" for f in faults) or "no fault",
            outcome_text(t), fmt_s(m.get("ttd_s"), bool(m.get("ttd_censored"))),
            fmt_s(m.get("ttm_s"), bool(m.get("ttm_censored"))),
            ", ".join((m.get("actions") or {}).get("names") or []) or "-",
            f"{verified}/{len(faults)} reverted+verified" if faults else "-"]


TRIAL_HEADERS = ["trial", "variant", "seed", "fault", "outcome", "ttd", "ttm", "actions", "faults"]


def trial_lines(t: dict[str, Any]) -> list[str]:
    """`eval show TRIAL` for people."""
    m = t["metrics"]
    lines = [f"trial {t['id']}  {t['scenario']}  variant {t['variant']}  seed {t['seed']}  slot {t['slot']}  "
             f"run {t['run_id']}",
             f"outcome: {outcome_text(t)}  ({t.get('reason') or ''})"]
    if t["error"]:
        lines.append(f"error: {t['error'].get('phase')}: {t['error'].get('reason')}")
    lines.append("phases:")
    for p in t["phases"]:
        mark = "ok" if p["ok"] else ("FAILED" if p["ok"] is False else "…")
        took = "" if p["end_s"] is None else f"{p['end_s'] - p['start_s']:.2f}s"
        lines.append(f"  {p['phase']:<15} {mark:<6} t={p['start_s']:.2f}s  took {took:<8} {p.get('reason') or ''}")
    lines.append("faults:")
    if not t["faults"]:
        lines.append("  none (no-fault control)")
    for f in t["faults"]:
        revert = (f["verify"].get("revert") or {})
        lines.append(f"  #{f['seq']} {f['kind']} on {f['target']}: {f['status']}  applied t={f['applied_s']}s  "
                     f"effect verified t={f['effect_verified_s']}s  reverted t={f['reverted_s']}s  "
                     f"verified t={f['revert_verified_s']}s")
        lines.append(f"      undo: {f['undo']}")
        if revert:
            lines.append(f"      revert: {revert.get('detail')}; check: {(revert.get('verdict') or {}).get('detail')}")
    lines.append("scores:")
    av = m.get("availability") or {}
    acts = m.get("actions") or {}
    agent = m.get("agent") or {}
    safety = m.get("safety") or {}
    tickets = m.get("tickets") or {}
    lines += [
        f"  TTD {fmt_s(m.get('ttd_s'), bool(m.get('ttd_censored')))}   TTM {fmt_s(m.get('ttm_s'), bool(m.get('ttm_censored')))}"
        f"   RMST {fmt_s(m.get('ttm_rmst'))}",
        f"  availability: {av.get('ok')}/{av.get('planned')} ok over {av.get('window_s')}s, "
        f"{av.get('seconds_outside_slo')} s outside the SLO, worst p99 {av.get('worst_p99_ms')} ms",
        f"  tickets: {tickets.get('total')} ({tickets.get('pre_window')} in the pre-window, "
        f"{tickets.get('on_affected')} on affected entities)",
        f"  actions: {acts.get('executed')} executed {acts.get('by_risk')}, destructive {acts.get('destructive_executed')}"
        f", unapproved destructive {acts.get('unapproved_destructive')}, collateral {acts.get('collateral')}, "
        f"thrashing {acts.get('thrashing')}",
        f"  agent: {agent.get('sessions')} session(s), {agent.get('turns')} model turns, "
        f"{agent.get('input_tokens')}+{agent.get('output_tokens')} tokens, {agent.get('wall_s')} s",
        f"  kill switch held in {safety.get('killswitch_latency_ms')} ms; false claims {safety.get('false_claims')}",
    ]
    if t.get("events"):
        lines.append("incident:")
        for e in t["events"]:
            lines.append(f"  t={e['t_s']:>7}s  {e['source']:<8} {e['kind']:<16} {e['detail']}")
    return lines


FAILING = ("failure", "timeout", "harmful")  # of agent variants (a baseline is expected not to mitigate)


def failing(trial: dict[str, Any]) -> bool:
    """A trial a CI summary lists: an agent that did not mitigate or did harm, or an invalid trial."""
    return trial["outcome"] == "invalid" or (trial.get("variant_kind") == "agent" and trial["outcome"] in FAILING)


def _spans(rounds: list[tuple[int, bool]]) -> list[tuple[float, float | None]]:
    """The oracle's dirty spans (seconds on the trial's clock; None: dirty until the end)."""
    out: list[tuple[float, float | None]] = []
    start = None
    for t_ns, clean in rounds:
        if not clean and start is None:
            start = t_ns
        elif clean and start is not None:
            out.append((seconds(start), seconds(t_ns)))
            start = None
    if start is not None:
        out.append((seconds(start), None))
    return out


async def timeline_text(store: Store, trial: EvalTrial) -> list[str]:
    """A trial's timeline as text (its clock, seconds since its origin): each fault's window, the
    oracle's dirty spans, then every event of the harness and the operator."""
    from eval.browse import oracle_rounds

    lines = []
    for f in await store.eval_faults(trial.id):
        end = f"+{seconds(f.reverted_ns):.1f}s" if f.reverted_ns is not None else "never reverted"
        start = f"+{seconds(f.applied_ns):.1f}s" if f.applied_ns is not None else "never applied"
        lines.append(f"fault   {f.kind} on {f.target_entity}: {start} -> {end} ({f.status})")
    for a, b in _spans(oracle_rounds(await store.oracle_checks(trial.id))):
        lines.append(f"oracle  dirty +{a:.1f}s -> " + (f"+{b:.1f}s" if b is not None else "the end"))
    m = trial.metrics_json or {}
    if m.get("t0_s") is not None and m.get("ttm_s") is not None and not m.get("ttm_censored"):
        lines.append(f"oracle  mitigated at +{m['t0_s'] + m['ttm_s']:.1f}s (TTM {m['ttm_s']:.1f}s)")
    for e in await incident_events(store, trial):
        t = "      ?" if e["t_s"] is None else f"{e['t_s']:>+7.1f}s"
        lines.append(f"{t}  {e['source']:<8} {e['kind']:<16} {e['detail']}".rstrip())
    return lines


async def failing_timelines(store: Store, report: dict[str, Any]) -> dict[int, list[str]]:
    """The timeline text of every failing trial of a campaign report, by trial id."""
    out: dict[int, list[str]] = {}
    for t in report["trials"]:
        if t.get("trial_id") is None or not failing(t):
            continue
        trial = await store.get_trial(int(t["trial_id"]))
        if trial is not None:
            out[trial.id] = await timeline_text(store, trial)
    return out
