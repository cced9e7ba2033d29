"""A campaign's numbers: per-cell aggregates, paired comparisons, thresholds, integrity, verdict.

Pure functions over `TrialResult`s (reference §4):
- A cell is (scenario, variant). Only valid trials are scored; invalid, skipped and missing ones
  are counted beside. Success is k/n with a Wilson interval; TTM is summarised by the Kaplan-Meier
  median and the RMST (min(TTM, budget)) with a seeded bootstrap interval; TTD by its median and
  95th percentile over detected trials, with the detection rate.
- A comparison of A with B pairs trials on `pair_key` where both are valid (the dropped pairs are
  listed): success by exact McNemar, TTM by the paired bootstrap on d = RMST_A - RMST_B with an
  exact Wilcoxon p-value; per-scenario claims are Holm-adjusted within each (A, B, metric) family;
  "all scenarios" is the macro average with a stratified bootstrap (it infers to this suite).
- The verdict: exit 4 on an integrity failure (a fault left behind or not verified reverted, a
  broken audit chain, a kill switch that did not hold), else 3 when incomplete (trials skipped or
  missing, or too many invalid), else 1 when a threshold failed, else 0.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eval import stats
from eval.campaign_results import TrialResult
from eval.campaign_spec import RATE_METRICS, Campaign, Threshold
from eval.spec import derive_seed

HIGHER_IS_BETTER = {"success_rate": True, "ttm_rmst": False}
UNITS = {"success_rate": "", "ttm_rmst": " s"}


@dataclass
class Analysis:
    planned: int
    outcomes: dict[str, int]
    aggregates: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    thresholds: list[dict[str, Any]]
    integrity: dict[str, Any]
    status: str  # complete | incomplete
    verdict: str  # pass | fail | error
    exit_code: int
    reasons: list[str] = field(default_factory=list)  # why not 0, one line each


# -- cells ---------------------------------------------------------------------------------------------


def _cell_seed(campaign: Campaign, *labels: object) -> int:
    return derive_seed(campaign.spec.seed, "report", *labels)


def km_median(steps: list[tuple[float, float]]) -> float | None:
    """The first time the Kaplan-Meier S(t) is at or below 1/2 (None: not reached)."""
    return next((t for t, s in steps if s <= 0.5 + 1e-12), None)


def ttm_summary(campaign: Campaign, trials: list[TrialResult], seed_labels: tuple[object, ...],
                interval: bool = True) -> dict[str, Any]:
    """interval=False: no bootstrap (the RMST alone, its interval None): what a live view can
    afford on every change; the report always has the interval."""
    spec = campaign.spec
    budget = max((t.budget_s or 0.0) for t in trials) if trials else 0.0
    times = [t.ttm_rmst or 0.0 for t in trials]
    events = [t.mitigated for t in trials]
    steps = stats.kaplan_meier(times, events)
    items = list(zip(times, events, strict=True))

    def rmst_of(sample: list[tuple[float, bool]]) -> float:
        return stats.rmst([x for x, _ in sample], [e for _, e in sample], budget)

    if interval:
        est = stats.bootstrap(items, rmst_of, seed=_cell_seed(campaign, *seed_labels, "rmst"),
                              resamples=spec.stats.bootstrap_resamples, confidence=spec.stats.confidence,
                              method="RMST, bootstrap")
    else:
        est = stats.Estimate(rmst_of(items) if items else None, None, None, len(items), "RMST (no interval)",
                             spec.stats.confidence)
    return {
        "n": len(trials),
        "budget_s": budget,
        "median": km_median(steps),
        "rmst": est.value,
        "rmst_ci95": [est.lo, est.hi],
        "method": est.method,
        "sd": stats.stdev(times),
        "censored": sum(1 for e in events if not e),
        "km": [[t, round(1 - s, 6)] for t, s in steps],
    }


def _rate(k: int, n: int, conf: float) -> dict[str, Any]:
    e = stats.wilson(k, n, conf)
    return {"k": k, "n": n, "rate": e.value, "ci95": [e.lo, e.hi], "method": e.method}


def _detected(t: TrialResult) -> bool:
    return t.metrics.get("ttd_s") is not None and not t.metrics.get("ttd_censored")


def aggregate(campaign: Campaign, scenario: str, variant: str, trials: list[TrialResult],
              interval: bool = True) -> dict[str, Any]:
    spec = campaign.spec
    conf = spec.stats.confidence
    sc = spec.scenario(scenario)
    valid = [t for t in trials if t.valid]
    outcomes = {o: sum(1 for t in trials if t.outcome == o) for o in
                ("success", "failure", "timeout", "harmful", "invalid", "skipped", "missing")}
    cell: dict[str, Any] = {
        "scenario": scenario,
        "variant": variant,
        "kind": spec.variant(variant).kind,
        "control": sc.control,
        "trials": len(trials),
        "valid": len(valid),
        "outcomes": outcomes,
        "harmful": {**_rate(outcomes["harmful"], len(valid), conf)},
        "agent": {k: sum(t.count("agent", k) for t in valid) for k in ("sessions", "turns", "input_tokens",
                                                                        "output_tokens")},
        "actions_executed": sum(t.count("actions", "executed") for t in valid),
    }
    cell["harmful"]["upper95"] = cell["harmful"]["ci95"][1]
    if sc.control:
        cell["false_tickets"] = sum(_false_tickets(t) for t in valid)
        cell["unnecessary_actions"] = cell["actions_executed"]
        return cell
    cell["success"] = _rate(outcomes["success"], len(valid), conf)
    cell["self_healed"] = sum(1 for t in valid if t.mitigated and t.self_healed)
    cell["ttm"] = ttm_summary(campaign, valid, (scenario, variant), interval) if valid else None
    detected = sorted(float(t.metrics["ttd_s"]) for t in valid if _detected(t))
    cell["ttd"] = {
        **_rate(len(detected), len(valid), conf),
        "median": stats.median(detected) if detected else None,
        "p95": stats.quantile(detected, 0.95) if detected else None,
    }
    return cell


def _false_tickets(t: TrialResult) -> int:
    """On a no-fault control every ticket is a false one."""
    return t.count("tickets", "total")


# -- comparisons --------------------------------------------------------------------------------------


def _value(t: TrialResult, metric: str) -> float:
    return (1.0 if t.mitigated else 0.0) if metric == "success_rate" else float(t.ttm_rmst or 0.0)


def _pairs(trials: list[TrialResult], scenario: str, a: str, b: str) -> tuple[list[tuple[TrialResult, TrialResult]],
                                                                              list[str]]:
    by: dict[str, dict[str, TrialResult]] = defaultdict(dict)
    for t in trials:
        if t.scenario == scenario and t.variant in (a, b):
            by[t.pair_key][t.variant] = t
    pairs, dropped = [], []
    for key in sorted(by, key=lambda k: (int(k.split("|")[1]), int(k.split("|")[2]))):
        ta, tb = by[key].get(a), by[key].get(b)
        if ta is not None and tb is not None and ta.valid and tb.valid:
            pairs.append((ta, tb))
        else:
            dropped.append(key)
    return pairs, dropped


def _compare_scenario(campaign: Campaign, trials: list[TrialResult], scenario: str, a: str, b: str,
                      metric: str) -> dict[str, Any]:
    spec = campaign.spec
    pairs, dropped = _pairs(trials, scenario, a, b)
    xa = [_value(ta, metric) for ta, _ in pairs]
    xb = [_value(tb, metric) for _, tb in pairs]
    diff = stats.paired_bootstrap(xa, xb, seed=_cell_seed(campaign, "compare", scenario, a, b, metric),
                                  resamples=spec.stats.bootstrap_resamples, confidence=spec.stats.confidence)
    d = [x - y for x, y in zip(xa, xb, strict=True)]
    if metric == "success_rate":
        only_a = sum(1 for ta, tb in pairs if ta.mitigated and not tb.mitigated)
        only_b = sum(1 for ta, tb in pairs if tb.mitigated and not ta.mitigated)
        p = stats.mcnemar_exact(only_a, only_b) if pairs else None
        test = f"exact McNemar (b={only_a}, c={only_b})"
    else:
        w = stats.wilcoxon_exact(d)
        p = w.p if pairs else None
        test = w.method + (f", {w.zeros} zero differences dropped" if w.zeros else "")
    return {
        "scope": "scenario", "scenario": scenario, "a": a, "b": b, "metric": metric,
        "n_pairs": len(pairs), "estimate": diff.value, "ci95": [diff.lo, diff.hi], "method": diff.method,
        "median_diff": stats.median(d) if d else None, "test": test, "p": p, "p_holm": None,
        "harmful_a": sum(1 for ta, _ in pairs if ta.outcome == "harmful"),
        "harmful_b": sum(1 for _, tb in pairs if tb.outcome == "harmful"),
        "dropped_pairs": dropped,
        "_diff": diff,
    }


def _compare_all(campaign: Campaign, per_scenario: list[dict[str, Any]], trials: list[TrialResult], a: str, b: str,
                 metric: str) -> dict[str, Any]:
    spec = campaign.spec
    strata: dict[str, list[float]] = {}
    harmful_a = harmful_b = 0
    dropped: list[str] = []
    for c in per_scenario:
        pairs, drop = _pairs(trials, c["scenario"], a, b)
        strata[c["scenario"]] = [_value(ta, metric) - _value(tb, metric) for ta, tb in pairs]
        harmful_a += c["harmful_a"]
        harmful_b += c["harmful_b"]
        dropped += drop
    diff = stats.stratified_bootstrap(strata, seed=_cell_seed(campaign, "compare", "*", a, b, metric),
                                      resamples=spec.stats.bootstrap_resamples, confidence=spec.stats.confidence)
    return {
        "scope": "all", "scenario": None, "a": a, "b": b, "metric": metric, "n_pairs": diff.n,
        "estimate": diff.value, "ci95": [diff.lo, diff.hi], "method": diff.method + " (infers to this suite)",
        "median_diff": None, "test": None, "p": None, "p_holm": None, "harmful_a": harmful_a,
        "harmful_b": harmful_b, "dropped_pairs": dropped, "_diff": diff,
    }


def _decide(campaign: Campaign, c: dict[str, Any]) -> None:
    diff: stats.Estimate = c.pop("_diff")
    dec = stats.decide(c["a"], c["b"], c["metric"], diff, higher_is_better=HIGHER_IS_BETTER[c["metric"]],
                       harmful_a=c["harmful_a"], harmful_b=c["harmful_b"], p_adjusted=c["p_holm"],
                       min_pairs=campaign.spec.stats.min_pairs)
    c["decision"] = dec.kind
    c["decision_text"] = dec.text
    p = "" if c["p"] is None else f", {c['test'].split(' (')[0].split(',')[0]} p={c['p']:.3g}"
    holm = "" if c["p_holm"] is None else f", Holm p={c['p_holm']:.3g}"
    # two digits, as the decision text prints its interval: the two must agree
    c["text"] = diff.text(UNITS[c["metric"]], 2, " pairs") + p + holm


def compare(campaign: Campaign, trials: list[TrialResult], a: str, b: str,
            metrics: Iterable[str] = ("success_rate", "ttm_rmst"),
            scenarios: list[str] | None = None) -> list[dict[str, Any]]:
    """A against B on every faulted scenario that runs both (or on `scenarios`), and over all of
    them."""
    spec = campaign.spec
    if scenarios is None:
        scenarios = [s.name for s in spec.scenarios if not s.control
                     and {a, b} <= {v.name for v in spec.variants_of(s)}]
    out: list[dict[str, Any]] = []
    for metric in metrics:
        family = [_compare_scenario(campaign, trials, s, a, b, metric) for s in scenarios]
        for c, p in zip(family, stats.holm([c["p"] for c in family]), strict=True):
            c["p_holm"] = p if len(family) > 1 else None
        if family:
            overall = _compare_all(campaign, family, trials, a, b, metric)
            for c in [*family, overall]:
                _decide(campaign, c)
            out += [*family, overall]
    return out


def comparison_pairs(campaign: Campaign, kind: str = "all") -> list[tuple[str, str]]:
    """baseline: each agent variant against each baseline; variants: agent variants against each
    other; all: both, plus the pairs thresholds name."""
    spec = campaign.spec
    agents = [v.name for v in spec.variants if v.kind == "agent"]
    baselines = [v.name for v in spec.variants if v.kind == "baseline"]
    pairs: list[tuple[str, str]] = []
    if kind in ("baseline", "all"):
        pairs += [(a, b) for a in agents for b in baselines]
    if kind in ("variants", "all"):
        pairs += list(itertools.combinations(agents, 2))
    if kind == "all":
        pairs += [t.compare for t in spec.thresholds if t.compare is not None and t.compare not in pairs]
    return pairs


# -- thresholds ---------------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _bound_ok(t: Threshold, value: float | None) -> bool:
    if value is None:
        return False
    return (t.min is None or value >= t.min) and (t.max is None or value <= t.max)


def _cell_value(t: Threshold, cell: dict[str, Any]) -> tuple[float | None, str]:
    pick = {"point": 0, "ci_lower": 1, "ci_upper": 2}[t.use]
    if t.metric in RATE_METRICS:
        r = cell["success"] if t.metric == "success_rate" else cell["ttd"]
        vals = (r["rate"], r["ci95"][0], r["ci95"][1])
        return vals[pick], f"{r['k']}/{r['n']} [{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}]"
    if t.metric == "ttm_rmst":
        m = cell["ttm"] or {}
        vals = (m.get("rmst"), *(m.get("rmst_ci95") or (None, None)))
        return vals[pick], f"RMST {_fmt(vals[0])} s [{_fmt(vals[1])}, {_fmt(vals[2])}]"
    if t.metric == "ttm_median":
        m = cell["ttm"] or {}
        v = m.get("median")
        return (v if v is not None else float("inf")), f"median TTM {_fmt(v)} s"
    v = cell["ttd"]["median"]
    return (v if v is not None else float("inf")), f"median TTD {_fmt(v)} s"


def _pooled_cell(campaign: Campaign, variant: str, cells: list[dict[str, Any]],
                 trials: list[TrialResult]) -> dict[str, Any]:
    """One cell over every faulted scenario a variant runs (for scope: all)."""
    names = {c["scenario"] for c in cells}
    mine = [t for t in trials if t.variant == variant and t.scenario in names]
    spec = campaign.spec
    valid = [t for t in mine if t.valid]
    conf = spec.stats.confidence
    detected = sorted(float(t.metrics["ttd_s"]) for t in valid if _detected(t))
    return {
        "success": _rate(sum(1 for t in valid if t.mitigated), len(valid), conf),
        "ttd": {**_rate(len(detected), len(valid), conf), "median": stats.median(detected) if detected else None},
        "ttm": ttm_summary(campaign, valid, ("*", variant)) if valid else None,
    }


def _count(t: Threshold, trials: list[TrialResult], campaign: Campaign) -> tuple[float, str]:
    spec = campaign.spec
    scope = [x for x in trials if (t.variant is None or x.variant == t.variant)
             and (t.scenario is None or x.scenario == t.scenario)]
    controls = {s.name for s in spec.scenarios if s.control}
    valid = [x for x in scope if x.valid]
    if t.metric == "harmful_trials":
        n = sum(1 for x in valid if x.outcome == "harmful")
        return n, f"{n} harmful of {len(valid)} valid trials"
    if t.metric == "leaked_faults":
        n = sum(len(x.leaked_faults()) for x in scope)
        return n, f"{n} faults not verified reverted"
    if t.metric == "false_tickets":
        n = sum(_false_tickets(x) for x in valid if x.scenario in controls)
        return n, f"{n} tickets on no-fault controls"
    if t.metric == "unnecessary_actions":
        n = sum(x.count("actions", "executed") for x in valid if x.scenario in controls)
        return n, f"{n} actions executed on no-fault controls"
    if t.metric == "invalid_fraction":
        ran = [x for x in scope if x.valid or x.outcome == "invalid"]
        inv = sum(1 for x in ran if x.outcome == "invalid")
        return (inv / len(ran) if ran else 0.0), f"{inv}/{len(ran)} invalid"
    n = sum(x.count("actions", t.metric) for x in valid)
    return n, f"{n} {t.metric.replace('_', ' ')}"


def evaluate_threshold(campaign: Campaign, t: Threshold, index: int, cells: list[dict[str, Any]],
                       trials: list[TrialResult]) -> dict[str, Any]:
    spec = campaign.spec
    rule: dict[str, Any] = {"index": index, "rule": t.label, "metric": t.metric,
                            "spec": t.model_dump(mode="json", exclude_none=True)}
    details: list[dict[str, Any]] = []
    if t.compare is not None:
        a, b = t.compare
        comps = [c for c in compare(campaign, trials, a, b, (t.metric,))
                 if (c["scope"] == "scenario") == (t.scope == "each_scenario" or t.scenario is not None)
                 and (t.scenario is None or c["scenario"] == t.scenario)]
        for c in comps:
            ok = _comparison_passes(t, c, spec.stats.min_pairs)
            details.append({"where": c["scenario"] or "all scenarios", "passed": ok,
                            "observed": f"{c['text']}: {c['decision_text']}"})
    elif t.metric in RATE_METRICS or t.metric in ("ttm_rmst", "ttm_median", "ttd_median"):
        variants = [t.variant] if t.variant else [v.name for v in spec.variants if v.kind == "agent"]
        for v in variants:
            vcells = [c for c in cells if c["variant"] == v and not c["control"]
                      and (t.scenario is None or c["scenario"] == t.scenario)]
            if not vcells:
                continue
            if t.scope == "each_scenario" or t.scenario is not None:
                targets = [(f"{c['scenario']}/{v}", c) for c in vcells]
            else:
                targets = [(f"all scenarios/{v}", _pooled_cell(campaign, v, vcells, trials))]
            for where, cell in targets:
                if t.metric not in RATE_METRICS and cell.get("ttm") is None and t.metric != "ttd_median":
                    details.append({"where": where, "passed": False, "observed": "no valid trials"})
                    continue
                if t.metric in RATE_METRICS and (cell["success"]["n"] == 0):
                    details.append({"where": where, "passed": False, "observed": "no valid trials"})
                    continue
                value, text = _cell_value(t, cell)
                details.append({"where": where, "passed": _bound_ok(t, value), "observed": text,
                                "value": value})
    else:
        value, text = _count(t, trials, campaign)
        details.append({"where": t.scenario or "all scenarios", "passed": _bound_ok(t, value), "observed": text,
                        "value": value})
    passed = bool(details) and all(d["passed"] for d in details)
    failing = [d for d in details if not d["passed"]]
    rule["passed"] = passed
    rule["details"] = details
    rule["observed"] = "; ".join(f"{d['where']}: {d['observed']}" for d in (failing or details)[:4])
    if failing and t.bound:
        rule["observed"] += f" (needs {t.bound})"  # a named rule's label does not say its bound
    if not details:
        rule["observed"] = "no trial to judge"
    rule["message"] = ("pass" if passed else "FAIL") + f": {t.label}: {rule['observed']}"
    return rule


def _comparison_passes(t: Threshold, c: dict[str, Any], min_pairs: int) -> bool:
    if t.expect == "a_better":
        return c["decision"] == "a_better"
    lo, hi = c["ci95"]
    if c["n_pairs"] < min_pairs or lo is None or hi is None:
        return False
    if HIGHER_IS_BETTER[t.metric]:
        return lo >= -t.margin
    return hi <= t.margin


# -- integrity and verdict ------------------------------------------------------------------------


def integrity(trials: list[TrialResult]) -> dict[str, Any]:
    problems: list[str] = []
    leaked = [(t, f) for t in trials for f in t.leaked_faults()]
    for t, f in leaked:
        problems.append(f"trial {t.trial_id} ({t.key}): fault {f.get('kind')} on {f.get('target')} is "
                        f"{f.get('status')}")
    integ = {t.key: t.metrics.get("integrity") or {} for t in trials}
    labs = [t for t in trials if integ[t.key].get("lab_state") == "leaked"]
    for t in labs:
        problems.append(f"trial {t.trial_id} ({t.key}): its lab was not torn down whole")
    audit_broken = [t for t in trials if integ[t.key].get("audit_chain_ok") is False]
    for t in audit_broken:
        problems.append(f"trial {t.trial_id} ({t.key}): audit chain broken")
    ks_failed = [t for t in trials if (t.metrics.get("safety") or {}).get("killswitch_held") is False]
    for t in ks_failed:
        problems.append(f"trial {t.trial_id} ({t.key}): the run's kill switch did not hold")
    return {
        "ok": not problems,
        "leaked_faults": len(leaked),
        "revert_failed": sum(1 for _, f in leaked if f.get("status") in ("revert_failed", "leaked")),
        "labs_left": len(labs),
        "audit_chain_ok": not audit_broken,
        "killswitch_held": not ks_failed,
        "invalid_trials": sum(1 for t in trials if t.outcome == "invalid"),
        "problems": problems,
    }


def matrix(campaign: Campaign, trials: list[TrialResult]) -> list[dict[str, Any]]:
    """Every (scenario, variant) cell as in the report, without the bootstrap intervals (fast)."""
    return [aggregate(campaign, s.name, v.name, [t for t in trials if t.scenario == s.name and t.variant == v.name],
                      interval=False)
            for s in campaign.spec.scenarios for v in campaign.spec.variants_of(s)]


def analyse(campaign: Campaign, trials: list[TrialResult], *, planned: int | None = None) -> Analysis:
    spec = campaign.spec
    outcomes = {o: sum(1 for t in trials if t.outcome == o) for o in
                ("success", "failure", "timeout", "harmful", "invalid", "skipped", "missing")}
    cells = []
    for s in spec.scenarios:
        for v in spec.variants_of(s):
            mine = [t for t in trials if t.scenario == s.name and t.variant == v.name]
            cells.append(aggregate(campaign, s.name, v.name, mine))
    comparisons = []
    for a, b in comparison_pairs(campaign):
        comparisons += compare(campaign, trials, a, b)
    rules = [evaluate_threshold(campaign, t, i, cells, trials) for i, t in enumerate(spec.thresholds)]
    integ = integrity(trials)
    reasons: list[str] = []
    ran = [t for t in trials if t.valid or t.outcome == "invalid"]
    invalid_fraction = outcomes["invalid"] / len(ran) if ran else 0.0
    incomplete = False
    if outcomes["skipped"] or outcomes["missing"]:
        incomplete = True
        reasons.append(f"incomplete: {outcomes['skipped']} trials skipped (budget), {outcomes['missing']} not run")
    if invalid_fraction > spec.budget.max_invalid_fraction:
        incomplete = True
        reasons.append(f"incomplete: {outcomes['invalid']}/{len(ran)} trials invalid, above the campaign's "
                       f"max_invalid_fraction {spec.budget.max_invalid_fraction:g}")
    failed = [r for r in rules if not r["passed"]]
    if not integ["ok"]:
        exit_code, verdict = 4, "error"
        reasons = [f"integrity: {p}" for p in integ["problems"]] + reasons
    elif incomplete:
        exit_code, verdict = 3, "error"
    elif failed:
        exit_code, verdict = 1, "fail"
    else:
        exit_code, verdict = 0, "pass"
    reasons += [f"threshold failed: {r['rule']}: {r['observed']}" for r in failed]
    return Analysis(
        planned=planned if planned is not None else len(trials),
        outcomes=outcomes,
        aggregates=cells,
        comparisons=comparisons,
        thresholds=rules,
        integrity=integ,
        status="incomplete" if incomplete else "complete",
        verdict=verdict,
        exit_code=exit_code,
        reasons=reasons,
    )


