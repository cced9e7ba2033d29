"""Snapshots of every screen, healthy and degraded, at a fixed terminal size.

Each app is fed the messages its workers would post (no store, no timers), with a frozen clock,
no animations and no blinking cursor, so a screenshot depends only on what it was fed.
Plain `def` tests: snap_compare runs the app itself. Update with `pytest --snapshot-update`.
"""

from __future__ import annotations

from typing import Any

from screens.messages import (
    ActionHistoryLoaded,
    AgentActivity,
    ApprovalContext,
    AuditLoaded,
    ClusterUpdate,
    ConsoleStarted,
    StoreUpdate,
    TicketDetailLoaded,
)
from tests.console import samples
from tests.console.conftest import SIZE, fed_app
from widgets.workload import WorkloadPanel

DISPLAY = f"TiKV via PD {samples.PD_URL} (simulated)"


async def _start(pilot: Any, *, cluster: ClusterUpdate, store: StoreUpdate, events: list[AgentActivity] = ()) -> None:
    app = pilot.app
    app.post_message(ConsoleStarted(1, "tikv", DISPLAY, str(samples.SNAPSHOT_DB), samples.PD_URL))
    app.post_message(cluster)
    app.post_message(store)
    for event in events:
        app.post_message(event)
    await pilot.pause()
    panel = app.screen_stack[0].query_one(WorkloadPanel)
    while panel.plot is None:  # plotext loads in a thread after the first frame
        await pilot.pause(0.02)
    await pilot.pause()


def _healthy(pilot_tickets: list | None = None, actions: list | None = None, **policy: Any) -> dict[str, Any]:
    return {
        "cluster": ClusterUpdate(samples.healthy_observation(), 60, [], [], [], samples.series(60)),
        "store": StoreUpdate(samples.policy(**policy), pilot_tickets or [], actions or [], [], []),
    }


def _degraded(*, awaiting: bool = False) -> dict[str, Any]:
    tickets = samples.tickets_mixed()
    active = [t for t in tickets if t.status != "resolved"]
    actions = samples.actions_mixed()
    return {
        "cluster": ClusterUpdate(samples.degraded_observation(), 60, active, [], [], samples.series(60, dip_from=30)),
        "store": StoreUpdate(samples.policy(), tickets, actions, [actions[0]] if awaiting else [], [samples.fault()]),
        "events": [
            AgentActivity(1, 5, "store:2", "context", "attempt 1: gathered context for store_unreachable on store:2"),
            AgentActivity(1, 5, "store:2", "diagnosis", samples.DIAGNOSIS["root_cause"], samples.DIAGNOSIS),
            AgentActivity(1, 5, "store:2", "actions", "handed 1 action(s) to the engine",
                          [{"id": 4, "name": "restart_node", "params": {"store_id": 2}, "delay_s": 0}]),
        ],
    }


# -- cluster ------------------------------------------------------------------------------------------


def test_cluster_healthy(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, **_healthy())

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


def test_cluster_degraded(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, **_degraded())

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


def test_cluster_unreachable_with_kill_switch(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, cluster=ClusterUpdate(samples.healthy_observation(), 59, [], [], [], samples.series(59)),
                     store=StoreUpdate(samples.policy(killswitch=True, killswitch_by="human:sre"), [], [], [], []))
        pilot.app.post_message(ClusterUpdate(samples.unreachable_observation(), 60, [], [], [], samples.series(59)))
        await pilot.pause()

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


def test_terminal_too_small(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, **_healthy())

    assert snap_compare(fed_app(), terminal_size=(70, 20), run_before=run_before)


# -- tickets --------------------------------------------------------------------------------------------


def test_tickets_healthy(snap_compare) -> None:
    resolved = [t for t in samples.tickets_mixed() if t.status == "resolved"]

    async def run_before(pilot) -> None:
        await _start(pilot, **_healthy(resolved))
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


def test_tickets_degraded_open_filter(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, **_degraded())
        await pilot.press("2", "o", "down")
        await pilot.pause()

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


def _detail(resolved: bool):
    async def run_before(pilot) -> None:
        await _start(pilot, **(_healthy(samples.tickets_mixed()) if resolved else _degraded()))
        await pilot.press("2", "enter")
        await pilot.pause()
        pilot.app.screen.post_message(TicketDetailLoaded(5, samples.ticket_detail(resolved=resolved)))
        await pilot.pause()

    return run_before


def test_ticket_detail_resolved(snap_compare) -> None:
    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=_detail(True))


def test_ticket_detail_investigating(snap_compare) -> None:
    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=_detail(False))


# -- approval -------------------------------------------------------------------------------------------


def test_approval_modal(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, **_degraded(awaiting=True))
        pilot.app.screen.post_message(ApprovalContext(
            4, "restart_node", samples.DIAGNOSIS, samples.ticket(5),
            {"name": "restart_node", "params": {"store_id": 2}, "preview": "POST /sim/v1/stores/2/restart",
             "risk": "high", "problems": [], "needs_approval": True, "blocked": None}))
        await pilot.pause()

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


def test_approval_modal_blocked_while_rejecting(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, **_degraded(awaiting=True))
        pilot.app.screen.post_message(ApprovalContext(
            4, "restart_node", samples.DIAGNOSIS, samples.ticket(5),
            {"name": "restart_node", "params": {"store_id": 2}, "preview": "POST /sim/v1/stores/2/restart",
             "risk": "high", "problems": ["store 2 is already running"], "needs_approval": True,
             "blocked": "the kill switch is engaged (by human:sre)"}))
        await pilot.press("n", *"runs already")
        await pilot.pause()

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


# -- actions and audit ---------------------------------------------------------------------------------------


def test_actions_healthy(snap_compare) -> None:
    done = [a for a in samples.actions_mixed() if a.state == "succeeded"]

    async def run_before(pilot) -> None:
        await _start(pilot, **_healthy(actions=done))
        await pilot.press("3")
        await pilot.pause()
        pilot.app.screen.post_message(ActionHistoryLoaded(1, samples.transitions(1)))
        await pilot.pause()

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


def test_actions_degraded(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, **_degraded())
        await pilot.press("3", "down", "down")
        await pilot.pause()
        pilot.app.screen.post_message(ActionHistoryLoaded(2, samples.transitions(2)[:5]))
        await pilot.pause()

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


def test_audit_chain_intact(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, **_healthy())
        await pilot.press("4")
        await pilot.pause()
        pilot.app.screen.post_message(AuditLoaded(samples.audit_events(8), True, 8, ""))
        await pilot.pause()

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)


def test_audit_chain_broken(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _start(pilot, **_degraded())
        await pilot.press("4")
        await pilot.pause()
        pilot.app.screen.post_message(AuditLoaded(samples.audit_events(8), False, 5,
                                                  "event 6 was altered (its hash does not match its content)"))
        await pilot.pause()

    assert snap_compare(fed_app(), terminal_size=SIZE, run_before=run_before)
