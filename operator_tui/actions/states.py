"""The action lifecycle: states and the transitions allowed between them."""

from __future__ import annotations

import enum


class ActionState(enum.StrEnum):
    proposed = "proposed"
    validated = "validated"
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    scheduled = "scheduled"  # approved (or needing none) but not before its time
    executing = "executing"
    succeeded = "succeeded"
    failed = "failed"
    rejected = "rejected"
    cancelled = "cancelled"
    expired = "expired"
    unknown = "unknown"  # the process died while executing; reconciled, never re-run blindly


TERMINAL = frozenset(
    {ActionState.succeeded, ActionState.failed, ActionState.rejected, ActionState.cancelled, ActionState.expired}
)
# States in which an action can still be stopped before it touches the system.
PENDING = frozenset(
    {ActionState.proposed, ActionState.validated, ActionState.awaiting_approval, ActionState.approved,
     ActionState.scheduled}
)

S = ActionState
TRANSITIONS: dict[ActionState, frozenset[ActionState]] = {
    S.proposed: frozenset({S.validated, S.failed, S.cancelled, S.rejected}),
    S.validated: frozenset({S.awaiting_approval, S.approved, S.scheduled, S.cancelled, S.failed}),
    S.awaiting_approval: frozenset({S.approved, S.rejected, S.expired, S.cancelled}),
    S.approved: frozenset({S.executing, S.scheduled, S.cancelled, S.failed}),
    S.scheduled: frozenset({S.executing, S.cancelled, S.failed, S.awaiting_approval}),
    S.executing: frozenset({S.succeeded, S.failed, S.cancelled, S.unknown}),
    S.unknown: frozenset({S.succeeded, S.failed}),
    S.succeeded: frozenset(),
    S.failed: frozenset(),
    S.rejected: frozenset(),
    S.cancelled: frozenset(),
    S.expired: frozenset(),
}


def can_move(src: ActionState, dst: ActionState) -> bool:
    return dst in TRANSITIONS[src]
