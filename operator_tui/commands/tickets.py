"""`operator-tui tickets list|show`."""

from __future__ import annotations

import argparse
from typing import Any

from operator_tui.commands.common import print_json, print_table, run_with_store, settings_from, short_time
from operator_tui.errors import UserError


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.tickets_command == "list":
        return run_with_store(settings, lambda store: _list(store, args))
    return run_with_store(settings, lambda store: _show(store, args))


async def _list(store: Any, args: argparse.Namespace) -> int:
    run_id = None
    if args.run:
        if args.run == "latest":
            run_id = await store.latest_run_id()
        elif args.run.isdigit():
            run_id = int(args.run)
        else:
            raise UserError("--run takes a run id or 'latest'")
    statuses = ["open", "investigating", "escalated"] if args.status == "active" else (
        [args.status] if args.status else None)
    tickets = await store.list_tickets(run_id=run_id, statuses=statuses, limit=args.limit)
    if args.json:
        print_json(tickets)
        return 0
    if not tickets:
        print("no tickets")
        return 0
    print_table(
        ["id", "run", "status", "severity", "invariant", "entity", "opened", "seen", "summary"],
        [[t.id, t.run_id, t.status, t.severity, t.invariant, t.entity, short_time(t.opened_at), t.occurrences,
          t.summary] for t in tickets],
    )
    return 0


async def ticket_detail(store: Any, ticket_id: int) -> dict[str, Any]:
    ticket = await store.get_ticket(ticket_id)
    if ticket is None:
        raise UserError(f"no ticket {ticket_id} in {store.path}")
    events = await store.ticket_events(ticket_id)
    sessions = await store.sessions_for_ticket(ticket_id)
    actions = await store.list_actions(ticket_id=ticket_id)
    diagnosed = [s for s in sessions if s.diagnosis]
    verified = [s for s in sessions if s.verification]
    incident = await store.incident(ticket_id)
    return {
        **ticket.model_dump(mode="json"),
        "timeline": [e.model_dump(mode="json") for e in events],
        "diagnosis": diagnosed[-1].diagnosis if diagnosed else None,
        "verification": verified[-1].verification if verified else None,
        "sessions": [s.model_dump(mode="json") for s in sessions],
        "actions": [a.model_dump(mode="json") for a in reversed(actions)],
        "incident": incident.model_dump(mode="json") if incident is not None else None,
    }


async def _show(store: Any, args: argparse.Namespace) -> int:
    detail = await ticket_detail(store, args.ticket_id)
    if args.json:
        print_json(detail)
        return 0
    print(f"ticket #{detail['id']}  {detail['status']}  [{detail['severity']}]  {detail['invariant']} on "
          f"{detail['entity']}  (run {detail['run_id']}, seen {detail['occurrences']}x)")
    print(f"  {detail['summary']}")
    print(f"  opened {detail['opened_at']}  last seen {detail['last_seen_at']}  resolved {detail['resolved_at'] or '-'}")
    if detail["diagnosis"]:
        d = detail["diagnosis"]
        print(f"\ndiagnosis ({d.get('confidence', 0):.0%} confident): {d.get('summary', '')}")
        print(f"  root cause: {d.get('root_cause', '')}")
        for alt in d.get("alternatives", []):
            print(f"  - {alt.get('cause')}: {alt.get('verdict')}")
    if detail["actions"]:
        print("\nactions:")
        for a in detail["actions"]:
            print(f"  #{a['id']} {a['name']} {a['params']} -> {a['state']} {a['reason'] or ''}".rstrip())
    print("\ntimeline (the ticket, its actions, the agent's verifications and the faults active meanwhile):")
    for e in detail["incident"]["events"]:
        what = f"{e['source']} {e['kind']}" if e["source"] != "action" else f"{e['ref']} {e['kind']}"
        summary = f"  {e['summary']}" if e["summary"] else ""
        print(f"  {e['at']}  {what:<28} {e['actor']:<14}{summary}".rstrip())
    return 0
