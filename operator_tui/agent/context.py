"""What the agent knows when it diagnoses one ticket."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from operator_tui.store import Store
from subjects.base import Invariant, Observation, Runbook, RunbookContext, Ticket, Violation


@dataclass
class AgentContext:
    ticket: Ticket
    violation: Violation
    observation: Observation
    history: list[Observation]
    runbook: Runbook | None
    invariant: Invariant | None
    catalogue: list[dict[str, Any]]
    attempt: int = 1
    ticket_age_s: float = 0.0
    still_violated: bool = True
    metric_history: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    similar: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    previous_actions: list[dict[str, Any]] = field(default_factory=list)
    allow_destructive: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def available_actions(self) -> frozenset[str]:
        return frozenset(a["name"] for a in self.catalogue)

    def runbook_context(self) -> RunbookContext:
        return RunbookContext(
            violation=self.violation, observation=self.observation, history=self.history,
            available_actions=self.available_actions, ticket_age_s=self.ticket_age_s, attempt=self.attempt,
            previous_actions=tuple(self.previous_actions), allow_destructive=self.allow_destructive,
            settings=self.settings,
        )

    def summary(self) -> dict[str, Any]:
        """A compact, JSON-able view for the session record (and the model's first message)."""
        return {
            "ticket": {"id": self.ticket.id, "invariant": self.ticket.invariant, "entity": self.ticket.entity,
                       "severity": self.ticket.severity, "summary": self.ticket.summary,
                       "opened_at": self.ticket.opened_at.isoformat(), "occurrences": self.ticket.occurrences},
            "attempt": self.attempt,
            "still_violated": self.still_violated,
            "evidence": self.violation.evidence,
            "invariant": self.invariant.description if self.invariant else None,
            "runbook": None if self.runbook is None else {
                "summary": self.runbook.summary,
                "causes": [{"name": c.name, "title": c.title, "description": c.description,
                            "remedy": c.remedy_text} for c in self.runbook.causes],
            },
            "previous_actions": self.previous_actions,
            "similar_tickets": self.similar,
        }


async def similar_tickets(store: Store, ticket: Ticket, limit: int = 5,
                          run_id: int | None = None) -> list[dict[str, Any]]:
    """Earlier tickets for the same invariant, and how they ended (what was run, with outcomes);
    only those of run `run_id` when given (an eval trial learns nothing from earlier trials)."""
    out = []
    for t in await store.list_tickets(run_id=run_id, limit=200):
        if t.id == ticket.id or t.invariant != ticket.invariant or t.status not in ("resolved", "escalated"):
            continue
        actions = await store.list_actions(ticket_id=t.id)
        out.append({
            "id": t.id, "entity": t.entity, "status": t.status, "opened_at": t.opened_at.isoformat(),
            "resolution": (t.resolution or {}).get("reason") or (t.resolution or {}).get("by"),
            "actions": [{"name": a.name, "params": a.params, "state": a.state} for a in reversed(actions)],
        })
        if len(out) >= limit:
            break
    return out
