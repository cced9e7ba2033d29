"""What demo chapters wait for, read from a real store, and the incident the timeline draws."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from operator_tui.actions.states import ActionState
from operator_tui.demo.events import check
from operator_tui.store import Store, TickWrite
from operator_tui.timeutil import utcnow
from scenarios.demo import Wait
from subjects.base import FaultRecord, Severity, TicketStatus, Violation
from tests.console import samples

VERIFIED = {"holds": True, "summary": "store_unreachable holds again for store:2", "observe_ms": 12.0}


@dataclass
class Incident:
    run_id: int
    ticket_id: int
    fault_id: int
    action_id: int


def wait(event: str, invariant: str | None = None) -> Wait:
    return Wait(event=event, invariant=invariant, timeout_s=10, on_timeout="no")


async def open_ticket(store: Store, run_id: int, invariant: str, entity: str) -> int:
    violation = Violation(invariant=invariant, entity=entity, severity=Severity.critical,
                          summary=f"{entity} is broken", evidence={})
    return (await store.apply_tick(TickWrite(run_id=run_id, open=[violation]))).opened[0].id


async def incident(store: Store, *, approve: bool = True, resolve: bool = True) -> Incident:
    """A fault, its ticket, the agent's session and diagnosis, one restart approved by a human."""
    run_id = await store.start_run("demo", "tikv")
    await store.record_fault(FaultRecord(subject="tikv", kind="kill_store", target="9", detail="an older run's"), "x",
                             await store.start_run("demo", "tikv"))
    fault = await store.record_fault(FaultRecord(subject="tikv", kind="kill_store", target="2",
                                                 detail="kill_store store_id=2"), "demo", run_id)
    ticket_id = await open_ticket(store, run_id, "store_unreachable", "store:2")
    session_id = await store.claim_ticket(ticket_id, run_id, "tikv|store:2", "embedded", 1)
    await store.update_session(session_id, diagnosis=samples.DIAGNOSIS)
    await store.add_ticket_event(ticket_id, "diagnosed", "agent", {"summary": samples.DIAGNOSIS["summary"],
                                                                   "confidence": 0.97})
    action = await store.create_action(name="restart_node", params={"store_id": 2}, target="store:2", risk="high",
                                       idempotent=True, requested_by="agent", run_id=run_id, ticket_id=ticket_id,
                                       session_id=session_id)
    await store.transition_action(action.id, ActionState.validated, "system", "precheck passed")
    await store.transition_action(action.id, ActionState.awaiting_approval, "system", "approval required")
    if approve:
        await store.transition_action(action.id, ActionState.approved, "human:sre", "approved by human:sre")
        await store.transition_action(action.id, ActionState.executing, "system", "running")
        await store.transition_action(action.id, ActionState.succeeded, "system", "store 2 restarted",
                                      fields={"result": {"detail": "store 2 restarted; its status port answers"}})
    if resolve:
        await store.update_session(session_id, verification={**VERIFIED, "observed_at": utcnow().isoformat()})
        await store.set_ticket_status(ticket_id, TicketStatus.resolved, "agent",
                                      {"by": "agent", "reason": VERIFIED["summary"], "verification": VERIFIED})
    return Incident(run_id, ticket_id, fault.id, action.id)


async def test_each_event_is_found_in_the_store(store: Store) -> None:
    before = utcnow()
    inc = await incident(store)
    since = before

    async def find(event: str, invariant: str | None = None, ticket_id: int | None = None):
        return await check(wait(event, invariant), store, inc.run_id, since, ticket_id, None)

    opened = await find("ticket_opened", "store_unreachable")
    assert opened.ticket_id == inc.ticket_id and opened.summary == f"ticket #{inc.ticket_id} store_unreachable on store:2"
    assert await find("ticket_opened", "leader_imbalance") is None
    diagnosis = await find("diagnosis_recorded", ticket_id=inc.ticket_id)
    assert diagnosis.summary == samples.DIAGNOSIS["root_cause"]
    assert diagnosis.detail[0].startswith("embedded diagnoser, 97% confident")
    assert "✘ The store's process is hung: rejected: the port refuses connections (score 0.0 vs 2.5)" in diagnosis.detail
    assert "→ restart_node store_id=2" in diagnosis.detail
    awaited = await find("action_awaiting_approval", ticket_id=inc.ticket_id)  # it waited, though it ran since
    assert awaited.summary == f"#{inc.action_id} restart_node store_id=2 awaits approval"
    assert awaited.detail == ("risk high: approval required", "now succeeded")
    executed = await find("action_executed")  # the ticket is found without being told
    assert executed.ok and executed.detail == ("risk high, approved by human:sre",
                                               "store 2 restarted; its status port answers")
    resolved = await find("ticket_resolved", ticket_id=inc.ticket_id)
    assert resolved.ok and resolved.detail[0] == f"resolved by agent: {VERIFIED['summary']}"
    events = (await store.incident(inc.ticket_id)).events
    assert [(e.source, e.kind) for e in events][-2:] == [("verification", "holds"), ("ticket", "resolved")]
    # a ticket opened before `since` (before the fault) is not the demo's incident
    assert await check(wait("ticket_opened"), store, inc.run_id, utcnow(), None, None) is None


async def test_an_escalated_ticket_ends_the_wait_as_not_planned(store: Store) -> None:
    inc = await incident(store, approve=False, resolve=False)
    await store.transition_action(inc.action_id, ActionState.rejected, "human:sre", "not now")
    assert await check(wait("action_executed"), store, inc.run_id, samples.T0, inc.ticket_id, None) is None
    await store.set_ticket_status(inc.ticket_id, TicketStatus.escalated, "agent",
                                  {"reason": "action restart_node rejected: not now"})
    for event in ("action_executed", "ticket_resolved"):
        found = await check(wait(event), store, inc.run_id, samples.T0, inc.ticket_id, None)
        assert found is not None and not found.ok, event
    assert "escalated with #" in (await check(wait("action_executed"), store, inc.run_id, samples.T0,
                                              inc.ticket_id, None)).summary


@pytest.mark.parametrize(("observation", "event", "summary"), [
    (samples.healthy_observation(), "cluster_healthy", "all up: 5 stores, 1 pd"),
    (samples.degraded_observation(), "cluster_healthy", None),
    (samples.unreachable_observation(), "cluster_healthy", None),
    (samples.healthy_observation(), "traffic_seen", "25000 requests/s, p99 6.1 ms, errors 0.0%"),
    (samples.unreachable_observation(), "traffic_seen", None),
])
async def test_cluster_events_come_from_the_latest_observation(store: Store, observation, event, summary) -> None:
    found = await check(wait(event), store, 1, samples.T0, None, observation)
    assert (found.summary if found else None) == summary


async def test_the_incident_holds_fault_ticket_agent_actions_and_verification_in_time_order(store: Store) -> None:
    # Faults injected from the CLI (no run) count while the ticket was open, not before or after.
    early = await store.record_fault(FaultRecord(subject="tikv", kind="slow_store", target="4"), "human:x")
    await store.mark_fault_reverted(early.id, "done", "human:x")
    inc = await incident(store, resolve=False)
    during = await store.record_fault(FaultRecord(subject="tikv", kind="disk_full", target="5"), "human:x")
    await store.set_ticket_status(inc.ticket_id, TicketStatus.resolved, "agent", {"by": "agent"})
    await store.record_fault(FaultRecord(subject="tikv", kind="slow_store", target="3"), "human:x")
    got = await store.incident(inc.ticket_id)
    assert [f.id for f in got.faults] == [inc.fault_id, during.id]
    kinds = [(e.source, e.kind) for e in got.events]
    assert kinds == [("fault", "injected"), ("ticket", "opened"), ("ticket", "claimed"), ("ticket", "diagnosed"),
                     ("action", "proposed"), ("action", "validated"), ("action", "awaiting_approval"),
                     ("action", "approved"), ("action", "executing"), ("action", "succeeded"), ("fault", "injected"),
                     ("ticket", "resolved")]
    assert [e.at for e in got.events] == sorted(e.at for e in got.events)
    approved = next(e for e in got.events if e.kind == "approved")
    assert approved.actor == "human:sre" and approved.risk == "high" and approved.ref == f"action:{inc.action_id}"
    assert await store.incident(999) is None
