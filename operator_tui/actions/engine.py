"""The action engine: every change to a system goes through here, from the agent or a human.

    proposed -> validated -> [awaiting_approval -> approved] -> [scheduled] -> executing -> succeeded|failed
    exits: rejected, cancelled (kill switch, mode, human), expired (approval timeout, or its run
           ended before it ran), unknown (interrupted after its request may have been sent)

The engine drives the actions of its own run. Decisions (approve, reject, cancel, kill switch)
may come from any process through the store; the engine polls for them every `poll_interval`.
Right before executing it re-checks the policy (kill switch, mode, approval) and re-runs the
precheck on a fresh observation, takes a per-target lock and respects the rate limit.

Once a request may have been sent (the action said so with `ctx.sending()`, or it does not say
and has started), nothing is taken for granted: an action stopped by the kill switch, a cancel
or a shutdown, or one whose process died, or that timed out, becomes `unknown` and is
reconciled against the system: in place -> succeeded (with its undo named; a human's cancel
runs the undo), not in place -> cancelled/failed, cannot tell -> stays unknown for a human. A
retryable failure of a non-idempotent action is reconciled before any retry, never re-sent blind.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from operator_tui.actions.decisions import cancel_pending
from operator_tui.actions.general import general_actions
from operator_tui.actions.states import PENDING, TERMINAL, ActionState
from operator_tui.clock import SYSTEM_CLOCK, Clock
from operator_tui.config import ActionSettings
from operator_tui.policy import Policy, load_policy
from operator_tui.store import Store
from operator_tui.store.models import ActionRecord
from operator_tui.timeutil import to_text
from subjects.base import (
    ActionContext,
    ActionDef,
    ActionFailed,
    ActionParams,
    ActionRequest,
    Observation,
    Reconciliation,
    Subject,
)

log = logging.getLogger("operator_tui.actions")
S = ActionState
HOUSEKEEPING_S = 1.0  # how often the engine looks for work other processes left behind
RECONCILE_RETRY_S = 10.0  # how often an `unknown` action is reconciled again while it cannot tell
RECONCILE_TIMEOUT_S = 15.0
UNKNOWN_SUFFIX = ": reconciling with the system"


class ActionRequestError(Exception):
    """The request cannot become an action: unknown name, bad parameters. Lists every problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class DryRun:
    name: str
    params: dict[str, Any]
    preview: str
    risk: str
    problems: list[str]
    needs_approval: bool
    blocked: str | None  # why policy would refuse it right now


def format_validation(name: str, e: ValidationError) -> list[str]:
    out = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "parameters"
        kind = err["type"]
        if kind == "missing":
            out.append(f"{name}: missing parameter {where}")
        elif kind == "extra_forbidden":
            out.append(f"{name}: unknown parameter {where}")
        else:
            out.append(f"{name}: parameter {where}: {err['msg']} (got {err.get('input')!r})")
    return out


@dataclass
class Validated:
    definition: ActionDef
    params: ActionParams
    request: ActionRequest


@dataclass
class _Running:
    task: asyncio.Task[None]
    cancel_reason: str | None = None
    cause: str = ""  # why it was stopped: killswitch | cancel | shutdown
    sent: bool = False  # the action said a request that may change the system is on its way


def _takes_checkpoint(fn: Any) -> bool:
    try:
        return "checkpoint" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class EngineStats:
    killswitch_latency_ms: list[float] = field(default_factory=list)


class ActionEngine:
    def __init__(self, store: Store, subject: Subject, run_id: int, settings: ActionSettings | None = None, *,
                 clock: Clock = SYSTEM_CLOCK, rng: random.Random | None = None, poll_interval: float = 0.05,
                 observe: Callable[[], Awaitable[Observation]] | None = None,
                 on_change: Callable[[ActionRecord], None] | None = None, cluster: str | None = None,
                 run_scoped: bool = False):
        self.store = store
        self.cluster = cluster  # the identity of the cluster this engine's actions change
        # The cross-process target lock and rate limit cover every run watching the same cluster;
        # a run on a cluster of its own (an eval trial's lab) is scoped to itself.
        self._scope_run = run_id if run_scoped else None
        self.subject = subject
        self.run_id = run_id
        self.settings = settings or ActionSettings()
        self.clock = clock
        self.rng = rng or random.Random()
        self.poll_interval = poll_interval
        self.observe = observe or subject.observe
        self.on_change = on_change
        self.catalogue: dict[str, ActionDef] = {a.name: a for a in subject.actions()}
        for a in general_actions(store, clock):
            self.catalogue.setdefault(a.name, a)
        self.policy = Policy()
        self.stats = EngineStats()
        self._running: dict[int, _Running] = {}
        self._target_locks: dict[str, asyncio.Lock] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._housekept_at = float("-inf")
        self._reconciled_at: dict[int, float] = {}  # unknown action id -> monotonic time of the last try

    # -- catalogue and validation ------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for a in self.catalogue.values():
            item = {"name": a.name, "description": a.description, "risk": a.risk.value, "idempotent": a.idempotent,
                    "undo": a.undo, "parameters": a.schema()}
            if a.risk_for is not None:
                item["risk_depends_on_parameters"] = True
            out.append(item)
        return out

    def validate(self, requests: list[ActionRequest]) -> list[Validated]:
        problems: list[str] = []
        out: list[Validated] = []
        if not requests:
            raise ActionRequestError(["no action requested"])
        for req in requests:
            definition = self.catalogue.get(req.name)
            if definition is None:
                problems.append(f"unknown action {req.name!r}; known: {', '.join(sorted(self.catalogue))}")
                continue
            try:
                params = definition.params.model_validate(req.params)
            except ValidationError as e:
                problems.extend(format_validation(req.name, e))
                continue
            if req.delay_s < 0:
                problems.append(f"{req.name}: delay must not be negative")
            out.append(Validated(definition, params, req))
        if problems:
            raise ActionRequestError(problems)
        return out

    # -- submitting --------------------------------------------------------------------------

    async def submit(self, requests: list[ActionRequest], *, actor: str, ticket_id: int | None = None,
                     session_id: int | None = None) -> list[ActionRecord]:
        """Record the requested actions (several make a workflow: each step waits for the one
        before it to succeed) and start driving them. Invalid requests create nothing."""
        try:
            checked = self.validate(requests)
        except ActionRequestError as e:
            await self.store.audit(actor, "action.invalid", f"ticket:{ticket_id}" if ticket_id else "",
                                   {"requests": [r.model_dump() for r in requests], "problems": e.problems},
                                   self.run_id)
            raise
        workflow_id = uuid.uuid4().hex[:12] if len(checked) > 1 else None
        records = []
        for step, v in enumerate(checked):
            params = v.params.model_dump(mode="json")
            # The first step's delay counts from now; a later step's from when the one before it succeeds.
            not_before = (to_text(self.clock.now() + timedelta(seconds=v.request.delay_s))
                          if step == 0 and v.request.delay_s > 0 else None)
            records.append(await self.store.create_action(
                name=v.definition.name, params=params, target=v.definition.target(v.params),
                risk=v.definition.risk_of(v.params).value, idempotent=v.definition.idempotent, requested_by=actor,
                preview=v.definition.preview(v.params), run_id=self.run_id, ticket_id=ticket_id,
                session_id=session_id, workflow_id=workflow_id, step=step, delay_s=v.request.delay_s,
                not_before=not_before, reason=v.request.reason, cluster=self.cluster,
            ))
        self._wake.set()
        return records

    async def dry_run(self, request: ActionRequest, actor: str) -> DryRun:
        v = self.validate([request])[0]
        policy = await load_policy(self.store, self.run_id)
        obs = await self.observe()
        problems = await self._precheck(v.definition, obs, v.params)
        blocked = None
        if policy.killswitch:
            blocked = f"the kill switch is engaged (by {policy.killswitch_by})"
        risk = v.definition.risk_of(v.params).value
        result = DryRun(v.definition.name, v.params.model_dump(mode="json"), v.definition.preview(v.params),
                        risk, problems, self._needs_approval(policy, actor, risk), blocked)
        await self.store.audit(actor, "action.dry_run", "", {"name": result.name, "params": result.params,
                                                             "problems": problems, "blocked": blocked}, self.run_id)
        return result

    # -- running ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.policy = await load_policy(self.store, self.run_id)
        await self.housekeeping(force=True)
        self._loop_task = asyncio.create_task(self._loop(), name="action-engine")

    async def stop(self) -> None:
        """Stop driving. In-flight executions are stopped (and reconciled when their request may
        have been sent); this run's actions that did not start will not run: cancelled."""
        self._stopping = True
        for running in list(self._running.values()):
            if running.cancel_reason is None:
                running.cancel_reason, running.cause = "the operator is shutting down", "shutdown"
            running.task.cancel()
        if self._running:
            await asyncio.gather(*(r.task for r in self._running.values()), return_exceptions=True)
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
        await cancel_pending(self.store, "system", f"the operator stopped (run {self.run_id} ended) before it ran",
                             run_id=self.run_id)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("action engine step failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass

    async def step(self) -> None:
        """One pass: policy changes, cancel requests, and every action of this run that can move."""
        previous = self.policy
        self.policy = await load_policy(self.store, self.run_id)
        if self.policy.killswitch:
            reason = f"kill switch engaged by {self.policy.killswitch_by}"
            for action_id, running in list(self._running.items()):
                if running.cancel_reason is None:
                    running.cancel_reason, running.cause = reason, "killswitch"
                    running.task.cancel()
                    log.info("action %d: stopping (%s)", action_id, reason)
            if not previous.killswitch:
                await cancel_pending(self.store, "system", reason, run_id=self.run_id)
        if self.policy.mode == "observe" and previous.mode != "observe":
            await cancel_pending(self.store, "system", "mode switched to observe", requested_by_agent_only=True,
                                 run_id=self.run_id)
        open_states = [s.value for s in (*PENDING, S.executing)]
        for action in reversed(await self.store.list_actions(states=open_states, run_id=self.run_id, limit=1000)):
            await self._advance(action)
        await self.housekeeping()

    async def housekeeping(self, force: bool = False) -> None:
        """What other processes left behind (at most every HOUSEKEEPING_S): runs that died, actions
        they were executing (reconciled) or that waited for them (expired), `unknown` actions."""
        now = self.clock.monotonic()
        if not force and now - self._housekept_at < HOUSEKEEPING_S:
            return
        self._housekept_at = now
        await self.reconcile_orphans()  # reaps the runs that died first
        await self.expire_orphans()

    def _needs_approval(self, policy: Policy, actor: str, risk: str) -> bool:
        if actor == "agent" and policy.mode == "propose":
            return True
        return policy.needs_approval(risk)

    def _policy_refusal(self, policy: Policy, action: ActionRecord) -> tuple[ActionState, str] | None:
        """What the policy says now about an action that is about to run: None (go), or where it goes."""
        if policy.killswitch:
            return S.cancelled, f"kill switch engaged by {policy.killswitch_by}"
        if action.requested_by == "agent" and policy.mode == "observe":
            return S.cancelled, "mode is observe: the agent only diagnoses"
        if action.decided_by is None and self._needs_approval(policy, action.requested_by, action.risk):
            return S.awaiting_approval, (f"approval required now (mode {policy.mode}, approval {policy.approval}); "
                                         "it was not approved by anyone when the policy was looser")
        return None

    async def _refuse_by_policy(self, action: ActionRecord, policy: Policy) -> bool:
        refusal = self._policy_refusal(policy, action)
        if refusal is None:
            return False
        to, reason = refusal
        fields: dict[str, Any] = {}
        if to == S.awaiting_approval:
            fields["expires_at"] = to_text(self.clock.now() + timedelta(seconds=self.settings.approval_timeout_s))
        await self._move(action, to, "system", reason, **fields)
        return True

    async def _move(self, action: ActionRecord, to: ActionState, actor: str, reason: str,
                    **fields: Any) -> ActionRecord | None:
        updated = await self.store.transition_action(action.id, to, actor, reason,
                                                     expect=(ActionState(action.state),), fields=fields)
        if updated is not None:
            log.debug("action %d %s %s -> %s%s", action.id, action.name, action.state, to.value,
                     f" ({reason})" if reason else "")
            if self.on_change is not None:
                self.on_change(updated)
        return updated

    async def _advance(self, action: ActionRecord) -> None:
        state = ActionState(action.state)
        now = self.clock.now()
        if state == S.executing:
            running = self._running.get(action.id)
            if running is not None and action.cancel_requested and running.cancel_reason is None:
                running.cancel_reason, running.cause = f"cancelled by {action.cancel_requested}", "cancel"
                running.task.cancel()
            return
        if state in PENDING and self.policy.killswitch:
            await self._move(action, S.cancelled, "system", f"kill switch engaged by {self.policy.killswitch_by}")
            return
        if state in PENDING and action.requested_by == "agent" and self.policy.mode == "observe":
            await self._move(action, S.cancelled, "system", "mode is observe: the agent only diagnoses")
            return
        definition = self.catalogue.get(action.name)
        if definition is None:
            await self._move(action, S.failed, "system", f"action {action.name} is not offered by this subject")
            return
        if state == S.proposed:
            if action.step > 0:
                previous = await self._previous_step(action)
                if previous is None or ActionState(previous.state) != S.succeeded:
                    if previous is not None and ActionState(previous.state) in TERMINAL | {S.unknown}:
                        await self._move(action, S.cancelled, "system",
                                         f"previous step #{previous.id} {previous.name} {previous.state}")
                    return
            await self._validate(action, definition)
        elif state == S.validated:
            not_before = action.not_before
            if action.step > 0 and action.delay_s > 0 and not_before is None:
                not_before = now + timedelta(seconds=action.delay_s)
            fields = {"not_before": to_text(not_before)} if not_before is not None else {}
            if self._needs_approval(self.policy, action.requested_by, action.risk):
                expires = now + timedelta(seconds=self.settings.approval_timeout_s)
                await self._move(action, S.awaiting_approval, "system",
                                 f"approval required (mode {self.policy.mode}, approval {self.policy.approval})",
                                 expires_at=to_text(expires), **fields)
            else:
                await self._move(action, S.approved, "system",
                                 f"no approval required (approval {self.policy.approval})", **fields)
        elif state == S.awaiting_approval:
            if action.expires_at is not None and now >= action.expires_at:
                await self._move(action, S.expired, "system", "nobody approved it in time")
        elif state in (S.approved, S.scheduled):
            if action.id in self._running:
                return
            if await self._refuse_by_policy(action, self.policy):
                return
            if action.not_before is not None and now < action.not_before:
                if state == S.approved:
                    await self._move(action, S.scheduled, "system", f"runs at {to_text(action.not_before)}")
                return
            await self._try_execute(action, definition)

    async def _previous_step(self, action: ActionRecord) -> ActionRecord | None:
        for a in await self.store.list_actions(workflow_id=action.workflow_id):
            if a.step == action.step - 1:
                return a
        return None

    async def _precheck(self, definition: ActionDef, obs: Observation, params: ActionParams) -> list[str]:
        if not obs.reachable:
            return [f"cannot check the system right now: {obs.error}"]
        try:
            return await definition.precheck(obs, params)
        except Exception as e:
            log.exception("precheck of %s failed", definition.name)
            return [f"precheck could not run: {type(e).__name__}: {e}"]

    async def _validate(self, action: ActionRecord, definition: ActionDef) -> None:
        params = definition.params.model_validate(action.params)
        problems = await self._precheck(definition, await self.observe(), params)
        if problems:
            await self._move(action, S.failed, "system", "precheck failed: " + "; ".join(problems),
                             error="; ".join(problems))
        else:
            await self._move(action, S.validated, "system", "parameters and precheck passed")

    async def _try_execute(self, action: ActionRecord, definition: ActionDef) -> None:
        since = to_text(self.clock.now() - timedelta(seconds=60))
        if await self.store.executions_since(since, run_id=self._scope_run) >= self.settings.rate_limit_per_minute:
            return  # stays approved; the next pass tries again
        lock = self._target_locks.setdefault(action.target, asyncio.Lock())
        if lock.locked() or await self.store.executing_on(action.target, action.id, run_id=self._scope_run):
            return  # another action holds the target
        task = asyncio.create_task(self._execute(action, definition, lock), name=f"action-{action.id}")
        self._running[action.id] = _Running(task)

    async def _execute(self, action: ActionRecord, definition: ActionDef, lock: asyncio.Lock) -> None:
        running = self._running[action.id]
        try:
            async with lock:
                params = definition.params.model_validate(action.params)
                problems = await self._precheck(definition, await self.observe(), params)
                if problems:
                    await self._move(action, S.failed, "system", "precheck failed right before executing: "
                                     + "; ".join(problems), error="; ".join(problems))
                    return
                # The policy may have tightened while it waited (lock, rate limit, schedule, precheck).
                latest = await self.store.get_action(action.id)
                if latest is None or await self._refuse_by_policy(latest, await load_policy(self.store, self.run_id)):
                    return
                current = await self._move(latest, S.executing, "system", "precheck passed on a fresh observation")
                if current is None:
                    return  # cancelled or decided meanwhile
                await self._attempts(current, definition, params, running)
        except asyncio.CancelledError:
            await self._interrupted(action.id, definition, running)
        except Exception as e:
            log.exception("action %d crashed", action.id)
            latest = await self.store.get_action(action.id)
            if latest is not None and latest.state == S.executing.value:
                if self._may_have_sent(definition, latest, running):
                    await self._settle_unknown(latest, definition, f"unexpected error after its request may have "
                                               f"been sent: {type(e).__name__}: {e}")
                else:
                    await self._move(latest, S.failed, "system", f"unexpected error: {type(e).__name__}: {e}",
                                     error=str(e))
        finally:
            self._running.pop(action.id, None)
            self._wake.set()

    @staticmethod
    def _may_have_sent(definition: ActionDef, action: ActionRecord, running: _Running | None) -> bool:
        """Whether a request that may change the system may have left. Actions that mark their sends
        know; for the others, having started is enough to assume so."""
        if not definition.marks_sends:
            return True
        return action.sent_at is not None or (running is not None and running.sent)

    async def _interrupted(self, action_id: int, definition: ActionDef, running: _Running) -> None:
        """Stopped by the kill switch, a cancel or a shutdown: cancelled if nothing can have been
        sent yet, else unknown and reconciled (a human's cancel then runs the declared undo)."""
        latest = await self.store.get_action(action_id)
        if latest is None:
            return
        reason = running.cancel_reason or "cancelled"
        if latest.state in [s.value for s in PENDING] or (
                latest.state == S.executing.value and not self._may_have_sent(definition, latest, running)):
            await self._move(latest, S.cancelled, "system", reason, error=reason)
            return
        if latest.state != S.executing.value:
            return
        verdict = await self._settle_unknown(latest, definition, f"stopped ({reason}) after its request may have "
                                                                 "been sent")
        if verdict is not None and verdict.took_effect is True and running.cause == "cancel" and definition.undo:
            await self._submit_undo(latest, definition, reason)

    async def _settle_unknown(self, action: ActionRecord, definition: ActionDef, why: str) -> Reconciliation | None:
        """executing -> unknown (recorded first, so a crash during the check leaves it unknown),
        then reconciled at once."""
        unknown = await self._move(action, S.unknown, "system", f"{why}{UNKNOWN_SUFFIX}")
        if unknown is None:
            return None
        return await self._reconcile_unknown(unknown, definition, why)

    async def _reconcile(self, definition: ActionDef, action: ActionRecord) -> Reconciliation:
        if definition.reconcile is None:
            return Reconciliation(took_effect=None, detail=f"{definition.name} has no way to check its effect")
        params = definition.params.model_validate(action.params)
        kwargs = {"checkpoint": action.checkpoint} if _takes_checkpoint(definition.reconcile) else {}
        try:
            async with asyncio.timeout(RECONCILE_TIMEOUT_S):
                return await definition.reconcile(await self.observe(), params, **kwargs)
        except Exception as e:
            log.warning("reconciling action %d (%s) failed: %s", action.id, definition.name, e)
            return Reconciliation(took_effect=None, detail=f"could not check: {type(e).__name__}: {e}")

    async def _reconcile_unknown(self, action: ActionRecord, definition: ActionDef | None,
                                 why: str = "") -> Reconciliation | None:
        """An `unknown` action, checked against the system: in place -> succeeded, not in place ->
        cancelled (it was stopped) or failed, cannot tell -> stays unknown (tried again later)."""
        self._reconciled_at[action.id] = self.clock.monotonic()
        if definition is None:
            return None
        verdict = await self._reconcile(definition, action)
        why = why or action.reason.removesuffix(UNKNOWN_SUFFIX)
        stopped = why.startswith("stopped (")  # by the kill switch, a cancel, a shutdown
        if verdict.took_effect is True:
            undo = f"; undo with {definition.undo}" if definition.undo else ""
            await self._move(action, S.succeeded, "system",
                             f"{why}; reconciled: it took effect: {verdict.detail}{undo}",
                             result={"detail": verdict.detail, "reconciled": True, "interrupted": why})
        elif verdict.took_effect is False:
            if stopped:
                await self._move(action, S.cancelled, "system",
                                 f"{why}; reconciled: it did not take effect: {verdict.detail}", error=verdict.detail)
            else:
                await self._move(action, S.failed, "system",
                                 f"{why}; reconciled: it did not take effect: {verdict.detail}; not re-run",
                                 error=verdict.detail)
        else:
            await self.store.audit("system", "action.reconcile_undecided", f"action:{action.id}",
                                   {"detail": verdict.detail}, action.run_id)
            log.warning("action %d: cannot tell whether it took effect: %s", action.id, verdict.detail)
        return verdict

    async def _submit_undo(self, action: ActionRecord, definition: ActionDef, reason: str) -> None:
        undo = self.catalogue.get(definition.undo or "")
        if undo is None:
            return
        try:
            await self.submit([ActionRequest(name=undo.name, params=action.params,
                                             reason=f"undo of action #{action.id} {action.name}: {reason}")],
                              actor="system", ticket_id=action.ticket_id)
        except ActionRequestError as e:
            log.warning("cannot undo action %d with %s: %s", action.id, undo.name, e)

    def backoff(self, attempt: int) -> float:
        """Exponential with 'equal jitter': half fixed, half random, capped."""
        base = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return base / 2 + self.rng.uniform(0, base / 2)

    async def _attempts(self, action: ActionRecord, definition: ActionDef, params: ActionParams,
                        running: _Running) -> None:
        progress_notes: list[str] = []

        async def on_send(checkpoint: dict[str, Any] | None) -> None:
            running.sent = True  # before the write: from here on, assume it may have gone out
            await self.store.mark_sent(action.id, checkpoint)

        ctx = ActionContext(progress=progress_notes.append, timeout_s=self.settings.timeout_s, sleep=self.clock.sleep,
                            on_send=on_send)
        attempt = 0
        while True:
            attempt += 1
            await self.store.update_action_fields(action.id, attempts=attempt)
            latest = await self.store.get_action(action.id) or action
            ctx.extra["checkpoint"] = latest.checkpoint  # what an earlier attempt recorded
            try:
                outcome = await asyncio.wait_for(definition.execute(params, ctx), self.settings.timeout_s)
            except ActionFailed as e:
                latest = await self.store.get_action(action.id) or action
                if e.retryable and not definition.idempotent and self._may_have_sent(definition, latest, running):
                    # Never re-send blindly, nor call it failed: the request that went out may have done it
                    # (or may still be doing it). The system decides.
                    verdict = await self._reconcile(definition, latest)
                    await self.store.audit("system", "action.reconciled_after_failure", f"action:{action.id}",
                                           {"attempt": attempt, "failure": e.reason,
                                            "took_effect": verdict.took_effect, "detail": verdict.detail},
                                           self.run_id)
                    if verdict.took_effect is True:
                        await self._move(latest, S.succeeded, "system",
                                         f"reconciled after '{e.reason}': it took effect: {verdict.detail}",
                                         result={"detail": verdict.detail, "reconciled": True,
                                                 "progress": progress_notes, "attempts": attempt})
                        return
                    if verdict.took_effect is None:
                        await self._move(latest, S.unknown, "system",
                                         f"'{e.reason}' after its request was sent, and reconciliation cannot "
                                         f"tell whether it took effect ({verdict.detail}): not re-sent")
                        return
                if e.retryable and attempt <= self.settings.max_retries:
                    delay = self.backoff(attempt)
                    await self.store.audit("system", "action.retry", f"action:{action.id}",
                                           {"attempt": attempt, "reason": e.reason, "retry_in_s": round(delay, 3)},
                                           self.run_id)
                    await self.clock.sleep(delay)
                    continue
                await self._move(latest, S.failed, "system", e.reason, error=e.reason,
                                 result={"data": e.data, "progress": progress_notes, "attempts": attempt})
                return
            except TimeoutError:
                latest = await self.store.get_action(action.id) or action
                why = f"no confirmation within {self.settings.timeout_s:g} s"
                if self._may_have_sent(definition, latest, running):
                    await self._settle_unknown(latest, definition, why)
                else:
                    await self._move(latest, S.failed, "system", f"{why}; nothing was sent", error=why,
                                     result={"progress": progress_notes, "attempts": attempt})
                return
            await self._move(action, S.succeeded, "system", outcome.detail,
                             result={"detail": outcome.detail, "data": outcome.data, "progress": progress_notes,
                                     "attempts": attempt})
            return

    # -- crash safety ----------------------------------------------------------------------

    async def reconcile_orphans(self) -> list[ActionRecord]:
        """Actions left `executing` by a run that ended (its process stopped or died) become
        `unknown` (or failed, when they are known to have sent nothing), and every `unknown` action
        is checked against the system: done -> succeeded, not done -> failed. Never re-run."""
        out = []
        await self.store.reap_dead_runs()
        for action in await self.store.actions_of_ended_runs([S.executing.value]):
            definition = self.catalogue.get(action.name)
            if definition is not None and not self._may_have_sent(definition, action, None):
                await self._move(action, S.failed, "system", f"run {action.run_id} ended before it sent anything; "
                                 "not re-run", error="interrupted before sending")
                continue
            await self._move(action, S.unknown, "system", f"the process of run {action.run_id} (pid "
                             f"{action.owner_pid}) stopped while executing it{UNKNOWN_SUFFIX}")
        now = self.clock.monotonic()
        for action in await self.store.list_actions(states=[S.unknown.value], limit=10_000):
            if action.id in self._running or now - self._reconciled_at.get(action.id, float("-inf")) < RECONCILE_RETRY_S:
                continue
            if action.cluster is not None and self.cluster is not None and action.cluster != self.cluster:
                continue  # another cluster's action: checking it against ours would be wrong
            await self._reconcile_unknown(action, self.catalogue.get(action.name))
            out.append(await self.store.get_action(action.id) or action)
        return out

    async def expire_orphans(self) -> list[int]:
        """Actions waiting (for approval, a lock, their time) in a run that ended will never be
        driven: expired, so that nobody approves them believing they will run."""
        out = []
        for action in await self.store.actions_of_ended_runs([s.value for s in PENDING]):
            moved = await self.store.transition_action(
                action.id, S.expired, "system", f"its run {action.run_id} ended before it ran: it will not run",
                expect=(ActionState(action.state),))
            if moved is not None:
                out.append(action.id)
        return out

    # -- waiting ------------------------------------------------------------------------------

    async def wait_for(self, action_ids: list[int], timeout: float | None = None,
                       until: frozenset[ActionState] = TERMINAL) -> list[ActionRecord]:
        """Until every action is terminal (or in `until`); drives the engine if its loop is not running."""
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        while True:
            if self._loop_task is None:
                await self.step()
            records = [await self.store.get_action(i) for i in action_ids]
            if all(r is not None and ActionState(r.state) in until for r in records):
                return records
            if deadline is not None and self.clock.monotonic() >= deadline:
                return records
            await asyncio.sleep(self.poll_interval)
