"""Human decisions on actions and policy, usable from any process (the console or the CLI).

Each is a compare-and-set in the store plus an audit event, so a decision made in one process
is seen by the engine of another, and a second decision on the same action is refused clearly.
"""

from __future__ import annotations

from operator_tui.actions.states import PENDING, TERMINAL, ActionState
from operator_tui.errors import UserError
from operator_tui.policy import Policy, load_policy, set_killswitch, set_mode
from operator_tui.store import Store
from operator_tui.store.models import ActionRecord


class DecisionError(UserError):
    pass


async def _refuse(store: Store, action: ActionRecord | None, action_id: int, verb: str, actor: str) -> None:
    if action is None:
        raise DecisionError(f"no action {action_id}")
    why = {
        "expired": "its approval request expired",
        "succeeded": "it already ran",
        "failed": "it already failed",
        "rejected": "it was already rejected",
        "cancelled": "it was cancelled",
        "approved": "it is already approved",
        "executing": "it is running now",
    }.get(action.state, f"it is {action.state}, not awaiting approval")
    await store.audit(actor, f"action.{verb}_refused", f"action:{action_id}", {"state": action.state, "why": why},
                      action.run_id)
    raise DecisionError(f"cannot {verb} action {action_id} ({action.name}): {why}"
                        + (f" by {action.decided_by}" if action.decided_by and action.state in ("approved", "rejected")
                           else ""))


async def approve(store: Store, action_id: int, actor: str, cluster: str | None = None) -> ActionRecord:
    """Approve an action awaiting approval, if the run that will execute it still lives (and, given
    `cluster`, it is an action on that cluster): approving an orphan would promise a run that never
    comes. An orphan found here is expired on the spot."""
    from operator_tui.timeutil import now_text

    action = await store.get_action(action_id)
    if action is not None and action.state == ActionState.awaiting_approval.value:
        if cluster is not None and action.cluster is not None and action.cluster != cluster:
            await store.audit(actor, "action.approve_refused", f"action:{action_id}",
                              {"why": "another cluster", "cluster": action.cluster, "here": cluster}, action.run_id)
            raise DecisionError(f"cannot approve action {action_id} ({action.name}): it is for cluster "
                                f"{action.cluster}, not {cluster}")
        if not await store.run_is_live(action.run_id):
            await store.transition_action(action_id, ActionState.expired, "system",
                                          f"its run {action.run_id} ended before anyone approved it: it will not run",
                                          expect=(ActionState.awaiting_approval,))
            await store.audit(actor, "action.approve_refused", f"action:{action_id}",
                              {"why": f"run {action.run_id} ended"}, action.run_id)
            raise DecisionError(f"cannot approve action {action_id} ({action.name}): the run that requested it "
                                f"(run {action.run_id}) has ended, so it would never run; it is expired now")
    record = await store.transition_action(
        action_id, ActionState.approved, actor, f"approved by {actor}",
        expect=(ActionState.awaiting_approval,), fields={"decided_by": actor, "decided_at": now_text()},
    )
    if record is None:
        await _refuse(store, await store.get_action(action_id), action_id, "approve", actor)
    return record


async def reject(store: Store, action_id: int, actor: str, reason: str = "") -> ActionRecord:
    from operator_tui.timeutil import now_text

    text = f"rejected by {actor}" + (f": {reason}" if reason else "")
    record = await store.transition_action(
        action_id, ActionState.rejected, actor, text,
        expect=(ActionState.awaiting_approval,), fields={"decided_by": actor, "decided_at": now_text()},
    )
    if record is None:
        await _refuse(store, await store.get_action(action_id), action_id, "reject", actor)
    return record


async def cancel(store: Store, action_id: int, actor: str, reason: str = "") -> str:
    """Cancel a pending action at once, or ask the executing process to stop a running one."""
    action = await store.get_action(action_id)
    if action is None:
        raise DecisionError(f"no action {action_id}")
    text = f"cancelled by {actor}" + (f": {reason}" if reason else "")
    state = ActionState(action.state)
    if state in PENDING:
        if await store.transition_action(action_id, ActionState.cancelled, actor, text, expect=tuple(PENDING)):
            return "cancelled"
        action = await store.get_action(action_id)
        state = ActionState(action.state)
    if state == ActionState.executing:
        if await store.request_cancel(action_id, actor, reason or "cancel requested"):
            return ("stop requested: the process running it stops it; if its request may already have been sent "
                    "it becomes unknown, is reconciled with the cluster, and is undone when it took effect")
    if state in TERMINAL or state == ActionState.unknown:
        raise DecisionError(f"cannot cancel action {action_id} ({action.name}): it is already {state.value}")
    raise DecisionError(f"cannot cancel action {action_id}: it is {state.value}")


async def cancel_pending(store: Store, actor: str, reason: str, *, requested_by_agent_only: bool = False,
                         run_id: int | None = None) -> list[int]:
    cancelled = []
    for a in await store.list_actions(states=[s.value for s in PENDING], run_id=run_id, limit=10_000):
        if requested_by_agent_only and a.requested_by != "agent":
            continue
        if await store.transition_action(a.id, ActionState.cancelled, actor, reason, expect=tuple(PENDING)):
            cancelled.append(a.id)
    return cancelled


async def engage_killswitch(store: Store, actor: str, run_id: int | None = None) -> list[int]:
    """Block everything new and cancel everything pending. Executing actions are stopped by
    the engines that run them, which poll the switch."""
    await set_killswitch(store, True, actor, run_id)
    return await cancel_pending(store, actor, f"kill switch engaged by {actor}")


async def release_killswitch(store: Store, actor: str, run_id: int | None = None) -> None:
    await set_killswitch(store, False, actor, run_id)


async def engage_run_killswitch(store: Store, run_id: int, actor: str) -> list[int]:
    """One run's own kill switch: blocks and cancels that run's actions only."""
    await set_killswitch(store, True, actor, run_id, for_run=run_id)
    return await cancel_pending(store, actor, f"the run's kill switch engaged by {actor}", run_id=run_id)


async def toggle_killswitch(store: Store, actor: str, run_id: int | None = None,
                            believed_engaged: bool | None = None) -> tuple[str, Policy, list[int]]:
    """Engage or release according to the store's state (what every process obeys), not a screen's.
    `believed_engaged`: what the person saw when they asked; when the store says otherwise (someone
    else changed it meanwhile), nothing changes and the answer says so, so that a stale screen never
    releases a kill switch somebody has just engaged. Returns ("engaged" | "released" |
    "already engaged" | "already released", the policy now, ids of cancelled actions)."""
    policy = await load_policy(store)
    if believed_engaged is not None and believed_engaged != policy.killswitch:
        return ("already engaged" if policy.killswitch else "already released"), policy, []
    if policy.killswitch:
        await release_killswitch(store, actor, run_id)
        return "released", await load_policy(store), []
    cancelled = await engage_killswitch(store, actor, run_id)
    return "engaged", await load_policy(store), cancelled


async def change_mode(store: Store, mode: str, actor: str, run_id: int | None = None) -> list[int]:
    await set_mode(store, mode, actor, run_id)
    if mode == "observe":
        return await cancel_pending(store, actor, f"mode switched to observe by {actor}",
                                    requested_by_agent_only=True)
    return []
