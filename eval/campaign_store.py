"""A campaign in the store, through the evaluation tables' repository (`operator_tui/store/evals.py`).

- `create` writes the campaign row (verbatim YAML, spec hash, seed, git, packages, host), one
  variant row per variant (config with the prompt's hash) and one scenario row per scenario.
  Facts about this run of the campaign that have no column (the campaign file, the shard, wall
  time, merged sources) live in `host_json["campaign"]`.
- Trials are rows of `eval_trials`, each with its own run; a retried trial has one row per
  attempt and the last attempt counts. A trial cut by the budget gets a row (and run) with
  outcome `skipped`, so the store says what was planned and not run.
- `results` reads everything back as `TrialResult`s in plan order, with `missing` for planned
  trials that have no row (an interrupted campaign, or a shard whose store is not merged yet).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from eval.campaign_analysis import Analysis
from eval.campaign_plan import Plan, PlannedTrial
from eval.campaign_results import CampaignRecord, TrialResult
from eval.campaign_spec import Campaign, SpecError, parse_campaign
from eval.yaml_source import parse as parse_yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("operator-tui", "textual", "pydantic", "anthropic", "httpx", "aiohttp", "redis")


def campaign_dir(db: Path, campaign_id: int) -> Path:
    """Where a campaign's slot logs and trial folders go: beside the store."""
    return db.parent / "eval" / f"campaign-{campaign_id}"


def git_state(path: Path) -> tuple[str, bool]:
    try:
        rev = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return rev, dirty
    except (OSError, subprocess.SubprocessError):
        return "", False


def packages() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def host(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "campaign": extra,
    }


async def create(store: Any, campaign: Campaign, plan: Plan) -> int:
    spec = campaign.spec
    rev, dirty = await asyncio.to_thread(git_state, REPO)
    shard = f"{plan.shard[0]}/{plan.shard[1]}"
    cid = await store.create_campaign(
        spec.name, spec_yaml=campaign.text, spec_sha256=campaign.spec_sha256, root_seed=spec.seed, git_rev=rev,
        git_dirty=dirty, packages=packages(), parallel=plan.parallel,
        host=host({"file": str(campaign.path.absolute()), "shard": shard, "planned": len(plan.mine)}))
    for v in spec.variants:
        await store.add_variant(cid, v.name, v.kind, campaign.variant_config(v.name))
    for s in spec.scenarios:
        t = s.timing(spec.defaults)
        await store.add_scenario(
            cid, s.name, s.subject, lab=s.lab, workload=s.workload.model_dump(mode="json"),
            faults=[f.model_dump(mode="json") for f in s.faults],
            oracle={**t.oracle.model_dump(), "detect_invariants": s.expect.detect_invariants},
            budgets={"observe_budget_s": t.observe_budget_s, "pre_window_s": t.pre_window_s,
                     "inject_jitter_s": list(t.inject_jitter_s), "timeouts": t.timeouts.model_dump()})
    return int(cid)


async def _meta(store: Any, campaign_id: int) -> Any:
    row = await store.get_campaign(campaign_id)
    if row is None:
        raise SpecError("store", None, "", f"no campaign {campaign_id} in {store.path}")
    return row


async def load(store: Any, campaign_id: int, *, check_hash: bool = True) -> tuple[Campaign, CampaignRecord]:
    """The stored campaign, parsed again from its verbatim YAML (prompt files from beside the
    original file). check_hash: refuse when it no longer hashes as stored (the file's prompts or
    the spec's defaults changed): resuming it would mix two different campaigns."""
    row = await _meta(store, campaign_id)
    if not row.spec_yaml:
        raise SpecError("store", None, "", f"campaign {campaign_id} ({row.name}) was run by `eval run` and has no "
                        f"campaign file to compare, report or resume; `operator-tui eval analyze c{campaign_id}` "
                        "scores it")
    extra = (row.host_json or {}).get("campaign", {})
    path = Path(extra.get("file") or f"campaign-{campaign_id}.yaml")
    try:
        campaign = parse_campaign(parse_yaml(row.spec_yaml, str(path)), path)
    except SpecError as e:
        if check_hash:
            raise
        raise SpecError(e.file, e.line, e.field, f"{e.message} (the stored campaign {campaign_id} no longer loads)") \
            from None
    if check_hash and campaign.spec_sha256 != row.spec_sha256:
        raise SpecError(str(path), None, "", f"campaign {campaign_id} was planned with spec {row.spec_sha256[:12]}; "
                        f"it now hashes {campaign.spec_sha256[:12]} (a prompt file or the harness's defaults "
                        "changed): run it as a new campaign instead of resuming")
    return campaign, await record(store, campaign_id)


async def record(store: Any, campaign_id: int) -> CampaignRecord:
    row = await _meta(store, campaign_id)
    extra = (row.host_json or {}).get("campaign", {})
    return CampaignRecord(
        id=row.id, name=row.name, spec_sha256=row.spec_sha256, seed=row.root_seed, parallel=row.parallel,
        status=row.status, started_at=row.created_at, ended_at=row.ended_at, wall_s=extra.get("wall_s"),
        git_rev=row.git_rev or None, git_dirty=bool(row.git_dirty), packages=row.packages_json or {},
        host={k: v for k, v in (row.host_json or {}).items() if k != "campaign"},
        shards=list(extra.get("merged_from") or []), resumed_from=row.resumed_from)


async def shard_of(store: Any, campaign_id: int) -> tuple[int, int]:
    row = await _meta(store, campaign_id)
    text = ((row.host_json or {}).get("campaign") or {}).get("shard") or "1/1"
    k, _, n = text.partition("/")
    return int(k), int(n)


async def _set_extra(store: Any, campaign_id: int, **values: Any) -> None:
    row = await _meta(store, campaign_id)
    h = dict(row.host_json or {})
    h["campaign"] = {**h.get("campaign", {}), **values}
    await store.db.write("UPDATE eval_campaigns SET host_json = ? WHERE id = ?", (json.dumps(h), campaign_id))


async def reopen(store: Any, campaign_id: int) -> None:
    await store.db.write("UPDATE eval_campaigns SET status = 'running', verdict = NULL, exit_code = NULL, "
                         "ended_at = NULL WHERE id = ?", (campaign_id,))


async def finish(store: Any, campaign_id: int, analysis: Analysis, wall_s: float, *, aborted: bool = False) -> None:
    row = await _meta(store, campaign_id)
    previous = ((row.host_json or {}).get("campaign") or {}).get("wall_s") or 0.0
    await _set_extra(store, campaign_id, wall_s=round(previous + wall_s, 3))
    status = "aborted" if aborted else analysis.status
    await store.finish_campaign(campaign_id, status, analysis.verdict, analysis.exit_code)


async def _ids(store: Any, campaign_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    scenarios = {s.name: s for s in await store.scenarios(campaign_id)}
    variants = {v.name: v for v in await store.variants(campaign_id)}
    return scenarios, variants


async def mark_skipped(store: Any, campaign_id: int, trials: list[PlannedTrial]) -> None:
    """Trials the budget cut off: a row each, outcome `skipped`, so the store holds the whole plan."""
    scenarios, variants = await _ids(store, campaign_id)
    for t in trials:
        s = scenarios[t.scenario]
        row = await store.create_trial(campaign_id, s.id, variants[t.variant].id, subject=s.subject, seed=t.seed,
                                       ident=f"skip{campaign_id}x{t.index}", seed_index=t.seed_index, repeat=t.repeat,
                                       scenario_name=t.scenario)
        await store.update_trial(row.id, phase="skipped", outcome="skipped", valid="false",
                                 error_json={"type": "budget", "message": "cut by the campaign's time budget"})
        await store.end_run(row.run_id, "skipped")


async def record_harness_failure(store: Any, campaign_id: int, campaign: Campaign, t: PlannedTrial,
                                 result: dict[str, Any], slot: int) -> int:
    """A trial whose worker died or failed before it had a row of its own: recorded invalid."""
    scenarios, variants = await _ids(store, campaign_id)
    s = scenarios[t.scenario]
    row = await store.create_trial(campaign_id, s.id, variants[t.variant].id, subject=s.subject, seed=t.seed,
                                   ident=f"hx{campaign_id}x{t.index}a{result.get('attempt', 1)}", slot=slot,
                                   seed_index=t.seed_index, repeat=t.repeat, attempt=int(result.get("attempt", 1)),
                                   scenario_name=t.scenario)
    await store.update_trial(row.id, phase="harness", outcome="invalid", valid="false",
                             error_json=result.get("error") or {"type": "harness_error"})
    await store.end_run(row.run_id, "failed")
    return int(row.id)


async def mark_interrupted(store: Any, campaign_id: int, campaign: Campaign, plan: Plan,
                           attempts: dict[str, int]) -> None:
    """Trials whose attempt was running when the campaign was interrupted: invalid (their own
    wind-down has reverted their faults and torn their labs down by now)."""
    if not attempts:
        return
    scenarios, variants = await _ids(store, campaign_id)
    by_key = {t.key: t for t in plan.trials}
    for key, attempt in attempts.items():
        t = by_key[key]
        row = await store.db.fetchone(
            "SELECT id, error_json FROM eval_trials WHERE campaign_id = ? AND scenario_id = ? AND variant_id = ? "
            "AND seed_index = ? AND repeat = ? AND attempt = ? ORDER BY id DESC LIMIT 1",
            (campaign_id, scenarios[t.scenario].id, variants[t.variant].id, t.seed_index, t.repeat, attempt))
        if row is None:
            continue
        await store.update_trial(int(row["id"]), outcome="invalid", valid="false",
                                 error_json={"phase": "interrupted", "reason": "the campaign was interrupted during "
                                             "this trial", "before": json.loads(row["error_json"] or "null")})


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except ValueError:
        return None


async def results(store: Any, campaign_id: int, campaign: Campaign, plan: Plan) -> list[TrialResult]:
    """One result per planned trial of the plan's shard... or of every shard when the campaign was
    merged; planned trials without a row are `missing`."""
    spec = campaign.spec
    names_s = {s.id: s.name for s in await store.scenarios(campaign_id)}
    names_v = {v.id: v.name for v in await store.variants(campaign_id)}
    latest: dict[str, Any] = {}
    for row in await store.list_trials(campaign_id, limit=1_000_000):
        key = f"{names_s[row.scenario_id]}|{names_v[row.variant_id]}|{row.seed_index}|{row.repeat}"
        prev = latest.get(key)
        if prev is None or (row.attempt, row.id) >= (prev.attempt, prev.id):
            latest[key] = row
    merged = bool(((await _meta(store, campaign_id)).host_json or {}).get("campaign", {}).get("merged_from"))
    planned = plan.trials if merged else plan.mine
    faults_of = await store.campaign_faults(campaign_id)
    out: list[TrialResult] = []
    for p in planned:
        kind = spec.variant(p.variant).kind
        budget = spec.scenario(p.scenario).timing(spec.defaults).observe_budget_s
        row = latest.get(p.key)
        if row is None:
            out.append(TrialResult(p.scenario, p.variant, kind, p.seed_index, p.repeat, p.seed, "missing",
                                   budget_s=budget))
            continue
        faults = [{"seq": f.seq, "kind": f.kind, "target": f.target_entity, "status": f.status,
                   "affected": f.affected_json, "undo": f.undo_json, "verify": f.verify_json,
                   "revert_attempts": f.revert_attempts} for f in faults_of.get(row.id, [])]
        metrics = dict(row.metrics_json or {})
        outcome = row.outcome or ("invalid" if row.ended_at else "missing")
        out.append(TrialResult(
            p.scenario, p.variant, kind, p.seed_index, p.repeat, row.seed, outcome, trial_id=row.id,
            run_id=row.run_id, slot=row.slot, attempt=row.attempt, self_healed=bool(metrics.get("self_healed")),
            error=row.error_json, duration_s=seconds_between(row.created_at, row.ended_at),
            budget_s=float(metrics.get("budget_s") or budget), phases=list(row.phases_json or []), faults=faults,
            metrics=metrics))
    return out


async def load_results(store: Any, campaign_id: int) -> tuple[Campaign, CampaignRecord, list[TrialResult]]:
    """A stored campaign read back whole (its spec as planned, however the harness changed since):
    what the reports, the comparisons and the eval browser work from."""
    from eval.campaign_plan import plan_campaign

    campaign, rec = await load(store, campaign_id, check_hash=False)
    plan = plan_campaign(campaign, adapter_of=None, allow_over_budget=True, shard=await shard_of(store, campaign_id))
    return campaign, rec, await results(store, campaign_id, campaign, plan)
