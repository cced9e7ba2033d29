"""The ticket queue, with filters, and one ticket's detail: the diagnosis as Markdown beside the
incident's timeline (the fault, the ticket, the agent, every action and its transitions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from screens.base import ConsoleScreen
from screens.incident import timeline_data
from screens.messages import OpenTicket, TicketDetailLoaded
from screens.state import ConsoleState
from widgets import format as fmt
from widgets.incident_timeline import IncidentTimeline
from widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from subjects.base import Ticket

FILTERS = {
    "all": ("all", None),
    "open": ("open", ("open", "investigating", "escalated")),
    "resolved": ("resolved", ("resolved",)),
    "escalated": ("escalated", ("escalated",)),
}
STATUS_STYLE = {"open": "bold yellow", "investigating": "bold cyan", "escalated": "bold red", "resolved": "green"}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}

TICKET_COLUMNS = [("id", "#", 5), ("status", "status", 13), ("severity", "severity", 8), ("invariant", "invariant", 24),
                  ("entity", "entity", 12), ("opened", "opened", 8), ("resolved", "resolved", 8), ("seen", "seen", 5),
                  ("summary", "summary")]


def ticket_cells(t: Ticket) -> tuple[Any, ...]:
    status = t.status.value if hasattr(t.status, "value") else str(t.status)
    severity = t.severity.value if hasattr(t.severity, "value") else str(t.severity)
    return (t.id, Text(status, style=STATUS_STYLE.get(status, "")), Text(severity, style=SEVERITY_STYLE.get(severity, "")),
            t.invariant, t.entity, fmt.clock(t.opened_at), fmt.clock(t.resolved_at), t.occurrences,
            fmt.clip(t.summary, 90))


def filter_tickets(tickets: list[Ticket], name: str) -> list[Ticket]:
    statuses = FILTERS[name][1]
    return [t for t in tickets if statuses is None or t.status in statuses]


class TicketsScreen(ConsoleScreen):
    MODE = "tickets"

    BINDINGS = [
        Binding("o", "filter('open')", "Open"),
        Binding("r", "filter('resolved')", "Resolved"),
        Binding("e", "filter('escalated')", "Escalated"),
        Binding("a", "filter('all')", "All"),
        Binding("enter", "open_selected", "Detail", show=True, priority=False),
    ]

    current_filter: reactive[str] = reactive("all", init=False)

    def __init__(self) -> None:
        super().__init__()
        # ticket id -> (what the row shows depends on, the row): a tick re-formats only changed tickets
        self._rows: dict[int, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}

    def _cells(self, t: Ticket) -> tuple[Any, ...]:
        version = (t.status, t.severity, t.occurrences, t.resolved_at, t.summary, t.invariant, t.entity)
        cached = self._rows.get(t.id)
        if cached is None or cached[0] != version:
            cached = (version, ticket_cells(t))
            self._rows[t.id] = cached
        return cached[1]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="tickets-body"):
            yield Static("", id="tickets-filter")
            yield KeyedTable(TICKET_COLUMNS, id="tickets-table")

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()

    def watch_current_filter(self) -> None:
        self.render_state("store")

    def action_filter(self, name: str) -> None:
        self.current_filter = name

    def render_body(self, state: ConsoleState, what: str) -> None:
        if what not in ("all", "store"):
            return
        shown = filter_tickets(state.tickets, self.current_filter)
        table = self.query_one(KeyedTable)
        if len(self._rows) > 2 * len(state.tickets) + 100:
            self._rows.clear()
        table.sync([(str(t.id), self._cells(t)) for t in shown])
        counts = {name: len(filter_tickets(state.tickets, name)) for name in FILTERS}
        parts = []
        for name, key in (("open", "o"), ("resolved", "r"), ("escalated", "e"), ("all", "a")):
            label = f"{name} {counts[name]}"
            parts.append(f"[reverse b] {key} {label} [/]" if name == self.current_filter else f" [dim]{key}[/] {label} ")
        self.query_one("#tickets-filter", Static).update("filter " + "".join(parts))
        table.border_title = f"Tickets · {FILTERS[self.current_filter][0]} · {len(shown)} shown"

    def action_open_selected(self) -> None:
        key = self.query_one(KeyedTable).cursor_key
        if key is not None:
            self.post_message(OpenTicket(int(key)))

    @on(DataTable.RowSelected, "#tickets-table")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(OpenTicket(int(event.row_key.value)))


class TicketDetailScreen(ConsoleScreen):
    """One ticket: the diagnosis as Markdown (root cause, evidence, alternatives, actions,
    verification) beside its timeline. Reloads when the store says the ticket changed."""

    MODE = "tickets"

    BINDINGS = [Binding("escape,backspace", "back", "Back to the queue")]

    def __init__(self, ticket_id: int) -> None:
        super().__init__()
        self.ticket_id = ticket_id
        self.detail: dict[str, Any] | None = None
        self._seen_version: tuple[Any, ...] | None = None

    def compose_body(self) -> ComposeResult:
        from textual.widgets import Markdown  # markdown-it is slow to import: only when a ticket is opened

        with Horizontal(id="detail-body"):
            with VerticalScroll(id="detail-doc"):
                yield Markdown(f"# Ticket #{self.ticket_id}\n\nloading…", id="detail-markdown")
            with VerticalScroll(id="detail-side"):
                yield IncidentTimeline(id="detail-timeline")

    def on_mount(self) -> None:
        self.query_one("#detail-side").border_title = "Timeline"
        self.query_one("#detail-doc").border_title = f"Ticket #{self.ticket_id}"
        self.reload()

    def reload(self) -> None:
        store = self.host.store
        if store is None:
            return
        ticket_id = self.ticket_id

        async def fetch() -> None:
            from operator_tui.commands.tickets import ticket_detail

            try:
                detail = await ticket_detail(store, ticket_id)
            except Exception as e:  # a missing ticket, a closed store: say so in the view
                self.post_message(TicketDetailLoaded(ticket_id, None, str(e)))
                return
            self.post_message(TicketDetailLoaded(ticket_id, detail))

        self.load(fetch, group="ticket-detail")

    def render_body(self, state: ConsoleState, what: str) -> None:
        if what not in ("all", "store"):
            return
        ticket = next((t for t in state.tickets if t.id == self.ticket_id), None)
        actions = tuple((a.id, a.state) for a in state.actions if a.ticket_id == self.ticket_id)
        version = (ticket.status, ticket.occurrences, ticket.last_seen_at, ticket.claimed_by) if ticket else None, actions
        if self._seen_version is not None and version != self._seen_version:
            self.reload()
        self._seen_version = version

    @on(TicketDetailLoaded)
    def show_detail(self, message: TicketDetailLoaded) -> None:
        if message.ticket_id != self.ticket_id:
            return
        doc = self.query_one("#detail-markdown")
        if message.detail is None:
            doc.update(f"# Ticket #{self.ticket_id}\n\nCannot show this ticket: {message.error or 'not found'}")
            return
        self.detail = message.detail
        doc.update(detail_markdown(message.detail))
        incident = message.detail.get("incident")
        if incident:
            events, windows, lanes = timeline_data(incident)
            # An incident still going on reaches to now; a resolved one ends where it ended.
            now = None if message.detail.get("resolved_at") else self.host.state.clock()
            self.query_one(IncidentTimeline).show(events, windows, lanes, now)

    def action_back(self) -> None:
        self.dismiss()


def _dt(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value


def _md(text: Any) -> str:
    """Plain text inside Markdown: keep it from turning into markup."""
    out = str(text)
    for ch in ("\\", "`", "*", "_", "[", "]", "<", ">", "#", "|"):
        out = out.replace(ch, "\\" + ch)
    return out


def detail_markdown(d: dict[str, Any]) -> str:
    lines = [f"# Ticket #{d['id']} · {_md(d['invariant'])} on {_md(d['entity'])}", ""]
    resolved = f" · resolved {fmt.stamp(_dt(d.get('resolved_at')))}" if d.get("resolved_at") else ""
    lines.append(f"**{d['status']}** · {d['severity']} · opened {fmt.stamp(_dt(d.get('opened_at')))} · "
                 f"seen {d.get('occurrences', 1)} times{resolved}")
    lines += ["", f"> {_md(d.get('summary', ''))}", ""]
    diag = d.get("diagnosis")
    if diag:
        conf = diag.get("confidence")
        lines.append(f"## Diagnosis ({fmt.percent(conf)} confident)" if conf is not None else "## Diagnosis")
        lines += ["", _md(diag.get("summary", "")), "", "### Root cause", "", _md(diag.get("root_cause", "")), ""]
        evidence = diag.get("evidence") or []
        if evidence:
            lines += ["### Evidence", "", "| signal | reading |", "|---|---|"]
            lines += [f"| {_md(e.get('signal', ''))} | {_md(e.get('reading', ''))} |" for e in evidence]
            lines.append("")
        alternatives = diag.get("alternatives") or []
        if alternatives:
            lines += ["### Alternatives considered", ""]
            for a in alternatives:
                verdict = a.get("verdict", "")
                mark = "✔" if verdict == "chosen" else "✘"
                lines.append(f"- {mark} **{_md(a.get('cause', ''))}**: {_md(verdict)}")
            lines.append("")
        recommended = diag.get("recommended_actions") or []
        if recommended:
            lines += ["### Recommended actions", ""]
            for i, a in enumerate(recommended, start=1):
                delay = f" (after {a['delay_s']:g} s)" if a.get("delay_s") else ""
                reason = f": {_md(a['reason'])}" if a.get("reason") else ""
                lines.append(f"{i}. `{a.get('name')}` {_md(fmt.params(a.get('params'), 80))}{delay}{reason}")
            lines.append("")
        if diag.get("expected_outcome"):
            lines += [f"**Expected outcome:** {_md(diag['expected_outcome'])}", ""]
        if diag.get("risks"):
            lines += [f"**Risks:** {_md(diag['risks'])}", ""]
    else:
        lines += ["## Diagnosis", "", "_No diagnosis yet._", ""]
    actions = d.get("actions") or []
    if actions:
        lines += ["## Actions", "", "| # | action | parameters | state | by | reason |", "|---|---|---|---|---|---|"]
        for a in actions:
            lines.append(f"| {a['id']} | {_md(a['name'])} | {_md(fmt.params(a.get('params'), 40))} | **{a['state']}** | "
                         f"{_md(a.get('decided_by') or a.get('requested_by') or '')} | "
                         f"{_md(fmt.clip(a.get('reason') or '', 60))} |")
        lines.append("")
    verification = d.get("verification")
    lines.append("## Verification")
    lines.append("")
    if verification:
        mark = "✔ holds" if verification.get("holds") else "✘ not fixed"
        lines.append(f"**{mark}**: {_md(verification.get('summary', ''))}")
        if verification.get("observed_at"):
            lines.append(f"(observed {fmt.stamp(_dt(verification['observed_at']))})")
    else:
        lines.append("_Not verified yet._")
    lines.append("")
    resolution = d.get("resolution")
    if resolution:
        lines += ["## Resolution", "", f"by **{_md(resolution.get('by', '?'))}**: {_md(resolution.get('reason', ''))}",
                  ""]
    return "\n".join(lines)
