"""The campaign as a Markdown summary (a CI job's summary page, `eval report --markdown`).

`markdown(report)` takes the JSON report (`eval/report_json.py`), so whatever holds a report (the
harness at the end of a run, the store read back later, the eval browser) renders the same text.
Every estimate is printed with n, its interval and its method. With `timelines` (trial id ->
lines, `eval.report.failing_timelines`), each failing trial follows with its timeline as text.
"""

from __future__ import annotations

from typing import Any

NONE = "\u2013"  # en dash: no value
VERDICT = {0: "PASS", 1: "FAIL (a threshold failed)", 2: "spec or usage error", 3: "INCOMPLETE",
           4: "INTEGRITY FAILURE"}


def _n(x: float | None, digits: int = 1, unit: str = "") -> str:
    if x is None:
        return NONE
    text = f"{x:.{digits}f}"
    return text.replace("-", "\u2212") + unit


def _rate(r: dict[str, Any] | None) -> str:
    if not r or not r.get("n"):
        return NONE
    lo, hi = r["ci95"]
    return f"{r['k']}/{r['n']} = {r['rate']:.2f} [{lo:.2f}, {hi:.2f}]"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _failing(report: dict[str, Any], timelines: dict[int, list[str]]) -> list[str]:
    from eval.report import failing

    trials = [t for t in report["trials"] if failing(t)]
    if not trials:
        return []
    lines = ["## Failing trials", "",
             "Agent trials that did not mitigate or did harm, and invalid trials, each with its timeline "
             "(seconds since the trial's origin).", ""]
    for t in trials:
        m = t.get("metrics") or {}
        why = m.get("reason") or (t.get("error") or {}).get("reason") or (t.get("error") or {}).get("message") or ""
        lines += [f"### Trial {t.get('trial_id')}: `{t['scenario']}` / `{t['variant']}`, seed {t['seed_index']} "
                  f"rep {t['repeat']}: **{t['outcome']}**", ""]
        if why:
            lines += [f"> {_cell(why)}", ""]
        body = timelines.get(t.get("trial_id")) if t.get("trial_id") is not None else None
        if body:
            lines += ["```", *body, "```", ""]
    return lines


def markdown(report: dict[str, Any], timelines: dict[int, list[str]] | None = None) -> str:
    c = report["campaign"]
    counts = report["counts"]
    lines = [f"# Evaluation campaign `{c['name']}`: {VERDICT.get(report['exit_code'], report['verdict'])}", ""]
    ran = ", ".join(f"{counts[k]} {k}" for k in ("success", "failure", "timeout", "harmful", "invalid", "skipped",
                                                   "missing") if counts.get(k))
    lines += [
        f"- campaign {c.get('id')}, spec `{c['spec_sha256'][:12]}`, seed {c['seed']}, "
        f"{c['seeds']} seeds x {c['repeats']} repeats, parallel {c['parallel']}"
        + (f", merged from {len(c['shards'])} shards" if c.get("shards") else ""),
        f"- {counts['planned']} trials planned: {ran or 'none run'}"
        + (f"; wall time {_n(c.get('wall_s'), 0, ' s')}" if c.get("wall_s") is not None else ""),
        f"- git {(c.get('git_rev') or '?')[:12]}{' (dirty)' if c.get('git_dirty') else ''}, status {report['status']}, "
        f"exit code {report['exit_code']}",
        "",
    ]
    for reason in report.get("reasons") or []:
        lines.append(f"> {reason}")
    if report.get("reasons"):
        lines.append("")

    if report["thresholds"]:
        lines += ["## Thresholds", ""]
        lines += _table(["", "rule", "observed"], [
            ["pass" if r["passed"] else "**FAIL**", f"`{r['rule']}`", r["observed"]] for r in report["thresholds"]])
        lines.append("")

    faulted = [a for a in report["aggregates"] if not a["control"]]
    if faulted:
        lines += ["## Results", "",
                  "Success: k/n of valid trials with a Wilson 95% interval. TTM: Kaplan-Meier median and the "
                  "restricted mean (min(TTM, budget)) with a seeded bootstrap 95% interval. TTD over detected "
                  "trials.", ""]
        rows = []
        for a in faulted:
            ttm = a.get("ttm") or {}
            ci = ttm.get("rmst_ci95") or [None, None]
            o = a["outcomes"]
            other = ", ".join(f"{o[k]} {k}" for k in ("failure", "timeout", "harmful", "invalid", "skipped", "missing")
                              if o.get(k))
            rows.append([
                a["scenario"], a["variant"], _rate(a.get("success")),
                _n(ttm.get("median"), 1, " s") if ttm else NONE,
                f"{_n(ttm.get('rmst'), 1)} [{_n(ci[0], 1)}, {_n(ci[1], 1)}] s" if ttm.get("rmst") is not None else NONE,
                f"{_n((a.get('ttd') or {}).get('median'), 2, ' s')} ({(a.get('ttd') or {}).get('k', 0)}/"
                f"{(a.get('ttd') or {}).get('n', 0)})",
                a["harmful"]["k"], other or NONE,
            ])
        lines += _table(["scenario", "variant", "success [Wilson 95%]", "median TTM", "RMST [95% CI]",
                         "TTD median (detected)", "harmful", "other outcomes"], rows)
        lines.append("")

    controls = [a for a in report["aggregates"] if a["control"]]
    if controls:
        lines += ["## No-fault controls", ""]
        lines += _table(["scenario", "variant", "valid trials", "false tickets", "unnecessary actions"], [
            [a["scenario"], a["variant"], a["valid"], a.get("false_tickets", 0), a.get("unnecessary_actions", 0)]
            for a in controls])
        lines.append("")

    if report["comparisons"]:
        lines += ["## Paired comparisons (A - B)", "",
                  "Pairs share scenario, seed and repeat; only pairs where both trials are valid count. "
                  "A claim needs the 95% interval to exclude 0, at least 6 pairs, no more harmful trials, and "
                  "(per scenario) a Holm-adjusted p below 0.05.", ""]
        lines += _table(["scope", "A vs B", "metric", "estimate", "decision"], [
            [x["scenario"] or "all scenarios", f"{x['a']} vs {x['b']}", x["metric"], x["text"], x["decision_text"]]
            for x in report["comparisons"]])
        lines.append("")

    if timelines is not None:
        lines += _failing(report, timelines)

    integ = report["integrity"]
    lines += ["## Integrity", ""]
    if integ["ok"]:
        lines.append(f"Every fault reverted and verified; audit chains intact; kill switch held; "
                     f"{integ['invalid_trials']} invalid trials.")
    else:
        lines += [f"- {p}" for p in integ["problems"]]
    lines.append("")
    return "\n".join(lines)
