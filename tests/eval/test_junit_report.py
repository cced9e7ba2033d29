"""Reports from a set of trial results: JSON (versioned), JUnit checked against the schema,
Markdown; the analysis behind them (cells, paired comparisons, thresholds, integrity, exit code).

The trial results here are written by hand, as the store would hold them after real trials, so
that each number in the reports can be checked against a value worked out on paper; the end-to-end
tests (test_campaign_run.py, test_ci_mode.py) produce them from real trials."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from eval.campaign_analysis import analyse
from eval.campaign_plan import plan_campaign
from eval.campaign_results import CampaignRecord, TrialResult
from eval.campaign_spec import load_campaign
from eval.report_json import SCHEMA, report
from eval.report_junit import junit_xml
from eval.report_markdown import markdown

XSD = Path(__file__).with_name("junit.xsd")

SPEC = """\
version: 1
name: reports
seed: 11
seeds: 4
repeats: 2
budget: {campaign_wall_s: 100000}
defaults: {observe_budget_s: 60}
variants:
  - {name: baseline, kind: baseline}
  - {name: embedded, kind: agent, diagnoser: embedded}
scenarios:
  - name: kill
    subject: tikv
    faults: [{kind: kill_store}]
  - {name: control, subject: tikv}
thresholds:
  - {variant: embedded, metric: success_rate, scope: each_scenario, min: 0.75}
  - {metric: harmful_trials, max: 0}
  - {compare: [embedded, baseline], metric: ttm_rmst, expect: a_better}
  - {metric: false_tickets, max: 0}
"""


def results(plan, outcome_of=None) -> list[TrialResult]:  # type: ignore[no-untyped-def]
    """Embedded mitigates in 10 + seed_index s; the baseline times out at 60 s."""
    out = []
    for p in plan.trials:
        kind = plan.campaign.spec.variant(p.variant).kind
        control = plan.campaign.spec.scenario(p.scenario).control
        if control:
            outcome, metrics = "success", {"tickets": {"total": 0}, "actions": {"executed": 0}}
        elif kind == "agent":
            ttm = 10.0 + p.seed_index
            outcome, metrics = "success", {"ttd_s": 1.5, "ttd_censored": False, "ttm_s": ttm, "ttm_censored": False,
                                           "actions": {"executed": 1, "names": ["restart_store"]},
                                           "integrity": {"audit_chain_ok": True, "lab_state": "down"}}
        else:
            outcome, metrics = "timeout", {"ttd_s": 1.5, "ttd_censored": False, "ttm_s": None, "ttm_censored": True}
        t = TrialResult(p.scenario, p.variant, kind, p.seed_index, p.repeat, p.seed, outcome,
                        trial_id=p.index + 1, run_id=p.index + 100, slot=p.index % 2, duration_s=30.0, budget_s=60.0,
                        phases=[{"phase": "lab_reset", "ok": True}],
                        faults=[] if control else [{"kind": "kill_store", "target": "2", "status": "revert_verified"}],
                        metrics=metrics)
        if outcome_of:
            outcome_of(t)
        out.append(t)
    return out


@pytest.fixture
def campaign(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = tmp_path / "reports.yaml"
    p.write_text(SPEC)
    return load_campaign(p)


RECORD = CampaignRecord(id=3, name="reports", spec_sha256="ab" * 32, seed=11, parallel=2,
                        started_at="2026-11-21T10:00:00+00:00", git_rev="0123456789abcdef", git_dirty=False)


def render(campaign, trials):  # type: ignore[no-untyped-def]
    a = analyse(campaign, trials, planned=len(trials))
    rec = CampaignRecord(**{**RECORD.__dict__, "spec_sha256": campaign.spec_sha256})
    return a, report(campaign, rec, trials, a), junit_xml(campaign, rec, trials, a)


def test_all_pass_reports(campaign) -> None:  # type: ignore[no-untyped-def]
    plan = plan_campaign(campaign, adapter_of=None)
    trials = results(plan)
    a, data, xml = render(campaign, trials)
    assert (a.exit_code, a.verdict, a.status) == (0, "pass", "complete"), a.reasons
    # cells: embedded 8/8 with Wilson [0.68, 1]; baseline 0/8
    cell = {(c["scenario"], c["variant"]): c for c in data["aggregates"]}
    emb = cell[("kill", "embedded")]
    assert emb["success"]["k"] == 8 and emb["success"]["n"] == 8
    assert emb["success"]["ci95"][0] == pytest.approx(0.6756, abs=1e-4)
    # TTM 10,10,11,11,12,12,13,13: KM median 11, RMST = mean 11.5
    assert emb["ttm"]["median"] == 11.0 and emb["ttm"]["rmst"] == pytest.approx(11.5)
    assert cell[("kill", "baseline")]["ttm"]["rmst"] == 60.0 and cell[("kill", "baseline")]["ttm"]["median"] is None
    assert cell[("control", "embedded")]["false_tickets"] == 0
    # the paired comparison: d = -50 + seed_index..., 8 pairs, all negative
    comp = next(c for c in data["comparisons"] if c["metric"] == "ttm_rmst" and c["scope"] == "scenario")
    assert comp["n_pairs"] == 8 and comp["estimate"] == pytest.approx(-48.5)
    assert comp["decision"] == "a_better" and comp["p"] == pytest.approx(0.0078125)
    assert "n=8 pairs" in comp["text"] and "paired bootstrap" in comp["text"] and "Wilcoxon" in comp["text"]
    succ = next(c for c in data["comparisons"] if c["metric"] == "success_rate" and c["scope"] == "scenario")
    assert succ["p"] == pytest.approx(0.0078125) and succ["decision"] == "a_better"  # McNemar 8 vs 0

    # JSON: versioned, stable keys, serialisable
    assert data["schema"] == SCHEMA == "operator-eval-report/1"
    assert set(data) >= {"campaign", "status", "verdict", "exit_code", "variants", "scenarios", "trials", "aggregates",
                         "comparisons", "thresholds", "integrity"}
    json.loads(json.dumps(data, default=str))
    assert [t["key"] for t in data["trials"]][:2] == ["kill|baseline|0|0", "kill|embedded|0|0"]

    # JUnit: valid against the schema; a suite per scenario plus thresholds and integrity
    xmlschema.XMLSchema(XSD).validate(xml)
    root = ET.fromstring(xml)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["kill", "control", "thresholds", "integrity"]
    kill = suites["kill"]
    assert kill.get("tests") == "16" and kill.get("failures") == "0"  # baseline timeouts are expected
    case = kill.find("testcase[@classname='eval.kill.embedded']")
    assert case is not None and case.get("name") == "seed=0 rep=0"
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["seed"] == str(plan.trials[0].seed) and props["ttm_s"] == "10.000" and props["outcome"] == "success"
    assert [c.get("name") for c in suites["thresholds"].findall("testcase")] == [r["rule"] for r in data["thresholds"]]

    md = markdown(data)
    assert md.startswith("# Evaluation campaign `reports`: PASS")
    assert "8/8 = 1.00 [0.68, 1.00]" in md and "embedded better than baseline on ttm_rmst" in md


def test_failures_errors_skips_and_exit_codes(campaign) -> None:  # type: ignore[no-untyped-def]
    plan = plan_campaign(campaign, adapter_of=None)

    def degrade(t: TrialResult) -> None:
        if t.scenario != "kill" or t.variant != "embedded":
            return
        if t.seed_index == 0 and t.repeat == 0:
            t.outcome, t.error = "invalid", {"phase": "inject", "reason": "fault kill_store on store:2 did not land: still Up"}
        elif t.seed_index == 1 and t.repeat == 0:
            t.outcome = "timeout"
            t.metrics.update(ttm_s=None, ttm_censored=True)

    trials = results(plan, degrade)
    a, data, xml = render(campaign, trials)
    # 6/7 valid successes = 0.857 >= 0.75 still passes; the comparison has 7 pairs (one dropped)
    assert a.exit_code == 0, a.reasons
    comp = next(c for c in data["comparisons"] if c["metric"] == "ttm_rmst" and c["scope"] == "scenario")
    assert comp["n_pairs"] == 7 and comp["dropped_pairs"] == ["kill|0|0"]
    xmlschema.XMLSchema(XSD).validate(xml)
    kill = next(s for s in ET.fromstring(xml).findall("testsuite") if s.get("name") == "kill")
    err = kill.find("testcase[@name='seed=0 rep=0'][@classname='eval.kill.embedded']/error")
    assert err is not None and err.get("type") == "fault_not_landed"
    fail = kill.find("testcase[@name='seed=1 rep=0'][@classname='eval.kill.embedded']/failure")
    assert fail is not None and fail.get("type") == "timeout" and "TTM not reached in 60s" in fail.get("message", "")
    assert (kill.get("errors"), kill.get("failures")) == ("1", "1")

    # a threshold out of reach: exit 1, the JUnit failure names the rule
    spec2 = campaign.path.read_text().replace("min: 0.75", "min: 0.95")
    campaign.path.write_text(spec2)
    c2 = load_campaign(campaign.path)
    a2, data2, xml2 = render(c2, results(plan_campaign(c2, adapter_of=None), degrade))
    assert a2.exit_code == 1 and a2.verdict == "fail"
    failing = ET.fromstring(xml2).find("testsuite[@name='thresholds']/testcase/failure")
    assert failing is not None and "success_rate(embedded, each scenario) >= 0.95" in failing.get("message", "")
    assert "6/7" in failing.get("message", "")
    assert "**FAIL**" in markdown(data2)

    # skipped trials: incomplete, exit 3, <skipped/>
    def skip_some(t: TrialResult) -> None:
        if t.seed_index == 3:
            t.outcome = "skipped"

    a3, _, xml3 = render(campaign, results(plan_campaign(c2, adapter_of=None), skip_some))
    assert a3.exit_code == 3 and a3.status == "incomplete"
    xmlschema.XMLSchema(XSD).validate(xml3)
    assert ET.fromstring(xml3).find(".//testcase/skipped") is not None

    # a fault left behind: integrity failure, exit 4, over everything else
    def leak(t: TrialResult) -> None:
        skip_some(t)
        if t.trial_id == 2:
            t.faults[0]["status"] = "revert_failed"

    a4, data4, xml4 = render(c2, results(plan_campaign(c2, adapter_of=None), leak))
    assert a4.exit_code == 4 and data4["integrity"]["leaked_faults"] == 1 and not data4["integrity"]["ok"]
    assert ET.fromstring(xml4).find("testsuite[@name='integrity']/testcase/error") is not None
    assert "INTEGRITY FAILURE" in markdown(data4)


def test_too_few_pairs_make_no_claim(tmp_path: Path) -> None:
    p = tmp_path / "few.yaml"
    p.write_text(SPEC.replace("seeds: 4", "seeds: 2").replace(
        "  - {compare: [embedded, baseline], metric: ttm_rmst, expect: a_better}\n", ""))
    c = load_campaign(p)
    _, data, _ = render(c, results(plan_campaign(c, adapter_of=None)))
    comp = next(x for x in data["comparisons"] if x["metric"] == "ttm_rmst" and x["scope"] == "scenario")
    assert comp["n_pairs"] == 4 and comp["decision"] == "insufficient_pairs"
    assert comp["decision_text"] == "insufficient pairs (n=4, need 6)"


def test_two_campaigns_compare_on_the_same_seeds(campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from eval.campaign_compare import compare_campaigns, parse_side

    plan = plan_campaign(campaign, adapter_of=None)
    old = results(plan)

    def faster(t: TrialResult) -> None:
        if t.variant == "embedded" and t.metrics.get("ttm_s") is not None:
            t.metrics["ttm_s"] -= 5.0

    new = results(plan, faster)
    rec_a = CampaignRecord(**{**RECORD.__dict__, "id": 1, "git_rev": "a" * 40})
    rec_b = CampaignRecord(**{**RECORD.__dict__, "id": 2, "git_rev": "b" * 40})
    out = compare_campaigns((campaign, rec_a, new), (campaign, rec_b, old), None, None)
    ttm = next(c for c in out["comparisons"] if c["a"] == "1:embedded" and c["metric"] == "ttm_rmst"
               and c["scope"] == "scenario")
    assert ttm["n_pairs"] == 8 and ttm["estimate"] == pytest.approx(-5.0)
    assert ttm["decision"] == "a_better"  # the new revision mitigates 5 s sooner on every seed
    assert {c["a"] for c in out["comparisons"]} == {"1:baseline", "1:embedded"}
    assert out["notes"] == []
    # a scenario whose spec differs is left out, and said so
    changed = tmp_path / "changed.yaml"
    changed.write_text(campaign.path.read_text().replace("faults: [{kind: kill_store}]",
                                                         "faults: [{kind: kill_store, target: 3}]"))
    other = load_campaign(changed)
    with pytest.raises(ValueError, match="share no scenario with the same spec"):
        compare_campaigns((campaign, rec_a, new), (other, rec_b, old), "embedded", "embedded")
    assert parse_side("12:embedded") == (12, "embedded") and parse_side("3") == (3, None)
    with pytest.raises(ValueError):
        parse_side("x:embedded")
