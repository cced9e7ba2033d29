"""`operator-tui eval run|list|show|analyze|cleanup`: single fault-injection trials and their scores.
Everything but argument handling and printing lives in `eval/`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from operator_tui.commands.common import print_json, print_table, settings_from
from operator_tui.config import CoreSettings
from operator_tui.errors import UserError

EXIT_INTEGRITY = 4
EXIT_INCOMPLETE = 3


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    command = args.eval_command
    if command == "run":
        return asyncio.run(_run(settings, args))
    return asyncio.run(_with_store(settings, args))


class ProgressLine:
    """On a terminal, one line redrawn in place; otherwise one plain line per phase."""

    def __init__(self, total: int, enabled: bool = True):
        self.total = total
        self.index = 0
        self.tty = sys.stderr.isatty()
        self.enabled = enabled
        self.started = time.monotonic()
        self.last_phase = ""

    def trial_started(self) -> None:
        self.index += 1
        self.started = time.monotonic()
        self.last_phase = ""

    def __call__(self, phase: str, detail: str) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        text = f"trial {self.index}/{self.total} [{elapsed:5.1f}s] {phase}" + (f": {detail}" if detail else "")
        if self.tty:
            sys.stderr.write("\r\033[K" + text[:150])
            sys.stderr.flush()
        elif phase != self.last_phase or phase in ("inject", "revert"):
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        self.last_phase = phase

    def done(self, line: str) -> None:
        if not self.enabled:
            return
        sys.stderr.write(("\r\033[K" if self.tty else "") + line + "\n")
        sys.stderr.flush()


def _variant(args: argparse.Namespace) -> Any:
    from eval.spec import VARIANTS

    name = "baseline" if args.baseline else (args.variant or "embedded")
    variant = VARIANTS[name]
    if name == "claude" and args.model:
        variant = variant.model_copy(update={"model": args.model})
    return variant


def _params(raw: list[str]) -> dict[str, Any]:
    from operator_tui.commands.actions import parse_params

    return parse_params(raw)


async def _run(settings: CoreSettings, args: argparse.Namespace) -> int:
    from eval.adhoc import AdhocRequest, run_adhoc, validate
    from eval.cleanup import sweep
    from eval.report import TRIAL_HEADERS, campaign_data, trial_data, trial_row
    from eval.spec import Timings
    from operator_tui.store import Store
    from subjects.plugin import PluginError

    if args.baseline and args.variant:
        raise UserError("--baseline and --variant are exclusive: the baseline is a variant of its own")
    try:
        timings = Timings(pre_window_s=args.pre_window, observe_budget_s=args.budget, hold_s=args.hold,
                          clean_checks=args.clean_checks)
    except ValueError as e:
        raise UserError(f"invalid timing: {str(e).splitlines()[1].strip() if chr(10) in str(e) else e}") from e
    subject = args.eval_subject
    artifacts = Path(args.artifacts) if args.artifacts else settings.db.parent / "eval"
    req = AdhocRequest(subject=subject, chaos=args.chaos, variant=_variant(args), trials=args.trials, seed=args.seed,
                       target=args.target, params=_params(args.param), timings=timings, slot=args.slot,
                       port_base=args.port_base, artifacts_root=artifacts)
    try:
        validate(req)
    except (ValueError, PluginError) as e:
        raise UserError(str(e)) from e
    progress = ProgressLine(args.trials)
    store = await Store.open(settings.db)
    try:
        swept = await sweep(store)
        for line in swept.actions + swept.failures:
            progress.done(f"start-up sweep: {line}")

        def on_trial(trial: Any) -> None:
            progress.done(f"trial {trial.id}: {trial.outcome}"
                          + (" (self_healed)" if (trial.metrics_json or {}).get("self_healed") else "")
                          + f" - {(trial.metrics_json or {}).get('reason', '')}")

        original = progress.__call__

        def tracking(phase: str, detail: str) -> None:
            if phase == "lab_reset":
                progress.trial_started()
            original(phase, detail)

        campaign_id, trials = await run_adhoc(store, req, tracking, on_trial)
        campaign = await store.get_campaign(campaign_id)
        assert campaign is not None
        data = await campaign_data(store, campaign)
        if args.json:
            print_json(data)
        else:
            print(f"campaign {campaign_id}: {campaign.name}")
            print_table(TRIAL_HEADERS, [trial_row(await trial_data(store, t, events=False)) for t in trials],
                        max_width=70)
            integ = data["integrity"]
            print(f"integrity: {integ['leaked_faults']} fault(s) not verified reverted, {integ['labs_left']} lab(s) "
                  f"left, audit chain {'ok' if integ['audit_chain_ok'] else 'BROKEN'}")
        integ = data["integrity"]
        if integ["leaked_faults"] or integ["labs_left"] or not integ["audit_chain_ok"]:
            return EXIT_INTEGRITY
        if integ["invalid_trials"] == len(trials):
            return EXIT_INCOMPLETE
        return 0
    finally:
        await store.close()


async def _with_store(settings: CoreSettings, args: argparse.Namespace) -> int:
    from operator_tui.commands.common import open_existing_store

    store = await open_existing_store(settings)
    try:
        if args.eval_command == "list":
            return await _list(store, args)
        if args.eval_command == "show":
            return await _show(store, args)
        if args.eval_command == "analyze":
            return await _analyze(store, args)
        return await _cleanup(store, args)
    finally:
        await store.close()


def _parse_id(raw: str) -> tuple[str, int]:
    """"12" or "t12": trial 12; "c3": campaign 3."""
    text = raw.strip().lower()
    kind = "campaign" if text.startswith("c") else "trial"
    digits = text.lstrip("ct")
    if not digits.isdigit():
        raise UserError(f"not a trial or campaign id: {raw!r} (a trial: 12 or t12; a campaign: c3)")
    return kind, int(digits)


async def _list(store: Any, args: argparse.Namespace) -> int:
    from eval.report import outcome_text

    campaigns = await store.list_campaigns(limit=args.limit)
    rows = []
    for c in campaigns:
        trials = await store.list_trials(c.id)
        counts: dict[str, int] = {}
        for t in trials:
            key = outcome_text({"outcome": t.outcome, "phase": t.phase,
                                "self_healed": (t.metrics_json or {}).get("self_healed")})
            counts[key] = counts.get(key, 0) + 1
        rows.append({"id": c.id, "name": c.name, "created_at": c.created_at, "status": c.status,
                     "trials": [t.id for t in trials], "outcomes": counts})
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no evaluations yet (operator-tui eval run --subject tikv --chaos kill_store)")
        return 0
    print_table(["campaign", "name", "started", "status", "trials", "outcomes"],
                [[f"c{r['id']}", r["name"], r["created_at"][:19], r["status"],
                  ",".join(str(i) for i in r["trials"]), ", ".join(f"{k} {v}" for k, v in r["outcomes"].items())]
                 for r in rows], max_width=70)
    return 0


async def _show(store: Any, args: argparse.Namespace) -> int:
    from eval.report import TRIAL_HEADERS, campaign_data, trial_data, trial_lines, trial_row

    kind, number = _parse_id(args.id)
    if kind == "campaign":
        campaign = await store.get_campaign(number)
        if campaign is None:
            raise UserError(f"no campaign {number}")
        data = await campaign_data(store, campaign)
        if args.json:
            print_json(data)
        else:
            print(f"campaign c{campaign.id}: {campaign.name} ({campaign.status}, seed {campaign.root_seed})")
            print_table(TRIAL_HEADERS, [trial_row(t) for t in data["trials"]], max_width=70)
        return 0
    trial = await store.get_trial(number)
    if trial is None:
        raise UserError(f"no trial {number} (campaigns: eval show c<ID>)")
    data = await trial_data(store, trial)
    if args.json:
        print_json(data)
    else:
        print("\n".join(trial_lines(data)))
    return 0


async def _analyze(store: Any, args: argparse.Namespace) -> int:
    from eval.report import trial_data
    from eval.trial import finish_scores

    kind, number = _parse_id(args.id)
    if kind == "campaign":
        if await store.get_campaign(number) is None:
            raise UserError(f"no campaign {number}")
        trials = await store.list_trials(number)
    else:
        trial = await store.get_trial(number)
        if trial is None:
            raise UserError(f"no trial {number}")
        trials = [trial]
    out = []
    for t in trials:
        if t.t_origin_mono_ns is None:
            continue
        before = (t.outcome, {k: v for k, v in (t.metrics_json or {}).items()})
        after = await finish_scores(store, t.id)
        out.append({**(await trial_data(store, after, events=False)),
                    "changed": before != (after.outcome, after.metrics_json)})
    if args.json:
        print_json(out)
    else:
        for t in out:
            m = t["metrics"]
            print(f"trial {t['id']}: {t['outcome']}{' (self_healed)' if t['self_healed'] else ''}  "
                  f"TTD {m.get('ttd_s')}s{' (censored)' if m.get('ttd_censored') else ''}  "
                  f"TTM {m.get('ttm_s')}s{' (censored)' if m.get('ttm_censored') else ''}  "
                  f"{'changed' if t['changed'] else 'unchanged'}")
    return 0


async def _cleanup(store: Any, args: argparse.Namespace) -> int:
    from eval.cleanup import sweep

    report = await sweep(store)
    if args.json:
        print_json(report.to_dict())
    elif not report.actions and not report.failures:
        print("eval cleanup: nothing to do" + (f" ({len(report.skipped_live)} trial(s) of a live harness left alone)"
                                              if report.skipped_live else ""))
    else:
        for line in report.actions:
            print(line)
        for line in report.failures:
            print(f"FAILED: {line}")
    return EXIT_INTEGRITY if report.failures else 0
