"""`operator-tui lab up|down|status SUBJECT`: local clusters, each run by its subject's plugin."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from operator_tui.commands.common import print_json
from operator_tui.errors import UserError


def run(args: argparse.Namespace) -> int:
    from operator_tui.config import load_settings
    from subjects import registry
    from subjects.plugin import load

    plugin = registry.plugin(args.lab_subject)
    if plugin.lab is None:
        raise UserError(f"{plugin.name} has no local lab")
    run_dir = load_settings(args).lab_folder(plugin.name)
    lab = load(plugin.lab)
    if args.lab_command == "up":
        own = {flag.key for flag in plugin.lab_flags}
        options = {}
        for name, value in vars(args).items():
            if not name.startswith("lab__") or value is None or value is False:
                continue
            key = name[len("lab__"):]
            if key not in own:
                option = "--" + key.replace("_", "-")
                users = [p.name for p in registry.plugins() if key in {f.key for f in p.lab_flags}]
                raise UserError(f"{option} is a {' and '.join(users)} lab option; the {plugin.name} lab does not "
                                "use it")
            options[key] = value
        report = lab.up(run_dir, options)
        lines = [*report.lines, f"stop it with: operator-tui lab down {plugin.name}" + _dir_flag(args)]
    elif args.lab_command == "down":
        db = load_settings(args).db
        # no store holds a fault (and none is created)
        lines = asyncio.run(_down(db, plugin.name, lab, run_dir)) if db.exists() else lab.down(run_dir).lines
    else:
        report = lab.status(run_dir)
        if args.json:
            print_json(report.data)
            return 0
        lines = report.lines
    for line in lines:
        print(line)
    return 0


async def _down(db: Path, subject: str, lab: Any, run_dir: Path) -> list[str]:
    """Take the lab down; the faults injected into it end with it, or `chaos list` would show
    them active forever (and nothing is left to revert)."""
    from operator_tui.chaos import faults_of_lab
    from operator_tui.policy import human_actor
    from operator_tui.store import Store

    store = await Store.open(db)
    try:
        ending = faults_of_lab(await store.list_faults(active_only=True, subject=subject), subject, run_dir)
        lines = lab.down(run_dir).lines
        for row in ending:
            await store.mark_fault_ended(row.id, "its lab went down", human_actor())
            lines.append(f"fault {row.id} ({row.kind}" + (f" on {row.target}" if row.target else "")
                         + ") ended with the lab")
        return lines
    finally:
        await store.close()


def _dir_flag(args: argparse.Namespace) -> str:
    given = getattr(args, "lab_dir", None)
    return f" --lab-dir {given}" if given else ""
