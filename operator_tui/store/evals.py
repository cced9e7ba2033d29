"""The evaluation harness's tables (schema migration 5), mixed into `Store` like every repository.

    cid = await store.create_campaign("adhoc tikv kill_store", root_seed=7)
    vid = await store.add_variant(cid, "embedded", "agent", {"diagnoser": "embedded"})
    sid = await store.add_scenario(cid, "tikv-kill_store", "tikv", lab={...}, faults=[...])
    trial = await store.create_trial(cid, sid, vid, seed=..., slot=0, ident="a1b2c3d4")  # + its run
    fid = await store.add_eval_fault(trial.id, 1, "kill_store", "store:2", spec, affected, undo)
    await store.update_eval_fault(fid, status="applied", applied_ns=...)
    await store.add_eval_event(trial.id, t_ns, "harness", "phase", {...})
    await store.add_oracle_checks(trial.id, t_ns, [check.to_dict(), ...])
    await store.add_workload_buckets(trial.id, [(t_ns, bucket_dict, slo_ok), ...])

Every trial is its own run (runs.kind = 'eval_trial', 1:1): the operator of a trial writes its
tickets, actions and audit events under that run, and the harness reads only that run. Times of a
trial are monotonic nanoseconds since the trial's origin (`t_origin_mono_ns`), plus the origin's
wall time (`t_origin_wall`, Unix seconds) to place wall-clock rows on the same clock.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from operator_tui.store.db import Database, dumps, loads
from operator_tui.timeutil import now_text

# status of a fault after which nothing of it is left on the host
FAULT_DONE = ("revert_verified",)
TRIAL_RUN = "eval_trial"  # the kind of a trial's run
JSON_FIELDS = {
    "trials": {"error_json", "phases_json", "metrics_json", "final_observation_json", "lab_manifest_json"},
    "faults": {"spec_json", "affected_json", "undo_json", "verify_json"},
    "campaigns": {"packages_json", "host_json"},
}


def sha256_of(value: Any) -> str:
    """The hash of a value's canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class EvalCampaign(BaseModel):
    id: int
    name: str
    spec_yaml: str = ""
    spec_sha256: str = ""
    root_seed: int = 0
    git_rev: str = ""
    git_dirty: bool = False
    packages_json: dict[str, Any] = Field(default_factory=dict)
    host_json: dict[str, Any] = Field(default_factory=dict)
    parallel: int = 1
    status: str
    verdict: str | None = None
    exit_code: int | None = None
    resumed_from: int | None = None
    created_at: str
    ended_at: str | None = None


class EvalVariant(BaseModel):
    id: int
    campaign_id: int
    name: str
    kind: str
    config_json: dict[str, Any] = Field(default_factory=dict)
    config_sha256: str = ""


class EvalScenario(BaseModel):
    id: int
    campaign_id: int
    name: str
    subject: str
    lab_json: dict[str, Any] = Field(default_factory=dict)
    workload_json: dict[str, Any] = Field(default_factory=dict)
    faults_json: list[dict[str, Any]] = Field(default_factory=list)
    oracle_json: dict[str, Any] = Field(default_factory=dict)
    ground_truth_json: dict[str, Any] = Field(default_factory=dict)
    budgets_json: dict[str, Any] = Field(default_factory=dict)
    spec_sha256: str = ""


class EvalTrial(BaseModel):
    id: int
    campaign_id: int
    scenario_id: int
    variant_id: int
    seed_index: int = 0
    repeat: int = 0
    pair_key: str
    seed: int
    attempt: int = 1
    slot: int = 0
    run_id: int
    ident: str
    phase: str
    outcome: str | None = None
    valid: str = "unknown"
    error_json: dict[str, Any] | None = None
    t_origin_mono_ns: int | None = None
    t_origin_wall: float | None = None
    phases_json: list[dict[str, Any]] = Field(default_factory=list)
    metrics_json: dict[str, Any] = Field(default_factory=dict)
    final_observation_json: dict[str, Any] | None = None
    lab_manifest_json: dict[str, Any] | None = None
    lab_state: str = "none"  # none | up | down | leaked
    artifacts_dir: str = ""
    harness_pid: int | None = None
    harness_start_time: int | None = None
    created_at: str
    ended_at: str | None = None


class EvalFault(BaseModel):
    id: int
    trial_id: int
    seq: int
    kind: str
    target_entity: str | None = None
    spec_json: dict[str, Any] = Field(default_factory=dict)
    affected_json: list[str] = Field(default_factory=list)
    status: str
    invoke_ns: int | None = None
    applied_ns: int | None = None
    effect_verified_ns: int | None = None
    revert_invoke_ns: int | None = None
    reverted_ns: int | None = None
    revert_verified_ns: int | None = None
    undo_json: dict[str, Any] = Field(default_factory=dict)
    verify_json: dict[str, Any] = Field(default_factory=dict)
    revert_attempts: int = 0


def _decode(row: Any, json_fields: set[str], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    data = dict(row)
    for key in json_fields:
        if key in data:
            data[key] = loads(data[key], (defaults or {}).get(key))
    return data


def _encode(fields: dict[str, Any], json_fields: set[str]) -> dict[str, Any]:
    return {k: (None if v is None else dumps(v)) if k in json_fields else v for k, v in fields.items()}


class EvalsRepo:
    db: Database

    # -- campaigns, variants, scenarios ------------------------------------------------------

    async def create_campaign(self, name: str, *, spec_yaml: str = "", spec_sha256: str = "", root_seed: int = 0,
                              git_rev: str = "", git_dirty: bool = False, packages: dict[str, Any] | None = None,
                              host: dict[str, Any] | None = None, parallel: int = 1,
                              resumed_from: int | None = None) -> int:
        return await self.db.write(
            "INSERT INTO eval_campaigns(name, spec_yaml, spec_sha256, root_seed, git_rev, git_dirty, packages_json, "
            "host_json, parallel, status, resumed_from, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (name, spec_yaml, spec_sha256, root_seed, git_rev, int(git_dirty), dumps(packages or {}),
             dumps(host or {}), parallel, "running", resumed_from, now_text()))

    async def finish_campaign(self, campaign_id: int, status: str, verdict: str | None = None,
                              exit_code: int | None = None) -> None:
        await self.db.write("UPDATE eval_campaigns SET status = ?, verdict = ?, exit_code = ?, ended_at = ? "
                            "WHERE id = ?", (status, verdict, exit_code, now_text(), campaign_id))

    async def get_campaign(self, campaign_id: int) -> EvalCampaign | None:
        row = await self.db.fetchone("SELECT * FROM eval_campaigns WHERE id = ?", (campaign_id,))
        return None if row is None else EvalCampaign.model_validate(_decode(row, JSON_FIELDS["campaigns"]))

    async def list_campaigns(self, limit: int = 50) -> list[EvalCampaign]:
        rows = await self.db.fetchall("SELECT * FROM eval_campaigns ORDER BY id DESC LIMIT ?", (limit,))
        return [EvalCampaign.model_validate(_decode(r, JSON_FIELDS["campaigns"])) for r in rows]

    async def campaign_progress(self, campaign_id: int | None = None) -> dict[int, dict[str, Any]]:
        """Per campaign: trials finished (planned trials with an outcome, retries counted once) and
        a version that changes whenever any of its trial rows does (what a live view polls)."""
        where, args = ("WHERE campaign_id = ?", (campaign_id,)) if campaign_id is not None else ("", ())
        rows = await self.db.fetchall(
            "SELECT campaign_id, COUNT(DISTINCT CASE WHEN outcome IS NOT NULL THEN scenario_id || '|' || variant_id "
            "|| '|' || seed_index || '|' || repeat END) AS done, COUNT(*) AS n, MAX(id) AS last, "
            "SUM(outcome IS NOT NULL) AS outcomes, MAX(COALESCE(ended_at, '')) AS ended, "
            "GROUP_CONCAT(CASE WHEN ended_at IS NULL THEN phase END) AS running "
            f"FROM eval_trials {where} GROUP BY campaign_id", args)
        return {int(r["campaign_id"]): {"done": int(r["done"]), "running": [p for p in (r["running"] or "").split(",")
                                                                                 if p],
                                        "version": (int(r["n"]), int(r["last"]), int(r["outcomes"]), r["ended"],
                                                    r["running"] or "")} for r in rows}

    async def add_variant(self, campaign_id: int, name: str, kind: str, config: dict[str, Any]) -> int:
        return await self.db.write(
            "INSERT INTO eval_variants(campaign_id, name, kind, config_json, config_sha256) VALUES (?,?,?,?,?)",
            (campaign_id, name, kind, dumps(config), sha256_of(config)))

    async def variants(self, campaign_id: int) -> list[EvalVariant]:
        rows = await self.db.fetchall("SELECT * FROM eval_variants WHERE campaign_id = ? ORDER BY id", (campaign_id,))
        return [EvalVariant.model_validate(_decode(r, {"config_json"})) for r in rows]

    async def get_variant(self, variant_id: int) -> EvalVariant | None:
        row = await self.db.fetchone("SELECT * FROM eval_variants WHERE id = ?", (variant_id,))
        return None if row is None else EvalVariant.model_validate(_decode(row, {"config_json"}))

    async def add_scenario(self, campaign_id: int, name: str, subject: str, *, lab: dict[str, Any] | None = None,
                           workload: dict[str, Any] | None = None, faults: list[dict[str, Any]] | None = None,
                           oracle: dict[str, Any] | None = None, ground_truth: dict[str, Any] | None = None,
                           budgets: dict[str, Any] | None = None) -> int:
        spec = {"name": name, "subject": subject, "lab": lab or {}, "workload": workload or {},
                "faults": faults or [], "oracle": oracle or {}, "budgets": budgets or {}}
        return await self.db.write(
            "INSERT INTO eval_scenarios(campaign_id, name, subject, lab_json, workload_json, faults_json, oracle_json, "
            "ground_truth_json, budgets_json, spec_sha256) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (campaign_id, name, subject, dumps(lab or {}), dumps(workload or {}), dumps(faults or []),
             dumps(oracle or {}), dumps(ground_truth or {}), dumps(budgets or {}), sha256_of(spec)))

    async def scenarios(self, campaign_id: int) -> list[EvalScenario]:
        rows = await self.db.fetchall("SELECT * FROM eval_scenarios WHERE campaign_id = ? ORDER BY id", (campaign_id,))
        return [EvalScenario.model_validate(_decode(r, {"lab_json", "workload_json", "faults_json", "oracle_json",
                                                        "ground_truth_json", "budgets_json"})) for r in rows]

    async def get_scenario(self, scenario_id: int) -> EvalScenario | None:
        row = await self.db.fetchone("SELECT campaign_id FROM eval_scenarios WHERE id = ?", (scenario_id,))
        if row is None:
            return None
        return next(s for s in await self.scenarios(row["campaign_id"]) if s.id == scenario_id)

    # -- trials ----------------------------------------------------------------------------------

    async def create_trial(self, campaign_id: int, scenario_id: int, variant_id: int, *, subject: str, seed: int,
                           ident: str, slot: int = 0, seed_index: int = 0, repeat: int = 0, attempt: int = 1,
                           artifacts_dir: str = "", scenario_name: str = "") -> EvalTrial:
        """The trial and its own run (kind 'eval_trial'). The run is this process's (its lock held
        until the trial ends it), so the trial's operator, attached to it, counts as live while
        the harness that conducts the trial lives, and as dead once that harness died."""
        created = now_text()
        run_id = await self.start_run(TRIAL_RUN, subject,  # type: ignore[attr-defined] - Store is also a RunsRepo
                                      {"campaign_id": campaign_id, "trial_ident": ident})
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO eval_trials(campaign_id, scenario_id, variant_id, seed_index, repeat, pair_key, seed, "
                "attempt, slot, run_id, ident, artifacts_dir, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (campaign_id, scenario_id, variant_id, seed_index, repeat,
                 f"{scenario_name or scenario_id}|{seed_index}|{repeat}", seed, attempt, slot, run_id, ident,
                 artifacts_dir, created))
            trial_id = cur.lastrowid
        trial = await self.get_trial(int(trial_id or 0))
        assert trial is not None
        return trial

    async def update_trial(self, trial_id: int, **fields: Any) -> None:
        """Set columns of a trial; *_json columns take Python values."""
        if not fields:
            return
        encoded = _encode(fields, JSON_FIELDS["trials"])
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        await self.db.write(f"UPDATE eval_trials SET {assignments} WHERE id = ?", (*encoded.values(), trial_id))

    async def get_trial(self, trial_id: int) -> EvalTrial | None:
        row = await self.db.fetchone("SELECT * FROM eval_trials WHERE id = ?", (trial_id,))
        return None if row is None else _trial(row)

    async def trial_for_run(self, run_id: int) -> EvalTrial | None:
        row = await self.db.fetchone("SELECT * FROM eval_trials WHERE run_id = ?", (run_id,))
        return None if row is None else _trial(row)

    async def list_trials(self, campaign_id: int | None = None, limit: int = 500) -> list[EvalTrial]:
        if campaign_id is None:
            rows = await self.db.fetchall("SELECT * FROM eval_trials ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = await self.db.fetchall("SELECT * FROM eval_trials WHERE campaign_id = ? ORDER BY id LIMIT ?",
                                          (campaign_id, limit))
        return [_trial(r) for r in rows]

    async def trials_to_sweep(self) -> list[EvalTrial]:
        """Trials that may have left something on the host: a lab not torn down, or a fault not
        verified reverted."""
        rows = await self.db.fetchall(
            "SELECT * FROM eval_trials WHERE lab_state IN ('up', 'leaked') OR id IN (SELECT trial_id FROM eval_faults "
            f"WHERE status NOT IN ({','.join('?' * len(FAULT_DONE))})) ORDER BY id", FAULT_DONE)
        return [_trial(r) for r in rows]

    # -- faults ----------------------------------------------------------------------------------

    async def add_eval_fault(self, trial_id: int, seq: int, kind: str, target_entity: str | None,
                             spec: dict[str, Any], affected: list[str], undo: dict[str, Any]) -> int:
        """The write-ahead record: everything that undoes the fault, before it is applied."""
        return await self.db.write(
            "INSERT INTO eval_faults(trial_id, seq, kind, target_entity, spec_json, affected_json, status, undo_json) "
            "VALUES (?,?,?,?,?,?,?,?)", (trial_id, seq, kind, target_entity, dumps(spec), dumps(affected), "planned",
                                         dumps(undo)))

    async def update_eval_fault(self, fault_id: int, **fields: Any) -> None:
        if not fields:
            return
        encoded = _encode(fields, JSON_FIELDS["faults"])
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        await self.db.write(f"UPDATE eval_faults SET {assignments} WHERE id = ?", (*encoded.values(), fault_id))

    async def eval_faults(self, trial_id: int) -> list[EvalFault]:
        rows = await self.db.fetchall("SELECT * FROM eval_faults WHERE trial_id = ? ORDER BY seq", (trial_id,))
        return [EvalFault.model_validate(_decode(r, JSON_FIELDS["faults"])) for r in rows]

    async def campaign_faults(self, campaign_id: int) -> dict[int, list[EvalFault]]:
        """Every fault of a campaign's trials in one read, by trial id (each trial's in seq order)."""
        rows = await self.db.fetchall(
            "SELECT f.* FROM eval_faults f JOIN eval_trials t ON t.id = f.trial_id WHERE t.campaign_id = ? "
            "ORDER BY f.trial_id, f.seq", (campaign_id,))
        out: dict[int, list[EvalFault]] = {}
        for r in rows:
            f = EvalFault.model_validate(_decode(r, JSON_FIELDS["faults"]))
            out.setdefault(f.trial_id, []).append(f)
        return out

    # -- history: events, oracle checks, workload buckets ------------------------------------------

    async def add_eval_event(self, trial_id: int, t_mono_ns: int, source: str, kind: str,
                             payload: dict[str, Any] | None = None) -> int:
        return await self.db.write(
            "INSERT INTO eval_events(trial_id, t_mono_ns, t_wall, source, kind, payload) VALUES (?,?,?,?,?,?)",
            (trial_id, t_mono_ns, now_text(), source, kind, dumps(payload or {})))

    async def eval_events(self, trial_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall("SELECT * FROM eval_events WHERE trial_id = ? ORDER BY t_mono_ns, id",
                                      (trial_id,))
        return [_decode(r, {"payload"}, {"payload": {}}) for r in rows]

    async def add_oracle_checks(self, trial_id: int, t_mono_ns: int, checks: list[dict[str, Any]]) -> None:
        async with self.db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO eval_oracle_checks(trial_id, t_mono_ns, check_name, entity, ok, detail, kind) "
                "VALUES (?,?,?,?,?,?,?)",
                [(trial_id, t_mono_ns, c["check"], c["entity"], int(bool(c["ok"])), c.get("detail", ""),
                  c.get("kind", "health")) for c in checks])

    async def oracle_checks(self, trial_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall("SELECT t_mono_ns, check_name AS 'check', entity, ok, detail, kind FROM "
                                      "eval_oracle_checks WHERE trial_id = ? ORDER BY t_mono_ns, id", (trial_id,))
        return [{**dict(r), "ok": bool(r["ok"])} for r in rows]

    async def add_workload_buckets(self, trial_id: int, buckets: list[tuple[int, dict[str, Any], bool]]) -> None:
        """(t_bucket_ns, bucket as WorkloadBucket.to_dict(), meets the SLO) each; repeats are ignored."""
        if not buckets:
            return
        async with self.db.transaction() as conn:
            await conn.executemany(
                "INSERT OR IGNORE INTO eval_workload_buckets(trial_id, t_bucket_ns, t_wall, planned, ok, fail, "
                "indeterminate, lat_p50_ms, lat_p99_ms, over_slo_latency, slo_ok) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(trial_id, t, b["t_wall"], b["planned"], b["ok"], b["fail"], b.get("indeterminate", 0),
                  b.get("p50_ms"), b.get("p99_ms"), b.get("over_slo", 0), int(ok)) for t, b, ok in buckets])

    async def workload_buckets(self, trial_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall("SELECT * FROM eval_workload_buckets WHERE trial_id = ? ORDER BY t_wall",
                                      (trial_id,))
        return [{**dict(r), "slo_ok": bool(r["slo_ok"])} for r in rows]


def _trial(row: Any) -> EvalTrial:
    return EvalTrial.model_validate(_decode(row, JSON_FIELDS["trials"], {"phases_json": [], "metrics_json": {}}))
