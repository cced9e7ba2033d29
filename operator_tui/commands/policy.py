"""`operator-tui killswitch on|off|status`, `mode [VALUE]`, `approval [VALUE]`."""

from __future__ import annotations

import argparse
from typing import Any

from operator_tui.commands.common import print_json, run_with_store, settings_from


def run(args: argparse.Namespace) -> int:
    from operator_tui.actions import decisions
    from operator_tui.policy import human_actor, load_policy, set_approval

    settings = settings_from(args)
    actor = human_actor()

    async def body(store: Any) -> int:
        if args.command == "killswitch":
            if args.ks_command == "on":
                cancelled = await decisions.engage_killswitch(store, actor)
                print(f"kill switch ENGAGED by {actor}: {len(cancelled)} pending actions cancelled; running ones "
                      "are stopped by the processes that run them (those whose request may already have been sent "
                      "become unknown and are reconciled with the cluster); nothing new runs until `killswitch off`")
            elif args.ks_command == "off":
                await decisions.release_killswitch(store, actor)
                print(f"kill switch released by {actor}")
            else:
                policy = await load_policy(store)
                if args.json:
                    print_json({"engaged": policy.killswitch, "by": policy.killswitch_by})
                else:
                    print(f"kill switch {'ENGAGED by ' + str(policy.killswitch_by) if policy.killswitch else 'off'}")
            return 0
        policy = await load_policy(store)
        if args.value is None:
            print(getattr(policy, args.command))
            return 0
        if args.command == "mode":
            cancelled = await decisions.change_mode(store, args.value, actor)
            extra = f"; {len(cancelled)} pending agent actions cancelled" if cancelled else ""
            print(f"mode: {policy.mode} -> {args.value}{extra}")
        else:
            await set_approval(store, args.value, actor)
            print(f"approval: {policy.approval} -> {args.value}")
        return 0

    return run_with_store(settings, body, create=True)
