"""The cluster at a glance: node tiles, the workload, and the agent working live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from screens.base import ConsoleScreen
from screens.messages import OpenTicket
from screens.state import ConsoleState
from screens.tickets import SEVERITY_STYLE, STATUS_STYLE
from widgets import format as fmt
from widgets.agent_log import AgentLog
from widgets.keyed_table import KeyedTable
from widgets.node_grid import NodeGrid, NodeTile
from widgets.workload import WorkloadPanel

if TYPE_CHECKING:
    from subjects.base import Ticket

ACTIVE_COLUMNS = [("id", "#", 5), ("status", "status", 13), ("severity", "severity", 8),
                  ("invariant", "invariant", 24), ("entity", "entity", 10), ("opened", "opened", 8), ("summary", "summary")]


def active_cells(t: Ticket) -> tuple:
    status, severity = str(t.status), str(t.severity)
    return (t.id, Text(status, style=STATUS_STYLE.get(status, "")), Text(severity, style=SEVERITY_STYLE.get(severity, "")),
            t.invariant, t.entity, fmt.clock(t.opened_at), fmt.clip(t.summary, 100))


class ClusterScreen(ConsoleScreen):
    MODE = "cluster"

    BINDINGS = [
        Binding("g", "focus_grid", "Nodes", tooltip="Move the focus to the node tiles"),
        Binding("t", "focus_tickets", "Open tickets", tooltip="Move the focus to the open tickets"),
        Binding("l", "focus_log", "Agent log", tooltip="Move the focus to the agent panel"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="cluster-body"):
            with Vertical(id="cluster-left"):
                yield NodeGrid(id="grid")
                yield KeyedTable(ACTIVE_COLUMNS, id="cluster-tickets")
            with Vertical(id="cluster-right"):
                yield WorkloadPanel(id="workload")
                yield AgentLog(id="agent-log")

    def on_mount(self) -> None:
        grid = self.query_one(NodeGrid)
        grid.border_title = "Nodes"
        self.query_one("#cluster-tickets", KeyedTable).border_title = "Open tickets"

    def render_body(self, state: ConsoleState, what: str) -> None:
        if what in ("all", "cluster"):
            grid = self.query_one(NodeGrid)
            obs = state.observation
            if obs is not None and not obs.nodes:
                grid.set_empty_text("no nodes seen yet: " + ("the subject does not answer (see the banner)"
                                                              if not obs.reachable else "the cluster reports none"))
            elif state.phase in ("starting", "failed", "running"):
                grid.set_empty_text(state.phase_detail or "starting…")
            grid.apply(state.tile_views())
            if obs is not None:
                down = sum(1 for n in obs.nodes if n.state == "down")
                title = " · ".join(["Nodes", *node_counts(obs.nodes)])
                if down:
                    title += f" · [b $error]{down} down[/]"
                grid.border_title = title
                grid.border_subtitle = "" if obs.reachable else "[b $warning]unreachable: last known[/]"
            self.query_one(WorkloadPanel).show(state.workload_points(), state.degraded)
            tickets = self.query_one("#cluster-tickets", KeyedTable)
            active = sorted(state.open_tickets, key=lambda t: -t.id)
            tickets.sync([(str(t.id), active_cells(t)) for t in active])
            tickets.border_title = f"Open tickets · {len(active)}" if active else "Open tickets · none"
        if what in ("all", "feed"):
            self.query_one(AgentLog).show(state.feed)

    @on(DataTable.RowSelected, "#cluster-tickets")
    def ticket_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(OpenTicket(int(event.row_key.value)))

    @on(NodeTile.Selected)
    def open_ticket(self, event: NodeTile.Selected) -> None:
        if event.ticket is not None:
            self.post_message(OpenTicket(event.ticket))
        else:
            self.notify(f"{event.key}: no open ticket", timeout=2)

    def action_focus_grid(self) -> None:
        tiles = list(self.query(NodeTile))
        if tiles:
            tiles[0].focus()

    def action_focus_tickets(self) -> None:
        self.query_one("#cluster-tickets", KeyedTable).focus()

    def action_focus_log(self) -> None:
        self.query_one(AgentLog).focus()


def node_counts(nodes: list) -> list[str]:
    """"5 stores", "3 PD", "3 members": one count per kind of node, in the order the subject lists them
    (short kinds are acronyms: no plural)."""
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.kind] = counts.get(n.kind, 0) + 1
    out = []
    for kind, count in counts.items():
        if len(kind) <= 2:
            out.append(f"{count} {kind.upper()}")
        else:
            out.append(f"{count} {kind}" + ("s" if count != 1 and not kind.endswith("s") else ""))
    return out
