"""The demo: the cluster screen with the narration panel beside it. The chapter's `show:
timeline` puts the incident's timeline (read from the store) where the tickets, the workload and
the agent log were; the nodes stay."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll

from screens.cluster import ClusterScreen
from screens.incident import timeline_data
from screens.messages import DemoKey, IncidentLoaded
from screens.state import ConsoleState
from widgets.incident_timeline import IncidentTimeline
from widgets.narration import NarrationPanel


class DemoScreen(ClusterScreen):
    MODE = "demo"

    BINDINGS = [
        Binding("space,enter,right", "demo_key('next')", "Next chapter", priority=True, key_display="space"),
        Binding("left", "demo_key('back')", "Back", priority=True, key_display="←"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.shown_incident: int | None = None  # the ticket whose timeline is drawn
        self._incident_version: tuple[object, ...] | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="demo-body"):
            yield NarrationPanel(id="narration")
            with Vertical(id="demo-stage"):
                yield from super().compose_body()
                with VerticalScroll(id="demo-timeline"):
                    yield IncidentTimeline(id="demo-incident")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#demo-timeline").border_title = "What happened"

    def action_demo_key(self, key: str) -> None:
        self.post_message(DemoKey(key))

    def render_body(self, state: ConsoleState, what: str) -> None:
        super().render_body(state, what)
        progress = state.demo
        timeline = progress is not None and progress.chapter.show == "timeline"
        self.set_class(timeline, "-timeline")
        if what in ("all", "demo"):
            view = state.narration_view()
            if view is not None:
                self.query_one(NarrationPanel).show(view)
        if timeline and progress is not None and progress.ticket_id is not None and what in ("all", "demo", "store"):
            ticket = next((t for t in state.tickets if t.id == progress.ticket_id), None)
            version = (progress.ticket_id, ticket.status if ticket else None, ticket.last_seen_at if ticket else None,
                       tuple((a.id, a.state) for a in state.actions if a.ticket_id == progress.ticket_id))
            if version != self._incident_version:
                self._incident_version = version
                self.reload_incident(progress.ticket_id)
        elif timeline and progress is not None and progress.ticket_id is None:
            self.query_one("#demo-timeline").border_title = "What happened · no ticket was opened in this run"

    def reload_incident(self, ticket_id: int) -> None:
        store = self.host.store
        if store is None:
            return

        async def fetch() -> None:
            try:
                incident = await store.incident(ticket_id)
            except Exception as e:  # a closed store while quitting: say so rather than crash
                self.post_message(IncidentLoaded(ticket_id, None, str(e)))
                return
            self.post_message(IncidentLoaded(ticket_id, incident))

        self.load(fetch, group="demo-incident")

    @on(IncidentLoaded)
    def show_incident(self, message: IncidentLoaded) -> None:
        frame = self.query_one("#demo-timeline")
        if message.incident is None:
            frame.border_title = f"What happened · ticket #{message.ticket_id}: {message.error or 'not found'}"
            return
        t = message.incident.ticket
        status = t.status.value if hasattr(t.status, "value") else str(t.status)
        took = ""
        if t.resolved_at is not None:
            took = f" in {(t.resolved_at - t.opened_at).total_seconds():.0f} s"
        frame.border_title = f"What happened · ticket #{t.id} {t.invariant} on {t.entity} · {status}{took}"
        events, windows, lanes = timeline_data(message.incident)
        now = None if t.resolved_at is not None else self.host.state.clock()
        self.query_one(IncidentTimeline).show(events, windows, lanes, now)
        self.shown_incident = t.id
