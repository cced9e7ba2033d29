"""The action engine: every change to a system goes through here, from the agent or a human.

    proposed -> validated -> [awaiting_approval -> approved] -> [scheduled] -> executing -> succeeded|failed
    exits: rejected, cancelled (kill switch, mode, human), expired (approval timeout),
           unknown (the process died while executing: reconciled against the system, never re-run)

The engine drives the actions of its own run. Decisions (approve, reject, cancel, kill switch)
may come from any process through the store; the engine polls for them every `poll_interval`.
Right before executing it re-runs the precheck on a fresh observation, takes a per-target lock
and respects the rate limit; retryable failures are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
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
from operator_tui.store.agent import pid_alive
from operator_tui.store.models import ActionRecord
from operator_tui.timeutil import to_text
from subjects.base import (
    ActionContext,
    ActionDef,
    ActionFailed,
    ActionParams,
    ActionRequest,
    Observation,
    Subject,
)

log = logging.getLogger("operator_tui.actions")
S = ActionState


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


@dataclass
class EngineStats:
    killswitch_latency_ms: list[float] = field(default_factory=list)


class ActionEngine:
    def __init__(self, store: Store, subject: Subject, run_id: int, settings: ActionSettings | None = None, *,
                 clock: Clock = SYSTEM_CLOCK, rng: random.Random | None = None, poll_interval: float = 0.05,
                 observe: Callable[[], Awaitable[Observation]] | None = None,
                 on_change: Callable[[ActionRecord], None] | None = None, run_scoped: bool = False):
        self.store = store
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

    # -- catalogue and validation ------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": a.name, "description": a.description, "risk": a.risk.value, "idempotent": a.idempotent,
                 "undo": a.undo, "parameters": a.schema()} for a in self.catalogue.values()]

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
            records.append(await self.store.create_action(
                name=v.definition.name, params=params, target=v.definition.target(v.params),
                risk=v.definition.risk.value, idempotent=v.definition.idempotent, requested_by=actor,
                preview=v.definition.preview(v.params), run_id=self.run_id, ticket_id=ticket_id,
                session_id=session_id, workflow_id=workflow_id, step=step, delay_s=v.request.delay_s,
                reason=v.request.reason,
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
        result = DryRun(v.definition.name, v.params.model_dump(mode="json"), v.definition.preview(v.params),
                        v.definition.risk.value, problems, self._needs_approval(policy, actor, v.definition.risk.value),
                        blocked)
        await self.store.audit(actor, "action.dry_run", "", {"name": result.name, "params": result.params,
                                                             "problems": problems, "blocked": blocked}, self.run_id)
        return result

    # -- running ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.policy = await load_policy(self.store, self.run_id)
        await self.reconcile_orphans()
        self._loop_task = asyncio.create_task(self._loop(), name="action-engine")

    async def stop(self) -> None:
        """Stop driving. In-flight executions are cancelled and recorded as such."""
        self._stopping = True
        for running in list(self._running.values()):
            running.cancel_reason = running.cancel_reason or "the operator is shutting down"
            running.task.cancel()
        if self._running:
            await asyncio.gather(*(r.task for r in self._running.values()), return_exceptions=True)
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass

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
                    running.cancel_reason = reason
                    running.task.cancel()
                    log.info("action %d: cancelling (%s)", action_id, reason)
            if not previous.killswitch:
                await cancel_pending(self.store, "system", reason, run_id=self.run_id)
        if self.policy.mode == "observe" and previous.mode != "observe":
            await cancel_pending(self.store, "system", "mode switched to observe", requested_by_agent_only=True,
                                 run_id=self.run_id)
        open_states = [s.value for s in (*PENDING, S.executing)]
        for action in reversed(await self.store.list_actions(states=open_states, run_id=self.run_id, limit=1000)):
            await self._advance(action)

    def _needs_approval(self, policy: Policy, actor: str, risk: str) -> bool:
        if actor == "agent" and policy.mode == "propose":
            return True
        return policy.needs_approval(risk)

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
                running.cancel_reason = action.cancel_requested
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
            if action.not_before is not None and now < action.not_before:
                if state == S.approved:
                    await self._move(action, S.scheduled, "system", f"runs at {to_text(action.not_before)}")
                return
            if action.id not in self._running:
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
                current = await self._move(action, S.executing, "system", "precheck passed on a fresh observation")
                if current is None:
                    return  # cancelled or decided meanwhile
                await self._attempts(current, definition, params, running)
        except asyncio.CancelledError:
            latest = await self.store.get_action(action.id)
            if latest is not None and latest.state in (S.executing.value, *[s.value for s in PENDING]):
                reason = running.cancel_reason or "cancelled"
                await self._move(latest, S.cancelled, "system", reason, error=reason)
        except Exception as e:
            log.exception("action %d crashed", action.id)
            latest = await self.store.get_action(action.id)
            if latest is not None and latest.state == S.executing.value:
                await self._move(latest, S.failed, "system", f"unexpected error: {type(e).__name__}: {e}",
                                 error=str(e))
        finally:
            self._running.pop(action.id, None)
            self._wake.set()

    def backoff(self, attempt: int) -> float:
        """Exponential with 'equal jitter': half fixed, half random, capped."""
        base = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return base / 2 + self.rng.uniform(0, base / 2)

    async def _attempts(self, action: ActionRecord, definition: ActionDef, params: ActionParams,
                        running: _Running) -> None:
        progress_notes: list[str] = []
        ctx = ActionContext(progress=progress_notes.append, timeout_s=self.settings.timeout_s, sleep=self.clock.sleep)
        attempt = 0
        while True:
            attempt += 1
            await self.store.update_action_fields(action.id, attempts=attempt)
            try:
                outcome = await asyncio.wait_for(definition.execute(params, ctx), self.settings.timeout_s)
            except ActionFailed as e:
                if e.retryable and attempt <= self.settings.max_retries:
                    delay = self.backoff(attempt)
                    await self.store.audit("system", "action.retry", f"action:{action.id}",
                                           {"attempt": attempt, "reason": e.reason, "retry_in_s": round(delay, 3)},
                                           self.run_id)
                    await self.clock.sleep(delay)
                    continue
                await self._move(action, S.failed, "system", e.reason, error=e.reason,
                                 result={"data": e.data, "progress": progress_notes, "attempts": attempt})
                return
            except TimeoutError:
                reason = f"no confirmation within {self.settings.timeout_s:g} s; it may still complete"
                await self._move(action, S.failed, "system", reason, error=reason,
                                 result={"progress": progress_notes, "attempts": attempt})
                return
            await self._move(action, S.succeeded, "system", outcome.detail,
                             result={"detail": outcome.detail, "data": outcome.data, "progress": progress_notes,
                                     "attempts": attempt})
            return

    # -- crash safety ----------------------------------------------------------------------

    async def reconcile_orphans(self) -> list[ActionRecord]:
        """Actions left `executing` by a process that died become `unknown`, then are checked
        against the system: done -> succeeded, not done -> failed. Never re-run."""
        out = []
        for action in await self.store.list_actions(states=[S.executing.value, S.unknown.value], limit=10_000):
            if action.state == S.executing.value:
                if pid_alive(action.owner_pid):
                    continue
                action = await self._move(action, S.unknown, "system",
                                          f"process {action.owner_pid} died while executing it") or action
            if action.state != S.unknown.value:
                continue
            definition = self.catalogue.get(action.name)
            if definition is None or definition.reconcile is None:
                out.append(action)
                continue
            params = definition.params.model_validate(action.params)
            try:
                verdict = await definition.reconcile(await self.observe(), params)
            except Exception as e:
                log.warning("reconciling action %d failed: %s", action.id, e)
                out.append(action)
                continue
            if verdict.took_effect is True:
                action = await self._move(action, S.succeeded, "system", f"reconciled: {verdict.detail}") or action
            elif verdict.took_effect is False:
                action = await self._move(action, S.failed, "system",
                                          f"reconciled: {verdict.detail}; not re-run", error=verdict.detail) or action
            out.append(action)
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
