"""Campaigns on live labs: an interrupted campaign resumed (only what is missing or invalid runs
again, and only while the spec hashes the same), and two shards merged into the same report as
one unsharded run."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from campaign_support import CLI, assert_nothing_left, campaign_file, cli, one_line_error

from tests.fakes.messages_api import API_KEY, FakeMessagesAPI, Received, message, tool_use

CONTROL = """\
variants:
  - {name: embedded, kind: agent, diagnoser: embedded}
  - name: claude-draft
    kind: agent
    diagnoser: claude
    model: claude-sonnet-5-5
    system_prompt: prompt.md
scenarios:
  - {name: control, subject: tikv, variants: [embedded]}
"""


def _trials(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT id, seed_index, attempt, outcome, ended_at, error_json "
                                              "FROM eval_trials ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.slow
def test_an_interrupted_campaign_resumes_only_what_is_missing_or_invalid(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("You are an SRE.\n")
    spec = campaign_file(tmp_path, "", seeds=3, parallel=1)
    text = spec.read_text()  # its own variants: one that runs, one with a prompt file that never does
    spec.write_text(text[:text.index("variants:")] + CONTROL)
    db = tmp_path / "e.db"
    proc = subprocess.Popen([*CLI, "--db", str(db), "eval", "campaign", str(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if db.exists():
                try:
                    rows = _trials(db)
                except sqlite3.OperationalError:
                    continue
                if any(r["outcome"] == "success" for r in rows) and len(rows) >= 2:
                    break  # the first trial is done and the second has started
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, out[-2000:] + err[-2000:]
    assert "the campaign was interrupted" in out
    before = _trials(db)
    done = [r for r in before if r["outcome"] == "success"]
    assert len(done) == 1
    interrupted = [r for r in before if r["outcome"] == "invalid"]
    assert len(interrupted) == 1 and json.loads(interrupted[0]["error_json"])["phase"] == "interrupted"
    assert_nothing_left(db)

    resumed = cli("eval", "resume", "1", "--report-json", str(tmp_path / "r.json"), db=db)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming 2 of 3 trials" in resumed.stderr
    after = _trials(db)
    assert after[: len(before)] == before  # nothing that ran before was touched
    new = after[len(before):]
    assert len(new) == 2 and all(r["outcome"] == "success" for r in new)
    assert {r["seed_index"] for r in new} == {0, 1, 2} - {done[0]["seed_index"]}
    report = json.loads((tmp_path / "r.json").read_text())
    assert [t["outcome"] for t in report["trials"]] == ["success"] * 3 and report["exit_code"] == 0

    # nothing left to resume; and once the prompt file changes, the campaign is another one
    again = cli("eval", "resume", "1", db=db)
    assert again.returncode == 0 and "resuming 0 of 3 trials" in again.stderr
    (tmp_path / "prompt.md").write_text("You are a careful SRE.\n")
    refused = cli("eval", "resume", "1", db=db)
    assert refused.returncode == 2 and "now hashes" in one_line_error(refused)
    assert len(_trials(db)) == len(after)
    assert_nothing_left(db)


IDENTITY = ("key", "scenario", "variant", "seed_index", "repeat", "seed", "outcome", "valid")


@pytest.mark.slow
def test_two_shards_merged_give_the_report_of_one_run(tmp_path: Path) -> None:
    spec = campaign_file(tmp_path, """\
        scenarios:
          - {name: control, subject: tikv, variants: [embedded]}
        thresholds:
          - {name: "no ticket without a fault", metric: false_tickets, max: 0}
        """, seeds=2)
    whole, one, two, merged = (tmp_path / f"{n}.db" for n in ("whole", "one", "two", "merged"))
    shards = [subprocess.Popen([*CLI, "--db", str(db), "eval", "campaign", str(spec), "--shard", k, "--parallel", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for db, k in ((one, "1/2"), (two, "2/2"))]
    for p in shards:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out[-2000:] + err[-2000:]
    unsharded = cli("eval", "campaign", str(spec), "--report-json", str(tmp_path / "whole.json"), db=whole)
    assert unsharded.returncode == 0, unsharded.stderr[-2000:]

    result = cli("eval", "merge", str(one), str(two), "--json", db=merged)
    assert result.returncode == 0, result.stderr
    [campaign] = json.loads(result.stdout)["campaigns"]
    assert campaign["trials"] == 2 and campaign["missing"] == 0 and len(campaign["sources"]) == 2
    report = cli("eval", "report", str(campaign["campaign_id"]), "--report-json", str(tmp_path / "merged.json"),
                 db=merged)
    assert report.returncode == 0, report.stderr
    a = json.loads((tmp_path / "whole.json").read_text())
    b = json.loads((tmp_path / "merged.json").read_text())
    # the same campaign, trials, seeds, outcomes, aggregates' counts and verdict; measured times
    # (and so TTM and durations) differ as in any rerun
    assert a["campaign"]["spec_sha256"] == b["campaign"]["spec_sha256"]
    assert [{k: t[k] for k in IDENTITY} for t in a["trials"]] == [{k: t[k] for k in IDENTITY} for t in b["trials"]]
    assert a["variants"] == b["variants"] and a["scenarios"] == b["scenarios"]
    assert [(x["rule"], x["passed"]) for x in a["thresholds"]] == [(x["rule"], x["passed"]) for x in b["thresholds"]]
    assert [(c["scenario"], c["variant"], c["outcomes"], c["valid"], c["false_tickets"]) for c in a["aggregates"]] == \
        [(c["scenario"], c["variant"], c["outcomes"], c["valid"], c["false_tickets"]) for c in b["aggregates"]]
    assert (a["status"], a["verdict"], a["exit_code"]) == (b["status"], b["verdict"], b["exit_code"]) == \
        ("complete", "pass", 0)
    assert b["campaign"]["shards"] == campaign["sources"]
    # every trial's run came along, with its tickets and samples; retried attempts too (the shards
    # share this machine's slot 1, so an attempt may lose its port span to the other and be retried)
    attempts = 0
    for shard in (one, two):
        conn = sqlite3.connect(shard)
        attempts += conn.execute("SELECT count(*) FROM eval_trials").fetchone()[0]
        conn.close()
    conn = sqlite3.connect(merged)
    runs = conn.execute("SELECT count(*) FROM runs WHERE kind = 'eval_trial'").fetchone()[0]
    linked = conn.execute("SELECT count(*) FROM eval_trials JOIN runs ON runs.id = eval_trials.run_id").fetchone()[0]
    samples = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    conn.close()
    assert attempts >= 2 and runs == linked == attempts and samples > 0
    audit = cli("audit", "verify", db=merged)
    assert audit.returncode == 0, audit.stdout + audit.stderr  # the merged store's own chain holds
    for db in (one, two, whole):
        assert_nothing_left(db)


CLAUDE_VARIANT = """\
variants:
  - name: claude-test
    kind: agent
    diagnoser: claude
    model: claude-sonnet-5-5
    system_prompt: sre.md
    tools: [observe_cluster, list_actions, submit_diagnosis]
    budgets: {turns: 4, tokens: 20000, wall_s: 30}
    policy: {mode: execute, approval: all}
    approver: {decision: approve, delay_s: [0.2, 0.6]}
scenarios:
  - {name: kill, subject: tikv, faults: [{kind: kill_store}]}
"""


@pytest.mark.slow
async def test_a_claude_variant_gets_its_prompt_tools_budgets_and_the_harness_approver(tmp_path: Path) -> None:
    """The variant's system prompt file (hashed into its config), tool allowlist and budgets reach
    the model; every action waits for approval and the seeded harness approver gives it."""
    prompt = "You are the SRE of this test campaign (marker 7f3a)."
    (tmp_path / "sre.md").write_text(prompt)
    spec = campaign_file(tmp_path, "")
    text = spec.read_text()
    spec.write_text(text[:text.index("variants:")] + CLAUDE_VARIANT)

    def diagnose(req: Received) -> dict[str, Any]:
        seen = json.dumps(req.messages)
        store_id = next(n for n in range(1, 6) if f"store:{n}" in seen)
        return message(tool_use("submit_diagnosis", {
            "summary": f"store {store_id} is down", "root_cause": "its process died",
            "evidence": [{"signal": "status port", "reading": f"store:{store_id} refuses connections"}],
            "alternatives": [{"cause": "process died", "verdict": "chosen"}],
            "recommended_actions": [{"name": "restart_node", "params": {"store_id": store_id},
                                     "reason": "bring the process back"}],
            "expected_outcome": "the store is up again", "confidence": 0.9}, "t_sub"),
            input_tokens=900, output_tokens=150)

    db, report = tmp_path / "e.db", tmp_path / "r.json"
    async with FakeMessagesAPI([diagnose]) as api:
        env = {**os.environ, "ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": api.url}
        proc = await asyncio.create_subprocess_exec(*CLI, "--db", str(db), "--eval", str(spec), "--json", str(report),
                                                    env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        assert api.problems == []
    assert proc.returncode == 0, out.decode()[-2000:] + err.decode()[-2000:]
    [request] = api.requests
    assert prompt in json.dumps(request.body.get("system"))
    assert request.tool_names == ["observe_cluster", "list_actions", "submit_diagnosis"]
    data = json.loads(report.read_text())
    [variant] = data["variants"]
    assert variant["config"]["system_prompt"]["sha256"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert variant["config"]["budgets"] == {"turns": 4, "tokens": 20000, "wall_s": 30.0}
    [trial] = data["trials"]
    assert trial["outcome"] == "success", trial["metrics"].get("reason")
    assert trial["metrics"]["actions"]["names"] == ["restart_node"]
    assert trial["metrics"]["approver"] == {"requests": 1, "approve": 1}
    assert trial["metrics"]["agent"]["input_tokens"] >= 900
    audit = sqlite3.connect(db).execute("SELECT count(*) FROM audit_events WHERE actor = 'eval-approver'").fetchone()
    assert audit[0] >= 1
    assert_nothing_left(db)
