"""The action lifecycle: states and the transitions allowed between them."""

from __future__ import annotations

import enum


class ActionState(enum.StrEnum):
    proposed = "proposed"
    validated = "validated"
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    scheduled = "scheduled"  # approved (or needing none) but not before its time
    executing = "executing"  # its request may be on its way: never re-sent without reconciliation
    succeeded = "succeeded"
    failed = "failed"
    rejected = "rejected"
    cancelled = "cancelled"
    expired = "expired"
    # interrupted after its request may have been sent (process died, kill switch, cancel, timeout):
    # reconciled against the system, never re-run blindly
    unknown = "unknown"


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
    S.proposed: frozenset({S.validated, S.failed, S.cancelled, S.rejected, S.expired}),
    S.validated: frozenset({S.awaiting_approval, S.approved, S.scheduled, S.cancelled, S.failed, S.expired}),
    S.awaiting_approval: frozenset({S.approved, S.rejected, S.expired, S.cancelled}),
    # back to awaiting_approval: the policy tightened while it waited (re-checked right before running)
    S.approved: frozenset({S.executing, S.scheduled, S.cancelled, S.failed, S.awaiting_approval, S.expired}),
    S.scheduled: frozenset({S.executing, S.cancelled, S.failed, S.awaiting_approval, S.expired}),
    S.executing: frozenset({S.succeeded, S.failed, S.cancelled, S.unknown}),
    # cancelled: it was stopped, and reconciliation found that it had not taken effect
    S.unknown: frozenset({S.succeeded, S.failed, S.cancelled}),
    S.succeeded: frozenset(),
    S.failed: frozenset(),
    S.rejected: frozenset(),
    S.cancelled: frozenset(),
    S.expired: frozenset(),
}


def can_move(src: ActionState, dst: ActionState) -> bool:
    return dst in TRANSITIONS[src]
