"""`operator-tui actions list|show|run|approve|reject|cancel|catalogue`."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from operator_tui.commands.common import print_json, print_table, run_with_store, settings_from, short_time
from operator_tui.config import CoreSettings
from operator_tui.errors import UserError

UNKNOWN_WAIT_S = 30.0  # an action interrupted after sending is given this long to be reconciled


def parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param expects K=V, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    cmd = args.actions_command
    if cmd in ("run", "catalogue"):
        return asyncio.run(_with_engine(settings, args))
    from operator_tui.actions import decisions
    from operator_tui.policy import human_actor

    async def body(store: Any) -> int:
        if cmd == "list":
            return await _list(store, args)
        if cmd == "show":
            return await _show(store, args)
        actor = human_actor()
        if cmd == "approve":
            a = await decisions.approve(store, args.action_id, actor)
            run = await store.get_run(a.run_id) if a.run_id is not None else None
            who = f"run {run.id} ({run.kind}, pid {run.pid} on {run.host})" if run else "its run"
            print(f"approved action {a.id} ({a.name}) on {a.cluster or 'its cluster'}; {who} runs it "
                  + (f"at {short_time(a.not_before)}" if a.not_before else "now"))
        elif cmd == "reject":
            a = await decisions.reject(store, args.action_id, actor, args.reason)
            print(f"rejected action {a.id} ({a.name})")
        else:
            print(f"action {args.action_id}: {await decisions.cancel(store, args.action_id, actor, args.reason)}")
        return 0

    return run_with_store(settings, body)


async def _list(store: Any, args: argparse.Namespace) -> int:
    actions = await store.list_actions(states=args.state, ticket_id=args.ticket, limit=args.limit)
    if args.json:
        print_json(actions)
        return 0
    if not actions:
        print("no actions")
        return 0
    print_table(["id", "state", "name", "params", "risk", "ticket", "by", "updated", "reason"],
                [[a.id, a.state, a.name, json.dumps(a.params, separators=(",", ":")), a.risk, a.ticket_id,
                  a.requested_by, short_time(a.updated_at), a.reason] for a in actions])
    return 0


async def _show(store: Any, args: argparse.Namespace) -> int:
    action = await store.get_action(args.action_id)
    if action is None:
        raise UserError(f"no action {args.action_id}")
    transitions = await store.action_transitions(action.id)
    if args.json:
        print_json({**action.model_dump(mode="json"), "transitions": transitions})
        return 0
    print(f"action #{action.id} {action.name} {json.dumps(action.params)}  [{action.risk}]  -> {action.state}")
    print(f"  target {action.target}  requested by {action.requested_by}  ticket {action.ticket_id or '-'}")
    print(f"  would send: {action.preview}")
    if action.result:
        print(f"  result: {action.result.get('detail', '')}")
    if action.error:
        print(f"  error: {action.error}")
    for t in transitions:
        print(f"  {t.at.isoformat()}  {t.from_state or '-':>17} -> {t.to_state:<17} {t.actor}  {t.reason}")
    return 0


async def _with_engine(settings: CoreSettings, args: argparse.Namespace) -> int:
    from operator_tui.actions.engine import ActionEngine, ActionRequestError
    from operator_tui.actions.states import ActionState
    from operator_tui.policy import human_actor
    from operator_tui.runtime import Runtime
    from subjects.base import ActionRequest

    runtime = await Runtime.open(settings, "cli")
    status = "completed"
    try:
        engine = ActionEngine(runtime.store, runtime.subject, runtime.run_id, settings.actions)
        if args.actions_command == "catalogue":
            catalogue = engine.describe()
            if args.json:
                print_json(catalogue)
            else:
                print_table(["name", "risk", "idempotent", "parameters", "description"],
                            [[c["name"], c["risk"], c["idempotent"], ", ".join(c["parameters"].get("properties", {})),
                              c["description"]] for c in catalogue], max_width=70)
            return 0
        request = ActionRequest(name=args.name, params=parse_params(args.param), delay_s=args.delay,
                                reason="run by hand")
        actor = human_actor()
        try:
            if args.dry_run:
                dry = await engine.dry_run(request, actor)
                print(f"dry run: {dry.name} {json.dumps(dry.params)}  [{dry.risk}]")
                print(f"  would send: {dry.preview}")
                print(f"  precheck: {'ok' if not dry.problems else '; '.join(dry.problems)}")
                print(f"  approval: {'a human must approve it' if dry.needs_approval else 'not required'}")
                if dry.blocked:
                    print(f"  blocked: {dry.blocked}")
                return 0 if not dry.problems and not dry.blocked else 1
            from operator_tui.policy import load_policy

            policy = await load_policy(runtime.store)
            if policy.killswitch:
                await runtime.store.audit(actor, "action.refused", "", {"name": args.name,
                                                                        "why": "kill switch engaged"}, runtime.run_id)
                raise UserError(f"the kill switch is engaged (by {policy.killswitch_by}): no action runs until "
                                "`operator-tui killswitch off`")
            records = await engine.submit([request], actor=actor, ticket_id=args.ticket)
        except ActionRequestError as e:
            raise UserError("cannot run that action:\n  " + "\n  ".join(e.problems)) from e
        action_id = records[0].id
        if records[0].not_before is not None and not args.json:
            print(f"action {action_id} ({records[0].name}) runs at {short_time(records[0].not_before)} "
                  f"({args.delay:g} s from now)", flush=True)
        announced = False
        unknown_since: float | None = None
        while True:
            record = (await engine.wait_for([action_id], timeout=0.5))[0]
            if record.state == ActionState.awaiting_approval and not announced:
                print(f"action {action_id} ({record.name}) awaits approval: `operator-tui actions approve "
                      f"{action_id}` or `reject {action_id}` (expires {short_time(record.expires_at)})", flush=True)
                announced = True
            if ActionState(record.state) in (ActionState.succeeded, ActionState.failed, ActionState.rejected,
                                              ActionState.cancelled, ActionState.expired):
                break
            if record.state == ActionState.unknown:
                # Being reconciled: give it the time to; if it cannot tell, say so rather than wait forever.
                unknown_since = unknown_since or asyncio.get_running_loop().time()
                if asyncio.get_running_loop().time() - unknown_since > UNKNOWN_WAIT_S:
                    break
        if args.json:
            print_json(record)
        elif record.state == "succeeded":
            print(f"action {record.id} {record.name} succeeded: {record.reason}")
        elif record.state == "unknown":
            print(f"action {record.id} {record.name} unknown: {record.reason}; whether it took effect cannot be told "
                  f"yet: it is not re-run; see `operator-tui actions show {record.id}`")
        else:
            print(f"action {record.id} {record.name} {record.state}: {record.reason}")
        return 0 if record.state == "succeeded" else 1
    except BaseException:
        status = "crashed"
        raise
    finally:
        await runtime.close(status)
