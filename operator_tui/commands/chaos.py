"""`operator-tui chaos inject|revert|list|kinds`."""

from __future__ import annotations

import argparse
import asyncio

from operator_tui.commands.actions import parse_params
from operator_tui.commands.common import print_json, print_table, settings_from, short_time
from operator_tui.config import CoreSettings
from operator_tui.errors import UserError


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    return asyncio.run(_run(settings, args))


async def _run(settings: CoreSettings, args: argparse.Namespace) -> int:
    from operator_tui.chaos import ChaosRefused, inject_fault, revert_faults
    from operator_tui.policy import human_actor
    from operator_tui.runtime import chaos_options
    from operator_tui.store import Store
    from subjects import registry

    if args.chaos_command == "kinds":
        print_table(["kind", "what it does"], sorted(registry.chaos(settings.subject).kinds().items()), max_width=90)
        return 0
    actor = human_actor()
    store = await Store.open(settings.db)
    try:
        if args.chaos_command == "inject":
            try:
                row = await inject_fault(store, settings.subject, chaos_options(settings, settings.subject), args.kind,
                                         args.target, parse_params(args.param), actor)
            except ChaosRefused as e:
                raise UserError(str(e)) from e
            if args.json:
                print_json(row)
            else:
                print(f"fault {row.id} injected: {row.record.get('detail') or row.kind} "
                      f"(undo: `operator-tui chaos revert {row.id}`)")
            return 0
        if args.chaos_command == "list":
            rows = await store.list_faults(active_only=args.active)
            if args.json:
                print_json(rows)
            elif not rows:
                print("no active faults" if args.active else "no faults")
            else:
                print_table(["id", "status", "subject", "kind", "target", "injected", "reverted", "detail"],
                            [[r.id, r.status, r.subject, r.kind, r.target, short_time(r.injected_at),
                              short_time(r.reverted_at), r.revert_detail or r.record.get("detail", "")] for r in rows])
            return 0
        if args.all == (args.fault_id is not None):
            raise UserError("chaos revert takes a fault ID or --all")
        if args.all:
            rows = await store.list_faults(active_only=True)
            if not rows:
                print("no active faults")
        else:
            row = await store.get_fault(args.fault_id)
            if row is None:
                raise UserError(f"no fault {args.fault_id}")
            rows = [row]
        results = await revert_faults(store, rows, lambda subject: chaos_options(settings, subject), actor)
        for row, ok, detail in results:
            print(f"fault {row.id}: {detail}" if ok else f"fault {row.id}: could NOT revert: {detail}")
        return 0 if all(ok for _, ok, _ in results) else 1
    finally:
        await store.close()
