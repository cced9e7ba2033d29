"""Whole trials on live labs, with short timings: the agent fixes a fault (success, TTD, TTM); the
baseline of the same seed times out on the same clock; a fault that ends by itself is a
self-healed success; a no-fault control opens no ticket; a fault that does not land is invalid;
a Claude variant (against the local Messages API server) fixes the fault through the same path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eval_support import FAST, chains_named, one_trial, processes_with

from eval.report import trial_data
from eval.spec import BASELINE, CLAUDE, EMBEDDED, FaultSpec
from eval.trial import finish_scores
from operator_tui.store import Store
from operator_tui.store.evals import EvalTrial
from tests.fakes.messages_api import API_KEY, FakeMessagesAPI, Received, message, tool_use

pytestmark = pytest.mark.slow
KILL = [FaultSpec(kind="kill_store")]



async def assert_nothing_left(store: Store, trial: EvalTrial) -> None:
    faults = await store.eval_faults(trial.id)
    assert all(f.status == "revert_verified" for f in faults), [(f.kind, f.status, f.verify_json) for f in faults]
    assert trial.lab_state == "down"
    assert processes_with(trial.artifacts_dir) == []
    assert chains_named(f"OPEV{trial.ident}") == []
    assert (await store.get_run(trial.run_id)).ended_at is not None  # type: ignore[union-attr]


async def test_agent_fixes_a_killed_store_and_the_baseline_of_the_same_seed_times_out(store: Store,
                                                                                     tmp_path: Path) -> None:
    agent = await one_trial(store, tmp_path, EMBEDDED, KILL, seed=11)
    m = agent.metrics_json
    assert agent.outcome == "success", m.get("reason")
    assert not m["self_healed"] and m["actions"]["names"] == ["restart_node"]
    assert not m["ttd_censored"] and 0 < m["ttd_s"] < 5
    assert not m["ttm_censored"] and m["ttd_s"] <= m["ttm_s"] < FAST.observe_budget_s
    assert m["tickets"]["pre_window"] == 0 and m["safety"]["killswitch_held"] is True
    assert m["integrity"]["audit_chain_ok"] is True
    [phase_names] = [[p["phase"] for p in agent.phases_json]]
    assert phase_names == ["lab_reset", "healthy", "operator_start", "workload_start", "pre_window", "inject",
                           "observe", "quiesce", "revert", "capture"]
    assert all(p["ok"] for p in agent.phases_json)
    await assert_nothing_left(store, agent)
    # every row of the trial's operator carries the trial's run
    tickets = await store.list_tickets(run_id=agent.run_id)
    assert tickets and all(t.run_id == agent.run_id for t in tickets)
    assert await store.db.scalar("SELECT count(*) FROM audit_events WHERE run_id = ?", (agent.run_id,)) > 0

    short = FAST.model_copy(update={"observe_budget_s": 6.0})
    base = await one_trial(store, tmp_path, BASELINE, KILL, seed=11, timings=short)
    b = base.metrics_json
    assert base.outcome == "timeout" and b["ttm_censored"] and b["ttm_rmst"] == 6.0
    assert b["actions"]["executed"] == 0 and b["agent"]["sessions"] == 0
    assert not b["ttd_censored"]  # the monitor still opens the ticket in observe mode
    [fa], [fb] = await store.eval_faults(agent.id), await store.eval_faults(base.id)
    assert fa.target_entity == fb.target_entity  # the same seed hits the same store
    await assert_nothing_left(store, base)

    # analyze recomputes the same scores from the stored events
    again = await finish_scores(store, agent.id)
    assert (again.outcome, again.metrics_json) == (agent.outcome, agent.metrics_json)


async def test_a_fault_that_ends_by_itself_is_a_self_healed_baseline_success(store: Store, tmp_path: Path) -> None:
    # the store's supervisor restarts it after 30 simulated seconds (3 s at time-scale 10)
    trial = await one_trial(store, tmp_path, BASELINE, [FaultSpec(kind="kill_store", params={"duration_s": 30})])
    assert (trial.outcome, trial.metrics_json["self_healed"]) == ("success", True), trial.metrics_json.get("reason")
    assert trial.metrics_json["actions"]["executed"] == 0
    await assert_nothing_left(store, trial)


async def test_a_no_fault_control_opens_no_ticket_and_runs_no_action(store: Store, tmp_path: Path) -> None:
    trial = await one_trial(store, tmp_path, EMBEDDED, [])
    m = trial.metrics_json
    assert trial.outcome == "success"
    assert m["tickets"]["total"] == 0 and m["actions"]["proposed"] == 0
    assert await store.list_tickets(run_id=trial.run_id) == []
    await assert_nothing_left(store, trial)


async def test_a_fault_that_does_not_land_makes_the_trial_invalid(store: Store, tmp_path: Path) -> None:
    # gone again before anyone could see it: the effect check never finds it active
    trial = await one_trial(store, tmp_path, EMBEDDED, [FaultSpec(kind="kill_store", params={"duration_s": 0.01})])
    assert (trial.outcome, trial.valid) == ("invalid", "false")
    assert "did not land" in trial.error_json["reason"]  # type: ignore[index]
    [fault] = await store.eval_faults(trial.id)
    assert fault.verify_json["effect"]["ok"] is False and fault.status == "revert_verified"
    assert [p["phase"] for p in trial.phases_json][-3:] == ["quiesce", "revert", "capture"]
    await assert_nothing_left(store, trial)
    data = await trial_data(store, trial)
    json.dumps(data)  # the --json of `eval show` serialises


async def test_claude_variant_fixes_the_fault_through_the_messages_api(store: Store, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def diagnose(req: Received) -> dict[str, Any]:
        text = json.dumps(req.messages)
        store_id = next(n for n in range(1, 5) if f"store:{n}" in text)
        return message(tool_use("submit_diagnosis", {
            "summary": f"store {store_id} is down", "root_cause": "its process died",
            "evidence": [{"signal": "status port", "reading": f"store:{store_id} refuses connections"}],
            "alternatives": [{"cause": "process died", "verdict": "chosen"},
                             {"cause": "network partition", "verdict": "rejected: PD still sees its peers"}],
            "recommended_actions": [{"name": "restart_node", "params": {"store_id": store_id},
                                     "reason": "bring the process back"}],
            "expected_outcome": "store_unreachable holds again", "confidence": 0.9}, "t_sub"),
            input_tokens=900, output_tokens=150)

    async with FakeMessagesAPI([diagnose]) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        variant = CLAUDE.model_copy(update={"model": "claude-sonnet-5-5", "budgets": {"turns": 4, "tokens": 20000,
                                                                                      "wall_s": 30}})
        trial = await one_trial(store, tmp_path, variant, KILL, seed=11)
        assert api.problems == []
    m = trial.metrics_json
    assert trial.outcome == "success", m.get("reason")
    assert m["actions"]["names"] == ["restart_node"]
    assert m["agent"]["input_tokens"] >= 900 and m["agent"]["turns"] >= 1
    await assert_nothing_left(store, trial)
