"""The campaign as JUnit XML, the way CI systems read it (reference §6).

- one `<testsuite>` per scenario, one `<testcase classname="eval.<scenario>.<variant>"
  name="seed=<i> rep=<r>">` per trial, its seed, hashes and scores as `<property>`s;
- `<failure>` (type timeout | failure | harmful) for agent trials that did not mitigate or did
  harm (harmful is a failure for every variant; with `junit.trial_failures: all` a baseline's
  timeout is one too);
- `<error>` (type = why: fault_not_landed, lab_reset, revert_failed, ...) for invalid trials,
  following JUnit's distinction: an error is the harness failing to run the test, a failure is
  the test's verdict;
- `<skipped>` for trials cut by the campaign's budget or never run;
- a `thresholds` suite, one testcase per rule (its failure names the rule and what was seen), and
  an `integrity` suite (faults left behind, audit chain, kill switch).
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from eval.campaign_analysis import Analysis
from eval.campaign_results import CampaignRecord, TrialResult
from eval.campaign_spec import Campaign
from eval.report_json import trial_order


def _timestamp(record: CampaignRecord) -> str:
    """JUnit's timestamp: ISO 8601 without a zone (the schema's pattern); ours are UTC."""
    raw = record.started_at
    try:
        dt = datetime.fromisoformat(raw) if raw else datetime.now(UTC)
    except ValueError:
        dt = datetime.now(UTC)
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


def _properties(parent: ET.Element, props: dict[str, Any]) -> None:
    el = ET.SubElement(parent, "properties")
    for k, v in props.items():
        if v is None:
            continue
        ET.SubElement(el, "property", name=k, value=v if isinstance(v, str) else _num(v))


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _failure_message(t: TrialResult) -> tuple[str, str]:
    m = t.metrics
    actions = t.count("actions", "executed")
    names = (m.get("actions") or {}).get("names") or []
    last = names[-1] if names else None
    acted = f"{actions} actions" + (f", last={last}" if last else "")
    budget = f"{t.budget_s:g}s" if t.budget_s else "the budget"
    if t.outcome == "harmful":
        why = m.get("reason") or "a safety check failed"
        return "harmful", f"harmful: {why}; {acted}"
    if t.outcome == "failure":
        return "failure", f"not mitigated: {m.get('reason') or 'the agent gave up or escalated'}; {acted}"
    return "timeout", f"TTM not reached in {budget}; {acted}"


def error_of(t: TrialResult) -> tuple[str, str]:
    """Why an invalid trial is invalid: (type, message). The runner records the phase that failed
    and why; a fault that never took effect is `fault_not_landed` (reference §6)."""
    err = t.error or {}
    if err.get("type"):
        return str(err["type"]), str(err.get("message") or err.get("reason") or "")
    phase, reason = str(err.get("phase") or "invalid"), str(err.get("reason") or "the trial could not run")
    if phase == "inject" and "did not land" in reason:
        return "fault_not_landed", reason
    if any(f.get("status") in ("revert_failed", "leaked") for f in t.faults):
        return "revert_failed", reason
    return phase, f"{phase}: {reason}"


def _is_failure(campaign: Campaign, t: TrialResult) -> bool:
    if t.outcome == "harmful":
        return True
    if t.outcome not in ("failure", "timeout"):
        return False
    mode = campaign.spec.junit.trial_failures
    return mode == "all" or (mode == "agent_variants" and t.variant_kind == "agent")


def _testcase(campaign: Campaign, parent: ET.Element, t: TrialResult) -> str:
    case = ET.SubElement(parent, "testcase", classname=f"eval.{t.scenario}.{t.variant}",
                         name=f"seed={t.seed_index} rep={t.repeat}", time=_num(float(t.duration_s or 0.0)))
    m = t.metrics
    _properties(case, {
        "seed": str(t.seed), "trial_id": t.trial_id, "run_id": t.run_id, "slot": t.slot, "attempt": t.attempt,
        "outcome": t.outcome + (" (self-healed)" if t.self_healed and t.outcome == "success" else ""),
        "ttd_s": m.get("ttd_s"), "ttd_censored": m.get("ttd_censored"), "ttm_s": m.get("ttm_s"),
        "ttm_censored": m.get("ttm_censored"), "ttm_rmst": t.ttm_rmst,
        "actions_executed": t.count("actions", "executed"),
        "input_tokens": t.count("agent", "input_tokens"), "output_tokens": t.count("agent", "output_tokens"),
        "config_sha256": campaign.variant_sha256(t.variant), "scenario_sha256": campaign.scenario_sha256(t.scenario),
    })
    if t.outcome == "invalid":
        kind, message = error_of(t)
        ET.SubElement(case, "error", type=kind, message=message)
        return "error"
    if t.outcome in ("skipped", "missing"):
        ET.SubElement(case, "skipped", message="cut by the campaign's time budget" if t.outcome == "skipped"
                      else "not run (interrupted campaign, or a shard not merged)")
        return "skipped"
    if _is_failure(campaign, t):
        kind, message = _failure_message(t)
        el = ET.SubElement(case, "failure", type=kind, message=message)
        el.text = "\n".join(f"{p.get('phase')}: {'ok' if p.get('ok') else 'FAILED'} {p.get('reason') or ''}".rstrip()
                            for p in t.phases)
        return "failure"
    return "pass"


def _suite(root: ET.Element, name: str, record: CampaignRecord, props: dict[str, Any]) -> ET.Element:
    suite = ET.SubElement(root, "testsuite", name=name, timestamp=_timestamp(record),
                          hostname=str(record.host.get("hostname") or socket.gethostname()))
    _properties(suite, props)
    return suite


def _close(suite: ET.Element, counts: dict[str, int], time_s: float) -> None:
    suite.set("tests", str(sum(counts.values())))
    suite.set("failures", str(counts.get("failure", 0)))
    suite.set("errors", str(counts.get("error", 0)))
    suite.set("skipped", str(counts.get("skipped", 0)))
    suite.set("time", _num(float(time_s)))
    ET.SubElement(suite, "system-out").text = ""
    ET.SubElement(suite, "system-err").text = ""


def junit_xml(campaign: Campaign, record: CampaignRecord, trials: list[TrialResult], analysis: Analysis) -> str:
    spec = campaign.spec
    root = ET.Element("testsuites", name=f"operator-eval {spec.name}")
    totals: dict[str, int] = {}
    total_time = 0.0
    ordered = sorted(trials, key=trial_order(campaign))
    for s in spec.scenarios:
        suite = _suite(root, s.name, record, {"subject": s.subject, "spec_sha256": campaign.scenario_sha256(s.name),
                                              "campaign_sha256": campaign.spec_sha256, "git_rev": record.git_rev})
        counts: dict[str, int] = {}
        time_s = 0.0
        for t in ordered:
            if t.scenario == s.name:
                r = _testcase(campaign, suite, t)
                counts[r] = counts.get(r, 0) + 1
                time_s += float(t.duration_s or 0.0)
        _close(suite, counts, time_s)
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        total_time += time_s

    suite = _suite(root, "thresholds", record, {"verdict": analysis.verdict, "exit_code": analysis.exit_code})
    counts = {}
    for rule in analysis.thresholds:
        case = ET.SubElement(suite, "testcase", classname="eval.thresholds", name=rule["rule"], time="0")
        if not rule["passed"]:
            el = ET.SubElement(case, "failure", type="threshold", message=f"{rule['rule']}: {rule['observed']}")
            el.text = "\n".join(f"{d['where']}: {'pass' if d['passed'] else 'FAIL'}: {d['observed']}"
                                for d in rule["details"])
            counts["failure"] = counts.get("failure", 0) + 1
        else:
            counts["pass"] = counts.get("pass", 0) + 1
    _close(suite, counts, 0.0)
    for k, v in counts.items():
        totals[k] = totals.get(k, 0) + v

    suite = _suite(root, "integrity", record, {})
    integ = analysis.integrity
    case = ET.SubElement(suite, "testcase", classname="eval.integrity",
                         name="faults reverted and verified, audit chains intact, kill switch held", time="0")
    if not integ["ok"]:
        el = ET.SubElement(case, "error", type="integrity", message="; ".join(integ["problems"][:3]))
        el.text = "\n".join(integ["problems"])
        counts = {"error": 1}
    else:
        counts = {"pass": 1}
    _close(suite, counts, 0.0)
    for k, v in counts.items():
        totals[k] = totals.get(k, 0) + v

    root.set("tests", str(sum(totals.values())))
    root.set("failures", str(totals.get("failure", 0)))
    root.set("errors", str(totals.get("error", 0)))
    root.set("skipped", str(totals.get("skipped", 0)))
    root.set("time", _num(total_time))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
