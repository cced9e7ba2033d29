"""One incident read whole: a ticket's history, its actions with every transition, the agent's
verifications and the faults that were active meanwhile, in time order.

What the ticket detail screen, the demo's last chapter and `tickets show` draw on one time axis.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from operator_tui.store.db import Database
from operator_tui.store.evals import TRIAL_RUN
from operator_tui.store.faults import DONE, fault_from_row
from operator_tui.store.models import ActionRecord, ActionTransition, FaultRow
from subjects.base import Ticket

# Same instant: the cause before the effect (a fault before the ticket it opens, a transition
# before the ticket event it leads to).
SOURCE_ORDER = {"fault": 0, "ticket": 1, "action": 2, "verification": 3}


class IncidentEvent(BaseModel):
    at: datetime
    source: str  # fault | ticket | action | verification
    kind: str  # fault: injected, reverted, ended, revert_failed; ticket: opened, claimed, diagnosed, open, resolved,
    #            escalated; action: its new state (proposed ... succeeded); verification: holds, not_fixed
    ref: str  # "fault:1", "ticket:5", "action:4", "session:2"
    actor: str = ""
    summary: str = ""
    risk: str | None = None  # actions: low | high | destructive
    detail: dict[str, Any] = Field(default_factory=dict)


class Incident(BaseModel):
    ticket: Ticket
    events: list[IncidentEvent]
    actions: list[ActionRecord]  # oldest first
    faults: list[FaultRow]  # active at some time while the ticket was


def _fault_overlaps(fault: FaultRow, ticket: Ticket) -> bool:
    end = ticket.resolved_at
    if end is not None and fault.injected_at > end:
        return False
    return fault.reverted_at is None or fault.reverted_at >= ticket.opened_at


class IncidentRepo:
    db: Database

    async def incident(self, ticket_id: int) -> Incident | None:
        """The ticket's incident, or None when there is no such ticket.

        Faults count when they belong to the ticket's run, or were injected from the CLI (no run)
        on the run's subject while the run watched, outside a trial (a trial's faults are its
        harness's, on a lab of its own); and were active at some time between the ticket's opening
        and its resolution. (A CLI fault left active, say on a cluster that died, would otherwise
        show in every later incident of its subject.)
        """
        ticket = await self.get_ticket(ticket_id)
        if ticket is None:
            return None
        events: list[IncidentEvent] = []
        for e in await self.ticket_events(ticket_id):
            d = e.detail or {}
            summary = str(d.get("summary") or d.get("reason") or d.get("outcome") or "")
            events.append(IncidentEvent(at=e.at, source="ticket", kind=e.kind, ref=f"ticket:{ticket_id}",
                                        actor=e.actor, summary=summary, detail=d))
        actions = list(reversed(await self.list_actions(ticket_id=ticket_id, limit=100_000)))
        by_id = {a.id: a for a in actions}
        rows = await self.db.fetchall(
            "SELECT t.* FROM action_transitions t JOIN actions a ON a.id = t.action_id WHERE a.ticket_id = ?"
            " ORDER BY t.id", (ticket_id,))
        for t in (ActionTransition.model_validate(dict(r)) for r in rows):
            a = by_id[t.action_id]
            events.append(IncidentEvent(at=t.at, source="action", kind=t.to_state, ref=f"action:{a.id}",
                                        actor=t.actor, summary=t.reason, risk=a.risk,
                                        detail={"name": a.name, "params": a.params, "from": t.from_state}))
        for s in await self.sessions_for_ticket(ticket_id):
            v = s.verification
            if not v:
                continue
            at = v.get("observed_at")
            events.append(IncidentEvent(
                at=datetime.fromisoformat(at) if isinstance(at, str) else (s.ended_at or s.started_at),
                source="verification", kind="holds" if v.get("holds") else "not_fixed", ref=f"session:{s.id}",
                actor="agent", summary=str(v.get("summary", "")), detail=v))
        run = await self.get_run(ticket.run_id)

        def counts(f: FaultRow) -> bool:
            if f.run_id is not None:
                return True
            return (run is not None and run.kind != TRIAL_RUN and f.subject == run.subject
                    and f.injected_at >= run.started_at)

        rows = await self.db.fetchall("SELECT * FROM faults WHERE run_id = ? OR run_id IS NULL ORDER BY id",
                                      (ticket.run_id,))
        faults = [f for f in (fault_from_row(r) for r in rows) if counts(f) and _fault_overlaps(f, ticket)]
        for f in faults:
            what = f.record.get("detail") or f"{f.kind}" + (f" on {f.target}" if f.target else "")
            events.append(IncidentEvent(at=f.injected_at, source="fault", kind="injected", ref=f"fault:{f.id}",
                                        actor=f.actor, summary=str(what), detail={"kind": f.kind, "target": f.target}))
            if f.reverted_at is not None:
                events.append(IncidentEvent(at=f.reverted_at, source="fault",
                                            kind=f.status if f.status in DONE else "revert_failed",
                                            ref=f"fault:{f.id}", actor=f.actor, summary=f.revert_detail or "",
                                            detail={"kind": f.kind, "target": f.target}))
        events.sort(key=lambda e: (e.at, SOURCE_ORDER.get(e.source, 9)))
        return Incident(ticket=ticket, events=events, actions=actions, faults=faults)
