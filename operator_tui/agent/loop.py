"""The agent loop: one session per attempt at a ticket, one running session per entity.

    claim -> gather context -> diagnose -> (observe mode: stop here) -> hand actions to the engine
    -> wait for them -> wait `verify_delay_s` -> re-observe, re-check the ticket's invariant on
    `clear_after` consecutive evaluated observations (as the monitor needs to resolve a ticket)
    -> clear: resolved with the verification evidence | still broken: retry within budget, then escalate

An escalated ticket is a human's: the agent never claims it again (the monitor still resolves it
when its invariant holds). A stop (SIGTERM, quit) ends running sessions as interrupted and their
tickets as escalated, never leaves them running. A session whose process died (its run ended
without it) is found by any live agent: interrupted, and its ticket open again for another
attempt while attempts remain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from operator_tui.actions.engine import ActionEngine, ActionRequestError
from operator_tui.actions.states import TERMINAL, ActionState
from operator_tui.agent.context import AgentContext, similar_tickets
from operator_tui.agent.diagnosis import Diagnosis
from operator_tui.clock import SYSTEM_CLOCK, Clock
from operator_tui.config import AgentSettings
from operator_tui.policy import load_policy
from operator_tui.store import Store
from operator_tui.timeutil import utcnow
from subjects.base import ActionRequest, Observation, Subject, Ticket, TicketStatus, Violation

log = logging.getLogger("operator_tui.agent")
UNKNOWN_WAIT_S = 30.0  # how long an action interrupted after sending is given to be reconciled


class DiagnosisFailed(Exception):
    """The diagnoser could not produce a valid Diagnosis. `retryable`: worth another attempt."""

    def __init__(self, reason: str, *, retryable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass
class AgentEvent:
    """One step of a session, for live views (the console's agent panel)."""

    session_id: int
    ticket_id: int
    entity: str
    kind: str
    title: str
    content: Any = None


class Recorder:
    """Writes a session's steps to the store and tells listeners."""

    def __init__(self, store: Store, session_id: int, ticket: Ticket, listener: Callable[[AgentEvent], None] | None):
        self.store = store
        self.session_id = session_id
        self.ticket = ticket
        self.listener = listener
        self.input_tokens = 0
        self.output_tokens = 0

    async def step(self, kind: str, title: str, content: Any = None) -> None:
        await self.store.add_step(self.session_id, kind, title, content)
        if self.listener is not None:
            self.listener(AgentEvent(self.session_id, self.ticket.id, self.ticket.entity, kind, title, content))


class Diagnoser(Protocol):
    name: str

    async def diagnose(self, context: AgentContext, record: Recorder) -> Diagnosis: ...


class Agent:
    def __init__(self, store: Store, subject: Subject, engine: ActionEngine, run_id: int, diagnoser: Diagnoser,
                 settings: AgentSettings | None = None, *, history: Callable[[], list[Observation]] | None = None,
                 clock: Clock = SYSTEM_CLOCK, on_event: Callable[[AgentEvent], None] | None = None,
                 max_concurrent: int = 4, poll_interval: float = 0.5, clear_after: int = 3,
                 verify_interval_s: float = 1.0, claim_scope: str | None = None, memory: str = "all"):
        self.store = store
        self.memory = memory  # "all": similar past tickets from every run; "run": this run's only
        # One session per entity across processes, within a scope: the subject (every process
        # watching the same cluster), or one run (an eval trial's lab is its own cluster).
        self.claim_scope = claim_scope or subject.name
        self.subject = subject
        self.engine = engine
        self.run_id = run_id
        self.diagnoser = diagnoser
        self.settings = settings or AgentSettings()
        self.history = history or (lambda: [])
        self.clock = clock
        self.on_event = on_event
        self.max_concurrent = max_concurrent
        self.poll_interval = poll_interval
        # Verification needs as many clean, evaluated observations as the monitor needs to resolve.
        self.clear_after = max(1, clear_after)
        self.verify_interval_s = verify_interval_s
        self._recovered_at = float("-inf")
        self.invariants = {i.name: i for i in subject.invariants()}
        self.runbooks = subject.runbooks()
        # Knobs the runbooks read (e.g. how long after a drain to schedule the undrain).
        self.runbook_settings: dict[str, Any] = {}
        self._sessions: dict[int, tuple[asyncio.Task[None], int]] = {}  # ticket id -> (task, session id)
        self._not_before: dict[int, float] = {}  # ticket id -> monotonic time of the next attempt

    # -- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        await self.recover_orphans()
        try:
            while not stop.is_set():
                try:
                    await self.poll()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("agent poll failed")
                try:
                    await asyncio.wait_for(stop.wait(), self.poll_interval)
                except TimeoutError:
                    pass
        finally:
            await self.shutdown("interrupted: the operator stopped")

    async def poll(self) -> None:
        if self.clock.monotonic() - self._recovered_at >= 1.0:
            await self.recover_orphans()
        for ticket_id in [t for t, (task, _) in self._sessions.items() if task.done()]:
            del self._sessions[ticket_id]
        if len(self._sessions) >= self.max_concurrent:
            return
        for ticket in reversed(await self.store.list_tickets(run_id=self.run_id, statuses=["open"])):
            if ticket.id in self._sessions or self.clock.monotonic() < self._not_before.get(ticket.id, 0.0):
                continue
            if len(self._sessions) >= self.max_concurrent:
                break
            await self._start(ticket)

    async def _start(self, ticket: Ticket) -> None:
        sessions = await self.store.sessions_for_ticket(ticket.id)
        attempt = len(sessions) + 1
        age = (utcnow() - ticket.opened_at).total_seconds()
        if attempt > self.settings.max_attempts or age > self.settings.max_ticket_seconds:
            why = (f"{attempt - 1} attempts did not fix it" if attempt > self.settings.max_attempts
                   else f"still broken after {age:.0f} s")
            await self._escalate_unclaimed(ticket, why, sessions)
            return
        session_id = await self.store.claim_ticket(ticket.id, self.run_id, f"{self.claim_scope}|{ticket.entity}",
                                                   self.diagnoser.name, attempt)
        if session_id is None:
            return  # someone else holds the ticket or its entity
        task = asyncio.create_task(self._session(ticket, session_id, attempt), name=f"agent-ticket-{ticket.id}")
        self._sessions[ticket.id] = (task, session_id)

    async def shutdown(self, reason: str) -> None:
        for ticket_id, (task, session_id) in list(self._sessions.items()):
            if not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
                await self._end(session_id, ticket_id, "interrupted", reason, TicketStatus.escalated,
                                {"reason": reason})
        self._sessions.clear()

    async def recover_orphans(self) -> None:
        """Sessions left running by a run that ended without them (its process died): interrupted;
        their tickets open again while attempts remain (the lost session counts as one), else
        escalated to a human."""
        self._recovered_at = self.clock.monotonic()
        await self.store.reap_dead_runs()
        for s in await self.store.orphaned_sessions():
            attempts = len(await self.store.sessions_for_ticket(s.ticket_id))
            status, detail = self._after_loss(attempts, f"the process of run {s.run_id} stopped during attempt "
                                                        f"{attempts}")
            await self.store.finish_session(s.id, "interrupted", f"the process of run {s.run_id} stopped while it ran",
                                            s.ticket_id, status, "system", detail)
        for t in await self.store.investigating_without_session():
            if t.id in self._sessions:
                continue  # ours, between its claim and its first step
            attempts = len(await self.store.sessions_for_ticket(t.id))
            status, detail = self._after_loss(attempts, "no session holds it any more")
            await self.store.set_ticket_status(t.id, status, "system", detail, expect=(TicketStatus.investigating,))

    def _after_loss(self, attempts: int, what: str) -> tuple[TicketStatus, dict[str, Any]]:
        """Where a ticket goes when the session working on it was lost: open again while attempts
        remain (the lost one counts), else a human's."""
        if attempts < self.settings.max_attempts:
            return TicketStatus.open, {"reason": f"{what}: open again for another attempt ({attempts} of "
                                                 f"{self.settings.max_attempts} used)"}
        return TicketStatus.escalated, {"reason": f"interrupted ({what}) and {attempts} attempts are used up"}

    # -- one session --------------------------------------------------------------------------

    async def _session(self, ticket: Ticket, session_id: int, attempt: int) -> None:
        record = Recorder(self.store, session_id, ticket, self.on_event)
        try:
            await self._attempt(ticket, session_id, attempt, record)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("agent session %d failed", session_id)
            await record.step("error", f"session failed: {type(e).__name__}: {e}")
            await self._end(session_id, ticket.id, "failed", f"{type(e).__name__}: {e}", TicketStatus.escalated,
                            {"reason": f"the agent failed: {type(e).__name__}: {e}"})

    async def gather(self, ticket: Ticket, attempt: int) -> AgentContext:
        obs = await self.subject.observe()
        invariant = self.invariants.get(ticket.invariant)
        violation = None
        if invariant is not None and (obs.reachable or invariant.on_unreachable):
            found = invariant.evaluate(obs, self.history()).violations
            violation = next((v for v in found if v.entity == ticket.entity), None)
        still = violation is not None
        if violation is None:
            violation = Violation(invariant=ticket.invariant, entity=ticket.entity, severity=ticket.severity,
                                  summary=ticket.summary, evidence=ticket.evidence)
        previous = []
        for a in reversed(await self.store.list_actions(ticket_id=ticket.id)):
            previous.append({"id": a.id, "name": a.name, "params": a.params, "state": a.state, "reason": a.reason})
        metric_history: dict[str, list[tuple[str, float]]] = {}
        for metric in ("leader_count", "qps", "p99_ms", "slow_score"):
            series = await self.store.samples(self.run_id, ticket.entity, metric, limit=60)
            if series:
                metric_history[metric] = series
        for metric in ("qps", "error_rate", "p99_ms"):
            series = await self.store.samples(self.run_id, "cluster", metric, limit=60)
            if series:
                metric_history[f"cluster.{metric}"] = series
        pending = [{"id": a.id, "name": a.name, "params": a.params, "state": a.state,
                    "not_before": a.not_before.isoformat() if a.not_before else None}
                   for a in await self.store.list_actions(
                       states=["proposed", "validated", "awaiting_approval", "approved", "scheduled"],
                       run_id=self.run_id)]
        return AgentContext(
            ticket=ticket, violation=violation, observation=obs, history=self.history(),
            runbook=self.runbooks.get(ticket.invariant), invariant=invariant, catalogue=self.engine.describe(),
            attempt=attempt, ticket_age_s=(utcnow() - ticket.opened_at).total_seconds(), still_violated=still,
            metric_history=metric_history, similar=await similar_tickets(self.store, ticket,
                                                                     run_id=self.run_id if self.memory == "run" else None),
            timeline=[e.model_dump(mode="json") for e in await self.store.ticket_events(ticket.id)],
            previous_actions=previous, allow_destructive=self.settings.allow_destructive,
            settings={"pending_actions": pending, **self.runbook_settings},
        )

    async def _attempt(self, ticket: Ticket, session_id: int, attempt: int, record: Recorder) -> None:
        context = await self.gather(ticket, attempt)
        await record.step("context", f"attempt {attempt}: gathered context for {ticket.invariant} on {ticket.entity}",
                          context.summary())
        try:
            diagnosis = await self.diagnoser.diagnose(context, record)
        except DiagnosisFailed as e:
            await record.step("error", f"no diagnosis: {e.reason}")
            await self.store.update_session(session_id, input_tokens=record.input_tokens,
                                            output_tokens=record.output_tokens)
            await self._retry_or_escalate(ticket, session_id, attempt, f"no diagnosis: {e.reason}",
                                          retry=e.retryable)
            return
        await self.store.update_session(session_id, diagnosis=diagnosis.model_dump(mode="json"),
                                        input_tokens=record.input_tokens, output_tokens=record.output_tokens)
        await record.step("diagnosis", diagnosis.root_cause, diagnosis.model_dump(mode="json"))
        await self.store.add_ticket_event(ticket.id, "diagnosed", "agent",
                                          {"session_id": session_id, "summary": diagnosis.summary,
                                           "confidence": diagnosis.confidence})

        policy = await load_policy(self.store, self.run_id)
        if policy.mode == "observe":
            await self._end(session_id, ticket.id, "diagnosed", "observe mode: diagnosis only",
                            TicketStatus.escalated, {"reason": "observe mode: the agent only diagnoses; a human acts",
                                                     "diagnosis": diagnosis.summary})
            return
        if diagnosis.escalate or not diagnosis.recommended_actions:
            await self._end(session_id, ticket.id, "escalated", diagnosis.expected_outcome or diagnosis.root_cause,
                            TicketStatus.escalated, {"reason": "no action the agent may take fixes this",
                                                     "diagnosis": diagnosis.summary,
                                                     "advice": diagnosis.expected_outcome})
            return

        requests = [ActionRequest(name=a.name, params=a.params, reason=a.reason, delay_s=a.delay_s)
                    for a in diagnosis.recommended_actions]
        try:
            records = await self.engine.submit(requests, actor="agent", ticket_id=ticket.id, session_id=session_id)
        except ActionRequestError as e:
            await record.step("error", "the engine refused the recommended actions", {"problems": e.problems})
            await self._retry_or_escalate(ticket, session_id, attempt,
                                          "recommended actions were invalid: " + "; ".join(e.problems))
            return
        await record.step("actions", f"handed {len(records)} action(s) to the engine",
                          [{"id": r.id, "name": r.name, "params": r.params, "delay_s": r.delay_s} for r in records])

        now_steps = []
        for r in records:
            if r.delay_s > 0 and r.step > 0:
                break
            now_steps.append(r.id)
        waited = self.engine.settings.approval_timeout_s + self.engine.settings.timeout_s * len(now_steps) + 30
        settled = TERMINAL | {ActionState.unknown}
        finals = await self.engine.wait_for(now_steps, timeout=waited, until=settled)
        if any(a.state == ActionState.unknown.value for a in finals):
            # Interrupted after sending: the engine reconciles it now; give it the time to.
            finals = await self.engine.wait_for(now_steps, timeout=UNKNOWN_WAIT_S)
        summary = [{"id": a.id, "name": a.name, "state": a.state, "reason": a.reason} for a in finals]
        await record.step("action_results", ", ".join(f"{a.name}: {a.state}" for a in finals), summary)
        bad = [a for a in finals if a.state != ActionState.succeeded.value]
        if bad:
            a = bad[0]
            reason = f"action {a.name} {a.state}: {a.reason}"
            # A human's no, or an outcome nobody can tell (retrying could apply it twice): a human's call.
            human_said_no = a.state in (ActionState.rejected.value, ActionState.cancelled.value,
                                        ActionState.expired.value, ActionState.unknown.value)
            await self._retry_or_escalate(ticket, session_id, attempt, reason, retry=not human_said_no)
            return

        await self.clock.sleep(self.settings.verify_delay_s)
        verification = await self.verify(ticket)
        await self.store.update_session(session_id, verification=verification)
        await record.step("verification", verification["summary"], verification)
        if verification["holds"]:
            await self._end(session_id, ticket.id, "resolved", verification["summary"], TicketStatus.resolved,
                            {"by": "agent", "reason": verification["summary"], "verification": verification,
                             "session_id": session_id})
        else:
            await self._retry_or_escalate(ticket, session_id, attempt, verification["summary"])

    async def verify(self, ticket: Ticket) -> dict[str, Any]:
        """Re-observe and re-run the ticket's invariant for its entity until it held on `clear_after`
        consecutive evaluated observations (the monitor's rule), or was violated (not fixed), or
        could not be evaluated often enough (cannot verify: missing data is never a pass)."""
        t0 = time.monotonic()
        invariant = self.invariants.get(ticket.invariant)
        clean = 0
        unevaluated: list[str] = []
        obs = None
        for number in range(self.clear_after * 3):
            if number:
                await self.clock.sleep(self.verify_interval_s)
            obs = await self.subject.observe()
            if invariant is None:
                break
            if not obs.reachable and not invariant.on_unreachable:
                clean = 0
                unevaluated.append(f"the system is unreachable ({obs.error})")
                continue
            result = invariant.evaluate(obs, self.history())
            violations = [v for v in result.violations if v.entity == ticket.entity]
            if violations:
                return self._verification(ticket, obs, t0, False, f"{ticket.invariant} still violated: "
                                          f"{violations[0].summary}", violations[0].evidence, clean)
            if not result.evaluated(ticket.entity):
                clean = 0
                unevaluated.append("; ".join(n.reason for n in result.not_evaluated))
                continue
            clean += 1
            if clean >= self.clear_after:
                node = obs.node(ticket.entity)
                evidence = {"state": node.state, "detail": node.state_detail, "metrics": node.metrics} if node else {}
                return self._verification(ticket, obs, t0, True, f"{ticket.invariant} holds again for {ticket.entity} "
                                          f"({clean} consecutive observations)", evidence, clean)
        if invariant is None:
            return self._verification(ticket, obs, t0, False, f"cannot check {ticket.invariant}", {}, 0)
        return self._verification(ticket, obs, t0, False, f"cannot verify {ticket.invariant}: "
                                  f"{unevaluated[-1] if unevaluated else 'no clean observations'}",
                                  {"not_evaluated": unevaluated[-3:]}, clean)

    def _verification(self, ticket: Ticket, obs: Observation, t0: float, holds: bool, summary: str,
                      evidence: dict[str, Any], clean: int) -> dict[str, Any]:
        return {
            "holds": holds,
            "invariant": ticket.invariant,
            "entity": ticket.entity,
            "summary": summary,
            "observed_at": obs.at.isoformat(),
            "observe_ms": round((time.monotonic() - t0) * 1000, 1),
            "clean_observations": clean,
            "required": self.clear_after,
            "evidence": evidence,
        }

    async def _retry_or_escalate(self, ticket: Ticket, session_id: int, attempt: int, reason: str,
                                 retry: bool = True) -> None:
        age = (utcnow() - ticket.opened_at).total_seconds()
        if retry and attempt < self.settings.max_attempts and age < self.settings.max_ticket_seconds:
            self._not_before[ticket.id] = self.clock.monotonic() + max(1.0, self.settings.verify_delay_s)
            await self._end(session_id, ticket.id, "not_fixed", reason, TicketStatus.open,
                            {"reason": reason, "next": f"attempt {attempt + 1}"})
        else:
            tried = [{"name": a.name, "params": a.params, "state": a.state}
                     for a in reversed(await self.store.list_actions(ticket_id=ticket.id))]
            await self._end(session_id, ticket.id, "escalated", reason, TicketStatus.escalated,
                            {"reason": reason, "attempts": attempt, "tried": tried})

    async def _escalate_unclaimed(self, ticket: Ticket, why: str, sessions: list[Any]) -> None:
        tried = [{"name": a.name, "params": a.params, "state": a.state}
                 for a in reversed(await self.store.list_actions(ticket_id=ticket.id))]
        await self.store.set_ticket_status(ticket.id, TicketStatus.escalated, "agent",
                                           {"reason": why, "attempts": len(sessions), "tried": tried},
                                           expect=(TicketStatus.open,))

    async def _end(self, session_id: int, ticket_id: int, status: str, outcome: str, ticket_status: TicketStatus,
                   detail: dict[str, Any]) -> None:
        await self.store.finish_session(session_id, status, outcome, ticket_id, ticket_status, "agent",
                                        {"session_id": session_id, **detail})
        log.info("ticket #%d: session %d %s (%s)", ticket_id, session_id, status, outcome)
        if self.on_event is not None:
            ticket = await self.store.get_ticket(ticket_id)
            self.on_event(AgentEvent(session_id, ticket_id, ticket.entity if ticket else "", "end", f"{status}: {outcome}",
                                     {"status": status, "ticket_status": ticket_status.value}))
