"""`operator-tui --eval FILE`: a campaign headless for CI, its reports, and each exit code provoked
for real: a threshold beyond reach (1), a bad spec or usage (2), a budget too small (3), a fault
whose revert is sabotaged (4). Trials run on live labs (the TiKV simulator), with short windows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from campaign_support import CLI, assert_nothing_left, campaign_file, cli, one_line_error

XSD = xmlschema.XMLSchema(Path(__file__).with_name("junit.xsd"))


@pytest.mark.slow
def test_a_campaign_end_to_end_with_a_threshold_beyond_reach_exits_1(tmp_path: Path) -> None:
    spec = campaign_file(tmp_path, """\
        scenarios:
          - {name: transient, subject: tikv, faults: [{kind: partition_store, duration_s: 4}]}
          - {name: control, subject: tikv, variants: [embedded]}
        thresholds:
          - {name: "no harmful trial", metric: harmful_trials, max: 0}
          - {name: "detects within a millisecond", variant: embedded, scenario: transient, metric: ttd_median,
             max: 0.001}
        """)
    db = tmp_path / "e.db"
    j, r, m = tmp_path / "j.xml", tmp_path / "r.json", tmp_path / "r.md"
    result = subprocess.run([*CLI, "--db", str(db), "--eval", str(spec), "--junit", str(j), "--json", str(r),
                             "--markdown", str(m)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    # progress: plain lines when stderr is not a terminal, one per event, no control characters
    assert "[3/3]" in result.stderr and "\x1b[" not in result.stderr
    assert "campaign 1: fail, exit code 1" in result.stdout

    report = json.loads(r.read_text())
    assert report["schema"] == "operator-eval-report/1" and report["exit_code"] == 1
    assert [t["key"] for t in report["trials"]] == ["transient|baseline|0|0", "transient|embedded|0|0",
                                                    "control|embedded|0|0"]
    assert all(t["outcome"] in ("success", "timeout", "failure") for t in report["trials"]), report["trials"]
    assert len({t["slot"] for t in report["trials"]}) == 2  # both slots worked
    assert report["integrity"]["ok"] and report["integrity"]["leaked_faults"] == 0
    faults = [f for t in report["trials"] for f in t["faults"]]
    assert len(faults) == 2 and all(f["status"] == "revert_verified" for f in faults)
    failed = [x for x in report["thresholds"] if not x["passed"]]
    assert [x["rule"] for x in failed] == ["detects within a millisecond"]

    XSD.validate(j.read_text())
    root = ET.parse(j).getroot()
    assert [s.get("name") for s in root.findall("testsuite")] == ["transient", "control", "thresholds", "integrity"]
    rule = root.find("testsuite[@name='thresholds']/testcase[@name='detects within a millisecond']/failure")
    assert rule is not None and "median TTD" in rule.get("message", "")
    assert rule.get("message", "").endswith("(needs <= 0.001)")  # a named rule's bound is said
    assert root.find("testsuite[@name='thresholds']/testcase[@name='no harmful trial']/failure") is None
    case = root.find("testsuite[@name='transient']/testcase[@classname='eval.transient.embedded']")
    assert case is not None and case.get("name") == "seed=0 rep=0"
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["seed"] == str(report["trials"][1]["seed"]) and "ttm_rmst" in props
    assert "FAIL" in m.read_text() and "detects within a millisecond" in m.read_text()

    # the paired comparison, printed with n, interval and method (one pair: no claim)
    comp = cli("eval", "compare-baseline", "1", "--json", db=db)
    assert comp.returncode == 0, comp.stderr
    rows = json.loads(comp.stdout)["comparisons"]
    assert {(c["scenario"], c["metric"]) for c in rows} >= {("transient", "ttm_rmst"), ("transient", "success_rate")}
    assert all(c["n_pairs"] == 1 and c["decision"] == "insufficient_pairs" for c in rows)
    text = cli("eval", "compare-baseline", "1", db=db)
    assert "embedded vs baseline" in text.stdout and "insufficient pairs (n=1, need 6)" in text.stdout
    assert cli("eval", "compare-variants", "1", db=db).returncode == 2  # one agent variant: nothing to compare

    # the reports again from the store: the same numbers
    again = cli("eval", "report", "1", "--report-json", str(tmp_path / "r2.json"), db=db)
    assert again.returncode == 1
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert r2["thresholds"] == report["thresholds"] and r2["aggregates"] == report["aggregates"]
    assert_nothing_left(db)


@pytest.mark.slow
def test_spec_and_usage_errors_exit_2_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    bad = campaign_file(tmp_path, """\
        scenarios:
          - {name: kill, subject: tikv, faults: [{kind: kill_stor}]}
        """, name="bad")
    result = cli("--eval", str(bad), db=db)
    assert result.returncode == 2
    assert one_line_error(result) == (f"operator-tui: error: {bad}:20: scenarios[0].faults[0].kind: unknown fault kind "
                                      "'kill_stor' for tikv; known: " + one_line_error(result).split("known: ")[1])
    typo = campaign_file(tmp_path, "scenarios:\n  - {name: kill, subject: tikv, faults: [{kind: kill_store}]}\n"
                         "thresholds:\n  - {metric: harmful_trials, max: 0, scope: everywhere}\n", name="typo")
    line = one_line_error(cli("--eval", str(typo), db=db))
    assert f"{typo}:22: thresholds[0].scope:" in line
    over = campaign_file(tmp_path, "scenarios:\n  - {name: kill, subject: tikv, faults: [{kind: kill_store}]}\n",
                         name="over", budget=60)
    result = cli("--eval", str(over), db=db)
    assert result.returncode == 2 and "over the budget of 1m00s" in one_line_error(result)
    unreachable = campaign_file(tmp_path, "scenarios:\n  - {name: kill, subject: tikv, faults: [{kind: kill_store}]}\n"
                                "thresholds:\n  - {variant: embedded, metric: success_rate, min: 0.9, use: ci_lower}\n",
                                name="unreachable")
    result = cli("--eval", str(unreachable), db=db)
    assert result.returncode == 2 and "can never pass" in one_line_error(result)
    assert "at least 35 trials" in result.stderr
    for args in (["--junit", "x.xml"], ["--eval", str(over), "tickets", "list"], ["--eval", str(over), "--shard", "3/2"],
                 ["--eval", str(tmp_path / "missing.yaml")], ["--eval", str(over), "--parallel", "0"],
                 ["--eval", str(over), "--junit", str(tmp_path / "no" / "such" / "j.xml")]):
        result = cli(*args, db=db)
        assert result.returncode == 2, (args, result.stderr)
        one_line_error(result)
    assert not db.exists() or not sqlite3.connect(db).execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'eval_trials'").fetchone()[0] or not sqlite3.connect(
        db).execute("SELECT count(*) FROM eval_trials").fetchone()[0]  # nothing ran


def test_an_eval_run_campaign_has_no_file_to_compare_and_says_so(tmp_path: Path) -> None:
    """`eval compare-baseline` on an `eval run` campaign said "a campaign file is a mapping"."""
    import asyncio

    from operator_tui.store import Store

    db = tmp_path / "e.db"

    async def adhoc() -> int:
        store = await Store.open(db)
        try:  # what `eval run` stores: no campaign file
            return await store.create_campaign("adhoc tikv kill_store embedded", spec_sha256="abc")
        finally:
            await store.close()
    cid = asyncio.run(adhoc())
    for command in ("compare-baseline", "report"):
        result = cli("eval", command, str(cid), db=db)
        assert result.returncode == 2, result.stderr
        assert one_line_error(result) == (
            f"operator-tui: error: store: campaign {cid} (adhoc tikv kill_store embedded) was run by `eval run` and "
            f"has no campaign file to compare, report or resume; `operator-tui eval analyze c{cid}` scores it")


@pytest.mark.slow
def test_a_budget_too_small_skips_trials_and_exits_3(tmp_path: Path) -> None:
    spec = campaign_file(tmp_path, """\
        scenarios:
          - {name: control, subject: tikv, variants: [embedded]}
        """, seeds=3, budget=4)
    db = tmp_path / "e.db"
    j = tmp_path / "j.xml"
    result = cli("--eval", str(spec), "--allow-over-budget", "--junit", str(j), db=db)
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "trials skipped" in result.stderr and "INCOMPLETE" in result.stdout
    XSD.validate(j.read_text())
    cases = ET.parse(j).getroot().findall("testsuite[@name='control']/testcase")
    skipped = [c for c in cases if c.find("skipped") is not None]
    ran = [c for c in cases if c.find("skipped") is None]
    assert len(cases) == 3 and len(skipped) >= 1 and len(ran) >= 1  # the slots started what they could
    assert all("budget" in (c.find("skipped").get("message") or "") for c in skipped)  # type: ignore[union-attr]
    assert_nothing_left(db)


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.slow
def test_a_fault_whose_revert_is_sabotaged_is_an_integrity_failure_exit_4(tmp_path: Path) -> None:
    """Someone else's rule jumps into the trial's chain, so the chain cannot be deleted: the revert
    is not verified, the campaign exits 4 and says which fault; once the rule is gone, `eval
    cleanup` removes the chain and nothing is left."""
    spec = campaign_file(tmp_path, """\
        scenarios:
          - {name: cut, subject: tikv, faults: [{kind: partition_status}], variants: [baseline]}
        thresholds:
          - {metric: harmful_trials, max: 0}
        """, observe=12)
    db = tmp_path / "e.db"
    j = tmp_path / "j.xml"
    saboteur = f"EVCSAB{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([*CLI, "--db", str(db), "--eval", str(spec), "--junit", str(j)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    chain = None
    try:
        deadline = time.monotonic() + 120
        while chain is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if not db.exists():
                continue
            try:
                row = sqlite3.connect(db, timeout=5).execute(
                    "SELECT undo_json FROM eval_faults WHERE status = 'effect_verified'").fetchone()
            except sqlite3.OperationalError:
                continue
            if row is not None:
                chain = json.loads(row[0]).get("chain")
        assert chain, "the fault never landed"
        assert _iptables("-N", saboteur).returncode == 0
        assert _iptables("-A", saboteur, "-j", chain).returncode == 0
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 4, out[-3000:] + err[-3000:]
        assert "INTEGRITY FAILURE" in out and "partition_status on store:" in out
        XSD.validate(j.read_text())
        error = ET.parse(j).getroot().find("testsuite[@name='integrity']/testcase/error")
        assert error is not None and "partition_status" in error.get("message", "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _iptables("-F", saboteur)
        _iptables("-X", saboteur)
    swept = cli("eval", "cleanup", "--json", db=db)
    assert swept.returncode == 0, swept.stderr
    assert any("reverted and verified" in a for a in json.loads(swept.stdout)["actions"]), swept.stdout
    assert _iptables("-S", chain).returncode != 0  # the chain is gone
    assert_nothing_left(db)


def test_a_budget_spent_before_the_first_trial_skips_them_all(tmp_path: Path) -> None:
    spec = campaign_file(tmp_path, """\
        scenarios:
          - {name: control, subject: tikv, variants: [embedded]}
        """, budget=0.01)
    db = tmp_path / "e.db"
    result = cli("--eval", str(spec), "--allow-over-budget", "--json", str(tmp_path / "r.json"), db=db)
    assert result.returncode == 3, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [t["outcome"] for t in report["trials"]] == ["skipped"] and report["status"] == "incomplete"
    # the slot workers end with the campaign
    out = subprocess.run(["pgrep", "-f", f"eval.slot_worker --db {db}"], capture_output=True, text=True)
    assert out.stdout.strip() == ""
