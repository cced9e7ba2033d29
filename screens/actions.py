"""The action history: every action of this run (and any waiting for approval), with its states."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import DataTable, Static

from screens.base import ConsoleScreen
from screens.messages import ActionHistoryLoaded, CancelAction, ReviewAction
from screens.state import ConsoleState
from widgets import format as fmt
from widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from operator_tui.store.models import ActionRecord

STATE_STYLE = {
    "proposed": "dim", "validated": "dim", "awaiting_approval": "bold yellow reverse", "approved": "cyan",
    "scheduled": "cyan", "executing": "bold cyan", "succeeded": "bold green", "failed": "bold red",
    "rejected": "red", "cancelled": "magenta", "expired": "dim red", "unknown": "bold magenta",
}
RISK_STYLE = {"low": "green", "high": "yellow", "destructive": "bold red"}
PENDING = ("proposed", "validated", "awaiting_approval", "approved", "scheduled", "executing")

ACTION_COLUMNS = [("id", "#", 5), ("state", "state", 17), ("name", "action", 22), ("params", "parameters", 24),
                  ("risk", "risk", 11), ("by", "requested by", 14), ("ticket", "ticket", 6),
                  ("updated", "updated", 8), ("reason", "reason")]


def action_cells(a: ActionRecord) -> tuple:
    return (a.id, Text(a.state, style=STATE_STYLE.get(a.state, "")), a.name, fmt.params(a.params, 24),
            Text(a.risk, style=RISK_STYLE.get(a.risk, "")), fmt.clip(a.requested_by, 14),
            f"#{a.ticket_id}" if a.ticket_id else "-", fmt.clock(a.updated_at), fmt.clip(a.reason or a.error or "", 80))


def all_actions(state: ConsoleState) -> list[ActionRecord]:
    merged = {a.id: a for a in state.actions}
    for a in state.awaiting:
        merged.setdefault(a.id, a)
    return sorted(merged.values(), key=lambda a: -a.id)


class ActionsScreen(ConsoleScreen):
    MODE = "actions"

    BINDINGS = [
        Binding("enter", "review", "Review / approve"),
        Binding("x", "cancel_action", "Cancel action"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history_for: int | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="actions-body"):
            yield KeyedTable(ACTION_COLUMNS, id="actions-table")
            with Horizontal(id="actions-bottom"):
                yield KeyedTable([("n", "#", 3), ("at", "at", 8), ("from", "from", 17), ("to", "to", 17),
                                  ("actor", "by", 14), ("reason", "reason")], id="actions-history")
                yield Static("", id="actions-result")

    def on_mount(self) -> None:
        self.query_one("#actions-table", KeyedTable).focus()
        self.query_one("#actions-history", KeyedTable).border_title = "State history"
        self.query_one("#actions-result", Static).border_title = "Outcome"

    def render_body(self, state: ConsoleState, what: str) -> None:
        if what not in ("all", "store"):
            return
        actions = all_actions(state)
        table = self.query_one("#actions-table", KeyedTable)
        table.sync([(str(a.id), action_cells(a)) for a in actions])
        waiting = sum(1 for a in actions if a.state == "awaiting_approval")
        table.border_title = f"Actions · {len(actions)}" + (f" · [b $warning]{waiting} awaiting approval[/]" if waiting else "")
        self._show_selected(actions, force=False)

    def _selected(self, actions: list[ActionRecord] | None = None) -> ActionRecord | None:
        key = self.query_one("#actions-table", KeyedTable).cursor_key
        if key is None:
            return None
        actions = actions if actions is not None else all_actions(self.host.state)
        return next((a for a in actions if a.id == int(key)), None)

    def _show_selected(self, actions: list[ActionRecord] | None = None, force: bool = True) -> None:
        action = self._selected(actions)
        result = self.query_one("#actions-result", Static)
        if action is None:
            result.update("[dim]no action selected[/]")
            return
        result.update(outcome_text(action))
        if force or action.id != self.history_for or action.state in PENDING:
            self._load_history(action.id)

    def _load_history(self, action_id: int) -> None:
        store = self.host.store
        self.history_for = action_id
        if store is None:
            return

        async def fetch() -> None:
            self.post_message(ActionHistoryLoaded(action_id, await store.action_transitions(action_id)))

        self.load(fetch, group="action-history")

    @on(DataTable.RowHighlighted, "#actions-table")
    def highlighted(self) -> None:
        self._show_selected()

    @on(ActionHistoryLoaded)
    def show_history(self, message: ActionHistoryLoaded) -> None:
        if message.action_id != self.history_for:
            return
        history = self.query_one("#actions-history", KeyedTable)
        history.border_title = f"State history · action #{message.action_id}"
        history.sync([(str(t.id), (n, fmt.clock(t.at), t.from_state or "-",
                                   Text(t.to_state, style=STATE_STYLE.get(t.to_state, "")), fmt.clip(t.actor, 14),
                                   fmt.clip(t.reason, 80)))
                      for n, t in enumerate(message.transitions, start=1)])

    @on(DataTable.RowSelected, "#actions-table")
    def selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_review()

    def action_review(self) -> None:
        action = self._selected()
        if action is None:
            return
        if action.state == "awaiting_approval":
            self.post_message(ReviewAction(action.id))
        else:
            self.notify(f"action #{action.id} is {action.state}: nothing to approve", timeout=3)

    def action_cancel_action(self) -> None:
        action = self._selected()
        if action is not None:
            self.post_message(CancelAction(action.id))


def outcome_text(a: ActionRecord) -> str:
    lines = [f"[b]#{a.id} {escape(a.name)}[/] {escape(fmt.params(a.params, 60))}",
             f"[dim]target[/] {escape(a.target or '-')}  [dim]risk[/] {a.risk}  [dim]attempts[/] {a.attempts}",
             f"[dim]would send[/] {escape(a.preview or '-')}"]
    if a.decided_by:
        lines.append(f"[dim]decided by[/] {escape(a.decided_by)} at {fmt.clock(a.decided_at)}")
    if a.result and a.result.get("detail"):
        lines.append(f"[b $success]{escape(str(a.result['detail']))}[/]")
    if a.error:
        lines.append(f"[b $error]{escape(a.error)}[/]")
    if a.result and a.result.get("progress"):
        lines.append("[dim]" + escape(fmt.clip("; ".join(map(str, a.result["progress"][-3:])), 120)) + "[/]")
    return "\n".join(lines)
