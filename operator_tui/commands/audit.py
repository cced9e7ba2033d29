"""`operator-tui audit list|verify`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from operator_tui.commands.common import print_json, print_table, run_with_store, settings_from, short_time
from operator_tui.config import read_audit_key


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    key = read_audit_key(settings)

    async def body(store: Any) -> int:
        if args.audit_command == "verify":
            ok, checked, problem = await store.verify_audit(key)
            first = await store.first_signed_event() if key is not None else None
            if args.json:
                print_json({"ok": ok, "checked": checked, "problem": problem or None, "keyed": key is not None,
                            "first_signed": first})
            elif ok:
                keyed = ""
                if key is not None and checked:
                    keyed = "; HMAC verified with the audit key" + (
                        f" (events before {first} were written without the key: the chain from {first} covers them)"
                        if first and first > 1 else "")
                elif key is None:
                    keyed = " (hash chain only: pass --audit-key-file to detect a rebuilt chain)"
                print(f"audit chain intact: {checked} events{keyed}")
            else:
                print(f"audit chain BROKEN: {problem} ({checked} events verified before it)")
            return 0 if ok else 1
        events = await store.list_audit(limit=args.limit, ref=args.ref)
        if args.json:
            print_json(events)
            return 0
        print_table(["id", "at", "actor", "kind", "ref", "data"],
                    [[e.id, short_time(e.at), e.actor, e.kind, e.ref, json.dumps(e.data, separators=(",", ":"))]
                     for e in events], max_width=80)
        return 0

    return run_with_store(settings, body)
