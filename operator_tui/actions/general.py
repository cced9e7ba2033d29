"""Actions every subject has: wait, and annotate (a note on a ticket)."""

from __future__ import annotations

from pydantic import Field

from operator_tui.clock import Clock
from operator_tui.store import Store
from subjects.base import (
    ActionContext,
    ActionDef,
    ActionFailed,
    ActionOutcome,
    ActionParams,
    Observation,
    RiskTier,
)


class WaitParams(ActionParams):
    seconds: float = Field(gt=0, le=3600, description="how long to wait")


class AnnotateParams(ActionParams):
    ticket_id: int = Field(description="the ticket to annotate")
    note: str = Field(min_length=1, max_length=4000, description="the note, plain text")


def general_actions(store: Store, clock: Clock) -> list[ActionDef]:
    async def no_problems(_obs: Observation, _p: ActionParams) -> list[str]:
        return []

    async def wait(params: WaitParams, ctx: ActionContext) -> ActionOutcome:
        await clock.sleep(params.seconds)
        return ActionOutcome(detail=f"waited {params.seconds:g} s")

    async def ticket_exists(_obs: Observation, params: AnnotateParams) -> list[str]:
        return [] if await store.get_ticket(params.ticket_id) else [f"no ticket {params.ticket_id}"]

    async def annotate(params: AnnotateParams, ctx: ActionContext) -> ActionOutcome:
        if await store.get_ticket(params.ticket_id) is None:
            raise ActionFailed(f"no ticket {params.ticket_id}")
        await store.add_ticket_event(params.ticket_id, "note", "agent", {"note": params.note})
        return ActionOutcome(detail=f"note added to ticket {params.ticket_id}")

    return [
        # Neither changes the system (marks_sends with no send): interrupted, they are known not to
        # have done anything there, never `unknown`.
        ActionDef("wait", "Wait a while before the next step (e.g. to let the system settle).", WaitParams,
                  RiskTier.low, True, lambda p: "", no_problems, wait, lambda p: f"sleep {p.seconds:g} s",
                  marks_sends=True),
        ActionDef("annotate", "Add a note to a ticket's timeline.", AnnotateParams, RiskTier.low, True,
                  lambda p: f"ticket:{p.ticket_id}", ticket_exists, annotate,
                  lambda p: f"ticket {p.ticket_id} += note ({len(p.note)} chars)", marks_sends=True),
    ]
