"""Crash recovery does not hinge on PIDs (issue 10, defect 2). A restarted operator may get the same
PID as the one that died (PID 1 in a container, every time): work left by the dead one must still
be found and taken over, and work of a live one left alone."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from operator_tui.actions.engine import ActionEngine
from operator_tui.actions.states import ActionState
from operator_tui.agent.embedded import EmbeddedDiagnoser
from operator_tui.agent.loop import Agent
from operator_tui.config import AgentSettings
from operator_tui.monitor import Monitor
from operator_tui.store import Store, TickWrite
from operator_tui.store.liveness import lock_path
from subjects.base import Severity, TicketStatus, Violation
from subjects.tikv.sim import SimThread
from tests.core.conftest import make_subject
from tests.core.test_safety_metrics import Gauge


async def leave_work_behind(db_path: Path, pd_url: str) -> tuple[int, int, int, int]:
    """A 'previous process' with our very PID: a run with an executing (sent) action, a running
    session on an investigating ticket, then its store closes without ending the run, as a killed
    process leaves it. Returns (run id, action id, ticket id, session id)."""
    store = await Store.open(db_path)
    try:
        run_id = await store.start_run("headless", "tikv")
        violation = Violation(invariant="leftover_evict_scheduler", entity="store:3", severity=Severity.warning,
                              summary="an evict-leader scheduler keeps healthy store 3 at 0 leaders",
                              evidence={"store_id": 3})
        ticket = (await store.apply_tick(TickWrite(run_id=run_id, open=[violation]))).opened[0]
        session_id = await store.claim_ticket(ticket.id, run_id, "tikv|store:3", "embedded", 1)
        action = await store.create_action(name="remove_scheduler", params={"name": "evict-leader-scheduler-3"},
                                           target="store:3", risk="low", idempotent=True, requested_by="agent",
                                           run_id=run_id, ticket_id=ticket.id, session_id=session_id)
        for state in (ActionState.validated, ActionState.approved, ActionState.executing):
            assert await store.transition_action(action.id, state, "system", "test")
        await store.mark_sent(action.id, None)
        return run_id, action.id, ticket.id, session_id
    finally:
        await store.close()  # no end_run: the process "died"


async def test_work_of_a_dead_process_with_our_own_pid_is_taken_over(sim: SimThread, db_path: Path) -> None:
    import httpx

    httpx.post(f"{sim.pd_url}/pd/api/v1/schedulers", json={"name": "evict-leader-scheduler", "store_id": 3})
    httpx.delete(f"{sim.pd_url}/pd/api/v1/schedulers/evict-leader-scheduler-3")  # it "ran" before the crash
    dead_run, action_id, ticket_id, session_id = await leave_work_behind(db_path, sim.pd_url)
    store = await Store.open(db_path)
    subject = await make_subject(sim.pd_url)
    try:
        assert (await store.get_run(dead_run)).pid == os.getpid(), "the dead run had our PID"
        run_id = await store.start_run("headless", "tikv")
        engine = ActionEngine(store, subject, run_id)
        agent = Agent(store, subject, engine, run_id, EmbeddedDiagnoser(), AgentSettings(max_attempts=3))
        await engine.reconcile_orphans()
        await agent.recover_orphans()
        action = await store.get_action(action_id)
        states = [t.to_state for t in await store.action_transitions(action_id)]
        assert states[-2:] == ["unknown", "succeeded"] and "reconciled: it took effect" in action.reason
        assert states.count("executing") == 1, "never re-run"
        assert (await store.get_session(session_id)).status == "interrupted"
        ticket = await store.get_ticket(ticket_id)
        assert ticket.status == TicketStatus.open, "open again for another attempt"
        run = await store.get_run(dead_run)
        assert run.status == "died" and run.ended_at is not None
        # The restarted monitor carries on with the dead run's tickets.
        monitor = Monitor(subject, store, run_id, interval=0.2)
        await monitor.adopt_orphans()
        assert (await store.get_ticket(ticket_id)).run_id == run_id
        await store.end_run(run_id)
    finally:
        await subject.aclose()
        await store.close()


async def test_a_live_process_keeps_its_work(sim: SimThread, db_path: Path, tmp_path: Path) -> None:
    """Another live process (its run's lock held) executing an action: nobody reconciles it."""
    script = tmp_path / "holder.py"
    script.write_text(
        "import asyncio, sys\n"
        "from operator_tui.store import Store\n"
        "async def main():\n"
        "    store = await Store.open(sys.argv[1])\n"
        "    run = await store.start_run('headless', 'tikv')\n"
        "    a = await store.create_action(name='wait', params={'seconds': 1}, target='', risk='low',\n"
        "                                  idempotent=True, requested_by='human:t', run_id=run)\n"
        "    from operator_tui.actions.states import ActionState as S\n"
        "    for s in (S.validated, S.approved, S.executing):\n"
        "        await store.transition_action(a.id, s, 'system', 'test')\n"
        "    print(a.id, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n")
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), str(db_path),
                                                stdout=asyncio.subprocess.PIPE)
    store = await Store.open(db_path)
    subject = await make_subject(sim.pd_url)
    try:
        action_id = int((await asyncio.wait_for(proc.stdout.readline(), 60)).decode())
        engine = ActionEngine(store, subject, await store.start_run("headless", "tikv"))
        await engine.reconcile_orphans()
        assert (await store.get_action(action_id)).state == "executing"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await engine.reconcile_orphans()
        assert (await store.get_action(action_id)).state != "executing"
        assert not lock_path(db_path, 1).exists(), "the dead run's lock file is cleaned up"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await subject.aclose()
        await store.close()


@pytest.mark.parametrize("ended", ["completed", "died"])
async def test_waiting_actions_of_an_ended_run_expire_and_cannot_be_approved(db_path: Path, ended: str) -> None:
    from operator_tui.actions import decisions
    from operator_tui.errors import UserError

    store = await Store.open(db_path)
    try:
        run_id = await store.start_run("headless", "tikv")
        action = await store.create_action(name="drain_store", params={"store_id": 2}, target="store:2", risk="high",
                                           idempotent=True, requested_by="agent", run_id=run_id)
        await store.transition_action(action.id, ActionState.validated, "system", "test")
        await store.transition_action(action.id, ActionState.awaiting_approval, "system", "test")
        if ended == "completed":
            await store.end_run(run_id)
        else:
            await store.close()
            store = await Store.open(db_path)
        with pytest.raises(UserError, match="would never run"):
            await decisions.approve(store, action.id, "human:alice")
        final = await store.get_action(action.id)
        assert final.state == "expired" and f"run {run_id} ended" in final.reason
    finally:
        await store.close()


async def test_a_ticket_left_investigating_without_a_session_is_taken_up_again(db_path: Path) -> None:
    """Found by the kill campaign: a process killed between ending a session and moving its ticket
    left the ticket `investigating` for ever. Both now change in one transaction, and a ticket
    found in that state (left by an older version) is opened again."""
    store = await Store.open(db_path)
    try:
        run_id = await store.start_run("headless", "toy")
        violation = Violation(invariant="node_stuck", entity="node:2", severity=Severity.warning, summary="stuck")
        ticket = (await store.apply_tick(TickWrite(run_id=run_id, open=[violation]))).opened[0]
        session_id = await store.claim_ticket(ticket.id, run_id, "toy|node:2", "embedded", 1)
        await store.end_session(session_id, "resolved", "fixed")  # ... and the process died right here
        gauge = Gauge()
        agent = Agent(store, gauge, ActionEngine(store, gauge, run_id), run_id, EmbeddedDiagnoser(),
                      AgentSettings(max_attempts=3))
        await agent.recover_orphans()
        assert (await store.get_ticket(ticket.id)).status == TicketStatus.open
        # The fix itself: ending a session moves its ticket in the same transaction.
        session_id = await store.claim_ticket(ticket.id, run_id, "toy|node:2", "embedded", 2)
        assert await store.finish_session(session_id, "resolved", "fixed", ticket.id, TicketStatus.resolved,
                                          "agent", {"by": "agent"})
        assert (await store.get_ticket(ticket.id)).status == TicketStatus.resolved
    finally:
        await store.close()
