"""`operator-tui --eval FILE` and `operator-tui eval campaign|resume|compare|compare-baseline|
compare-variants|merge|report`.

Exit codes of the commands that judge a campaign: 0 all thresholds pass, 1 a threshold failed,
2 spec or usage error, 3 incomplete (budget, too many invalid trials, interrupted), 4 integrity
failure (a fault left behind or not verified reverted, a broken audit chain, a kill switch that
did not hold).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from operator_tui.commands.common import print_json, print_table, settings_from
from operator_tui.errors import UserError


def run(args: argparse.Namespace) -> int:
    from eval.campaign_spec import SpecError

    try:
        if getattr(args, "eval_file", None) is not None:
            return _campaign(args, args.eval_file, json_stdout=False)
        command = args.eval_command
        if command == "campaign":
            return _campaign(args, args.file, json_stdout=args.json)
        if command == "resume":
            return _resume(args)
        if command in ("compare-baseline", "compare-variants"):
            return _compare_within(args, "baseline" if command == "compare-baseline" else "variants")
        if command == "compare":
            return _compare_campaigns(args)
        if command == "merge":
            return _merge(args)
        if command == "report":
            return _report(args)
    except SpecError as e:
        raise UserError(str(e)) from None
    raise UserError(f"unknown eval command {args.eval_command!r}")


def _shard(args: argparse.Namespace) -> tuple[int, int]:
    from eval.campaign_plan import parse_shard

    if not getattr(args, "shard", None):
        return (1, 1)
    try:
        return parse_shard(args.shard)
    except ValueError as e:
        raise UserError(str(e)) from None


def _check_parallel(args: argparse.Namespace) -> int | None:
    p = getattr(args, "parallel", None)
    if p is not None and not 1 <= p <= 64:
        raise UserError(f"--parallel must be between 1 and 64, got {p}")
    return p


def _check_outputs(args: argparse.Namespace) -> None:
    for flag, path in (("--junit", args.junit), ("--json", args.json_path), ("--markdown", args.markdown)):
        if path is None:
            continue
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise UserError(f"{flag} {path}: no such folder {parent}")


def write_reports(outcome: Any, args: argparse.Namespace, summary: str | None = None) -> list[str]:
    from eval.report_json import dumps
    from eval.report_junit import junit_xml

    written = []
    if args.json_path:
        Path(args.json_path).write_text(dumps(outcome.report))
        written.append(f"JSON report: {args.json_path}")
    if args.junit:
        Path(args.junit).write_text(junit_xml(outcome.campaign, outcome.record, outcome.trials, outcome.analysis))
        written.append(f"JUnit report: {args.junit}")
    if args.markdown:
        Path(args.markdown).write_text(summary if summary is not None else markdown_summary(outcome, args))
        written.append(f"Markdown summary: {args.markdown}")
    return written


def markdown_summary(outcome: Any, args: argparse.Namespace) -> str:
    """The Markdown summary, with the failing trials' timelines read from the campaign's store."""
    from eval.report import failing_timelines
    from eval.report_markdown import markdown
    from operator_tui.commands.common import run_with_store

    timelines = run_with_store(settings_from(args), lambda store: failing_timelines(store, outcome.report))
    return markdown(outcome.report, timelines)


def _finish(outcome: Any, args: argparse.Namespace, json_stdout: bool) -> int:
    summary = None if json_stdout else markdown_summary(outcome, args)
    written = write_reports(outcome, args, summary)
    if json_stdout:
        print_json(outcome.report)
    else:
        print(summary)
        for line in written:
            print(line)
        print(f"campaign {outcome.campaign_id}: {outcome.analysis.verdict}, exit code {outcome.exit_code}")
    return outcome.exit_code


def _campaign(args: argparse.Namespace, file: str, *, json_stdout: bool) -> int:
    from eval.campaign_plan import plan_campaign
    from eval.campaign_run import run_campaign
    from eval.campaign_spec import load_campaign

    settings = settings_from(args)
    parallel = _check_parallel(args)
    shard = _shard(args)
    _check_outputs(args)
    campaign = load_campaign(file)
    if getattr(args, "plan", False):
        plan = plan_campaign(campaign, parallel=parallel, shard=shard, allow_over_budget=args.allow_over_budget)
        if json_stdout:
            print_json({"summary": plan.summary(), "worst_case_wall_s": plan.worst_case_wall_s,
                        "warnings": plan.warnings, "trials": [t.__dict__ | {"key": t.key} for t in plan.mine]})
        else:
            print(plan.summary())
            for w in plan.warnings:
                print(f"note: {w}")
        return 0
    settings.db.parent.mkdir(parents=True, exist_ok=True)
    outcome = asyncio.run(run_campaign(campaign, db=settings.db, parallel=parallel, shard=shard,
                                       allow_over_budget=args.allow_over_budget, progress_stream=sys.stderr))
    return _finish(outcome, args, json_stdout)


def _resume(args: argparse.Namespace) -> int:
    from eval.campaign_run import resume_campaign

    settings = settings_from(args)
    _check_outputs(args)
    if not settings.db.exists():
        raise UserError(f"no store at {settings.db} (pass --db)")
    outcome = asyncio.run(resume_campaign(args.campaign_id, db=settings.db, parallel=_check_parallel(args),
                                          allow_over_budget=args.allow_over_budget, progress_stream=sys.stderr))
    return _finish(outcome, args, args.json)


async def _load(store: Any, campaign_id: int) -> tuple[Any, Any, list[Any]]:
    from eval.campaign_store import load_results

    return await load_results(store, campaign_id)


def _print_comparisons(rows: list[dict[str, Any]]) -> None:
    print_table(["scope", "A vs B", "metric", "n", "estimate [95% CI], method, test", "decision"], [
        [c["scenario"] or "all", f"{c['a']} vs {c['b']}", c["metric"], c["n_pairs"], c["text"], c["decision_text"]]
        for c in rows], max_width=120)
    dropped = sorted({k for c in rows for k in c["dropped_pairs"]})
    if dropped:
        print(f"pairs left out (a trial invalid or not run): {', '.join(dropped)}")


def _compare_within(args: argparse.Namespace, kind: str) -> int:
    from eval.campaign_analysis import compare, comparison_pairs
    from operator_tui.commands.common import run_with_store

    settings = settings_from(args)

    async def body(store: Any) -> list[dict[str, Any]]:
        campaign, _, trials = await _load(store, args.campaign_id)
        pairs = comparison_pairs(campaign, kind)
        if not pairs:
            what = "a baseline and an agent variant" if kind == "baseline" else "two agent variants"
            raise UserError(f"campaign {args.campaign_id} has no {what} to compare")
        rows: list[dict[str, Any]] = []
        for a, b in pairs:
            rows += await asyncio.to_thread(compare, campaign, trials, a, b)
        return rows

    rows = run_with_store(settings, body)
    if args.json:
        print_json({"campaign_id": args.campaign_id, "comparisons": rows})
    else:
        _print_comparisons(rows)
    return 0


def _compare_campaigns(args: argparse.Namespace) -> int:
    from eval.campaign_compare import compare_campaigns, parse_side
    from operator_tui.commands.common import run_with_store

    settings = settings_from(args)
    try:
        a, b = parse_side(args.a), parse_side(args.b)
    except ValueError as e:
        raise UserError(str(e)) from None

    async def body(store: Any) -> dict[str, Any]:
        left = await _load(store, a[0])
        right = await _load(store, b[0])
        return await asyncio.to_thread(compare_campaigns, left, right, a[1], b[1])

    try:
        out = run_with_store(settings, body)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.json:
        print_json(out)
    else:
        for note in out["notes"]:
            print(f"note: {note}")
        _print_comparisons(out["comparisons"])
    return 0


def _merge(args: argparse.Namespace) -> int:
    from eval.campaign_merge import merge_stores

    settings = settings_from(args)
    sources = [Path(s) for s in args.stores]
    for s in sources:
        if not s.exists():
            raise UserError(f"no store at {s}")
        if s.resolve() == settings.db.resolve():
            raise UserError(f"{s} is the target store (--db); merge other stores into it")
    settings.db.parent.mkdir(parents=True, exist_ok=True)
    try:
        merged = asyncio.run(merge_stores(settings.db, sources))
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.json:
        print_json(merged)
    else:
        for c in merged["campaigns"]:
            print(f"campaign {c['campaign_id']} ({c['name']}, spec {c['spec_sha256'][:12]}): {c['trials']} trials "
                  f"from {len(c['sources'])} stores; {c['missing']} still missing")
    return 0


def _report(args: argparse.Namespace) -> int:
    from eval.campaign_analysis import analyse
    from eval.campaign_run import CampaignOutcome
    from eval.report_json import report
    from operator_tui.commands.common import run_with_store

    settings = settings_from(args)
    _check_outputs(args)

    async def body(store: Any) -> CampaignOutcome:
        campaign, record, trials = await _load(store, args.campaign_id)
        analysis = await asyncio.to_thread(analyse, campaign, trials, planned=len(trials))
        return CampaignOutcome(args.campaign_id, campaign, record, trials, analysis,
                               report(campaign, record, trials, analysis))

    outcome = run_with_store(settings, body)
    return _finish(outcome, args, args.json)
