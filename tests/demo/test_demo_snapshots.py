"""Snapshots of each kind of demo chapter, of the narrow layout, and of the incident timeline.

The demo console is fed what its workers and its director would post (no store, no timers), with
a frozen clock and no animations. Plain `def` tests: snap_compare runs the app itself.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from textual.app import App, ComposeResult
from textual.containers import VerticalScroll

from operator_tui.store.incident import Incident, IncidentEvent
from screens.incident import timeline_data
from screens.messages import ClusterUpdate, ConsoleStarted, DemoUpdate, IncidentLoaded, StoreUpdate
from tests.console import samples
from tests.console.conftest import SIZE
from tests.demo.conftest import fed_demo_app, happened, progress
from widgets.incident_timeline import IncidentTimeline
from widgets.workload import WorkloadPanel

NARROW = (100, 30)
DIAGNOSIS_LINES = (
    "embedded diagnoser, 97% confident: store 2 does not answer on its status port",
    "✔ The store's TiKV process is dead",
    "✘ The network between the operator and the store is broken: rejected: peers report it down too",
    "✘ The store's process is hung: rejected: the port refuses connections",
    "→ restart_node store_id=2",
)


def _run_before(demo: Any, *, degraded: bool = False, resolved: bool = False, incident: Incident | None = None):
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        app.post_message(ConsoleStarted(1, "tikv", f"TiKV via PD {samples.PD_URL} (simulated)",
                                        str(samples.SNAPSHOT_DB), samples.PD_URL))
        tickets = [samples.ticket(5, status="resolved" if resolved else "investigating",
                                  resolved=44 if resolved else None)] if degraded or resolved else []
        active = [t for t in tickets if t.status != "resolved"]
        obs = samples.degraded_observation() if degraded else samples.healthy_observation()
        app.post_message(ClusterUpdate(obs, 60, active, [], [], samples.series(60, dip_from=40 if degraded else None)))
        app.post_message(StoreUpdate(samples.policy(approval="off"), tickets, [], [],
                                     [samples.fault()] if degraded else []))
        app.post_message(DemoUpdate(demo))
        await pilot.pause()
        if incident is not None:
            app.screen.post_message(IncidentLoaded(5, incident))
        panel = app.screen.query_one(WorkloadPanel)
        while panel.plot is None:  # plotext loads in a thread after the first frame
            await pilot.pause(0.02)
        await pilot.pause()

    return run_before


def test_narration_only_chapter(snap_compare) -> None:
    demo = progress("tikv", 0, "done", note="lab up")
    assert snap_compare(fed_demo_app(), terminal_size=SIZE, run_before=_run_before(demo))


def test_countdown_before_the_fault(snap_compare) -> None:
    demo = progress("tikv", 3, "countdown", countdown=3)
    assert snap_compare(fed_demo_app(), terminal_size=SIZE, run_before=_run_before(demo))


def test_waiting_for_a_ticket(snap_compare) -> None:
    demo = progress("tikv", 4, "waiting", waited_s=4)
    assert snap_compare(fed_demo_app(), terminal_size=SIZE, run_before=_run_before(demo, degraded=True))


def test_diagnosis_with_the_alternatives_ruled_out(snap_compare) -> None:
    demo = progress("tikv", 5, "done", ticket_id=5, next_in=6, autoplay=True,
                    happened=happened(31, samples.DIAGNOSIS["root_cause"], *DIAGNOSIS_LINES))
    assert snap_compare(fed_demo_app(), terminal_size=SIZE, run_before=_run_before(demo, degraded=True))


def test_a_chapter_that_timed_out(snap_compare) -> None:
    demo = progress("tikv", 7, "missed", ticket_id=5, problem=progress("tikv", 7, "missed").chapter.wait.on_timeout)
    assert snap_compare(fed_demo_app(), terminal_size=SIZE, run_before=_run_before(demo, degraded=True))


def test_what_happened_shows_the_resolved_ticket_and_its_timeline(snap_compare) -> None:
    demo = progress("tikv", 8, "done", ticket_id=5)
    assert snap_compare(fed_demo_app(), terminal_size=SIZE,
                        run_before=_run_before(demo, resolved=True, incident=samples.incident(resolved=True)))


def test_narrow_terminal_keeps_the_narration_and_the_cluster(snap_compare) -> None:
    demo = progress("tikv", 4, "done", ticket_id=5, next_in=3,
                    happened=happened(30, "ticket #5 store_unreachable on store:2",
                                      "store 2 does not answer on its status port"))
    assert snap_compare(fed_demo_app(), terminal_size=NARROW, run_before=_run_before(demo, degraded=True))


# -- the timeline widget on its own --------------------------------------------------------------


def retried_incident() -> Incident:
    """Two attempts: a transfer that failed, the ticket reopened, a human-approved restart that
    held; the fault reverted afterwards (a closed window)."""
    t = samples.ticket(5, status="resolved", resolved=70)
    a1 = samples.action(3, state="failed", name="transfer_leader", params={"region_id": 17, "to_store": 3}, risk="low")
    a2 = samples.action(4, state="succeeded", params={"store_id": 2}, risk="high")

    def ev(second: float, source: str, kind: str, ref: str, actor: str, summary: str = "", **extra: Any) -> IncidentEvent:
        return IncidentEvent(at=samples.at(second), source=source, kind=kind, ref=ref, actor=actor, summary=summary,
                             **extra)

    def act(second: float, action: Any, kind: str, actor: str = "system", summary: str = "") -> IncidentEvent:
        return ev(second, "action", kind, f"action:{action.id}", actor, summary, risk=action.risk,
                  detail={"name": action.name, "params": action.params})

    events = [
        ev(29, "fault", "injected", "fault:1", "human:sre", "kill_store store_id=2"),
        ev(30, "ticket", "opened", "ticket:5", "monitor", t.summary),
        ev(30.5, "ticket", "claimed", "ticket:5", "agent", detail={"attempt": 1}),
        ev(31, "ticket", "diagnosed", "ticket:5", "agent", "leaders stuck on a dead store", detail={"confidence": 0.6}),
        act(31.2, a1, "proposed", "agent"), act(31.3, a1, "approved"), act(31.4, a1, "executing"),
        act(40, a1, "failed", summary="store 3 refused: region 17 is merging"),
        ev(40.2, "ticket", "open", "ticket:5", "agent", "action transfer_leader failed"),
        ev(46, "ticket", "claimed", "ticket:5", "agent", detail={"attempt": 2}),
        ev(47, "ticket", "diagnosed", "ticket:5", "agent", "the TiKV process is dead", detail={"confidence": 0.97}),
        act(47.2, a2, "proposed", "agent"), act(47.3, a2, "awaiting_approval", summary="approval required"),
        act(58, a2, "approved", "human:sre"), act(58.2, a2, "executing"), act(60, a2, "succeeded", summary="restarted"),
        ev(66, "verification", "not_fixed", "session:2", "agent", "store_unreachable still violated"),
        ev(69, "verification", "holds", "session:2", "agent", "store_unreachable holds again for store:2"),
        ev(70, "ticket", "resolved", "ticket:5", "agent", "store_unreachable holds again for store:2"),
        ev(80, "fault", "reverted", "fault:1", "human:sre", "reverted kill_store on 2"),
    ]
    fault = samples.fault().model_copy(update={"status": "reverted", "reverted_at": samples.at(80)})
    return Incident(ticket=t, events=events, actions=[a1, a2], faults=[fault])


class TimelineApp(App[None]):
    CSS = "Screen { background: $surface; }"

    def __init__(self, incident: Incident) -> None:
        super().__init__()
        self.incident = incident

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield IncidentTimeline()

    def on_mount(self) -> None:
        events, windows, lanes = timeline_data(self.incident)
        self.query_one(IncidentTimeline).show(events, windows, lanes)


def test_incident_timeline_widget(snap_compare) -> None:
    app = TimelineApp(retried_incident())
    app.animation_level = "none"
    assert snap_compare(app, terminal_size=(120, 40))


def test_the_timeline_takes_plain_data_with_an_open_window() -> None:
    """What the evaluation browser will do: its own events and a shaded fault window still open."""
    from widgets.incident_timeline import ShadedWindow, TimelineEvent, render_timeline

    t0 = samples.T0
    events = [TimelineEvent(t0 + timedelta(seconds=s), lane, label, tone)
              for s, lane, label, tone in ((0, "fault", "injected", "fault"), (12, "oracle", "violated", "bad"),
                                           (40, "oracle", "holds", "good"))]
    text = render_timeline(events, [ShadedWindow(t0, None, "trial fault")], width=70,
                           now=t0 + timedelta(seconds=60)).plain
    lines = text.splitlines()
    assert lines[0].startswith("fault ") and lines[1].startswith("oracle ")
    assert "+0s" in lines[3] and "+20s" in lines[3] and "+40s" in lines[3]
    assert " ░  trial fault: 09:26:00 → not reverted yet" in text
    assert text.endswith("09:26:40    +40s ● oracle  holds")
