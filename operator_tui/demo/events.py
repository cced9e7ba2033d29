"""What a demo chapter waits for, looked up in the store (and in the latest observation): a ticket
opened, a diagnosis recorded, an action awaiting approval or executed, the ticket resolved.

`check` answers with what happened (when, what, the lines worth showing) or None while it has
not. It only reads: the monitor and the agent write; the demo watches, as a person would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from operator_tui.store import Store
from scenarios.demo import Wait
from subjects.base import Observation, Ticket

ENDED = ("resolved", "escalated")


@dataclass(frozen=True)
class Happened:
    at: datetime
    summary: str
    detail: tuple[str, ...] = ()
    ticket_id: int | None = None
    ok: bool = True  # False: it ended another way (escalated rather than resolved, say)


def _params(params: dict[str, Any] | None) -> str:
    return " ".join(f"{k}={v}" for k, v in (params or {}).items())


def _percent(value: Any) -> str:
    return f"{float(value) * 100:.0f}%" if isinstance(value, int | float) else "-"


async def incident_ticket(store: Store, run_id: int, since: datetime, ticket_id: int | None,
                          invariant: str | None = None) -> Ticket | None:
    """The ticket the demo follows: the one it already knows, else the first opened in this run
    since `since` (for `invariant`, when given)."""
    if ticket_id is not None:
        return await store.get_ticket(ticket_id)
    tickets = await store.list_tickets(run_id=run_id, limit=200)
    for t in sorted(tickets, key=lambda t: t.id):
        if t.opened_at >= since and (invariant is None or t.invariant == invariant):
            return t
    return None


def _ended_otherwise(ticket: Ticket) -> Happened | None:
    if ticket.status != "escalated":
        return None
    why = (ticket.resolution or {}).get("reason", "")
    return Happened(ticket.resolved_at or ticket.last_seen_at, f"ticket #{ticket.id} was escalated to a human",
                    (why,) if why else (), ticket.id, ok=False)


async def check(wait: Wait, store: Store, run_id: int, since: datetime, ticket_id: int | None,
                observation: Observation | None) -> Happened | None:
    event = wait.event
    if event == "cluster_healthy":
        obs = observation
        if obs is None or not obs.reachable or not obs.nodes or any(n.state != "up" for n in obs.nodes):
            return None
        kinds: dict[str, int] = {}
        for n in obs.nodes:
            kinds[n.kind] = kinds.get(n.kind, 0) + 1
        return Happened(obs.at, "all up: " + ", ".join(f"{count} {kind}{'s' if count > 1 else ''}"
                                                       for kind, count in kinds.items()))
    if event == "traffic_seen":
        obs = observation
        w = obs.workload if obs is not None and obs.reachable else None
        if w is None or not w.qps:
            return None
        parts = [f"{w.qps:.0f} requests/s"]
        if w.p99_ms is not None:
            parts.append(f"p99 {w.p99_ms:.1f} ms")
        if w.error_rate is not None:
            parts.append(f"errors {w.error_rate * 100:.1f}%")
        return Happened(obs.at, ", ".join(parts))

    ticket = await incident_ticket(store, run_id, since, ticket_id,
                                   wait.invariant if event == "ticket_opened" else None)
    if ticket is None:
        return None
    if event == "ticket_opened":
        return Happened(ticket.opened_at, f"ticket #{ticket.id} {ticket.invariant} on {ticket.entity}",
                        (ticket.summary, f"severity {ticket.severity}, opened by the monitor"), ticket.id)
    if event == "diagnosis_recorded":
        return await _diagnosis(store, ticket)
    if event in ("action_awaiting_approval", "action_executed"):
        return await _action(store, ticket, event)
    if ticket.status == "resolved":
        v = (ticket.resolution or {}).get("verification") or {}
        by = (ticket.resolution or {}).get("by", "?")
        lines = [f"resolved by {by}: {(ticket.resolution or {}).get('reason', '')}"]
        if v.get("observe_ms") is not None:
            lines.append(f"verified on a fresh observation ({v['observe_ms']:.0f} ms)")
        return Happened(ticket.resolved_at or ticket.last_seen_at, f"ticket #{ticket.id} resolved", tuple(lines),
                        ticket.id)
    return _ended_otherwise(ticket)


async def _diagnosis(store: Store, ticket: Ticket) -> Happened | None:
    sessions = [s for s in await store.sessions_for_ticket(ticket.id) if s.diagnosis]
    if not sessions:
        return _ended_otherwise(ticket)
    s = sessions[0]
    d = s.diagnosis or {}
    at = next((e.at for e in await store.ticket_events(ticket.id) if e.kind == "diagnosed"), s.started_at)
    lines = [f"{s.diagnoser} diagnoser, {_percent(d.get('confidence'))} confident: {d.get('summary', '')}"]
    for alt in d.get("alternatives") or []:
        verdict = str(alt.get("verdict", ""))
        mark = "✔" if verdict == "chosen" else "✘"
        lines.append(f"{mark} {alt.get('cause', '')}" + ("" if verdict == "chosen" else f": {verdict}"))
    for a in d.get("recommended_actions") or []:
        lines.append(f"→ {a.get('name')} {_params(a.get('params'))}".rstrip())
    return Happened(at, str(d.get("root_cause", "")), tuple(lines), ticket.id)


async def _action(store: Store, ticket: Ticket, event: str) -> Happened | None:
    actions = sorted(await store.list_actions(ticket_id=ticket.id), key=lambda a: a.id)
    for a in actions:
        transitions = await store.action_transitions(a.id)
        if event == "action_awaiting_approval":
            waited = next((t for t in transitions if t.to_state == "awaiting_approval"), None)
            if waited is not None:
                now = f"now {a.state.replace('_', ' ')}" + (f" by {a.decided_by}" if a.decided_by else "")
                return Happened(waited.at, f"#{a.id} {a.name} {_params(a.params)} awaits approval".replace("  ", " "),
                                (f"risk {a.risk}: {waited.reason}", now), ticket.id)
        elif a.state == "succeeded":
            done = next((t for t in reversed(transitions) if t.to_state == "succeeded"), None)
            detail = (a.result or {}).get("detail") or a.reason
            approved = next((t for t in transitions if t.to_state == "approved"), None)
            lines = [f"risk {a.risk}, " + (f"approved by {approved.actor}" if approved else "no approval needed")]
            if detail:
                lines.append(str(detail))
            return Happened(done.at if done else a.updated_at,
                            f"#{a.id} {a.name} {_params(a.params)} succeeded".replace("  ", " "), tuple(lines),
                            ticket.id)
    if ticket.status in ENDED:
        tried = ", ".join(f"#{a.id} {a.name}: {a.state}" for a in actions) or "no action"
        return Happened(ticket.resolved_at or ticket.last_seen_at,
                        f"ticket #{ticket.id} {ticket.status} with {tried}",
                        ((ticket.resolution or {}).get("reason", ""),), ticket.id, ok=False)
    return None
