"""The audit log, newest last, with the state of its hash chain."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.widgets import Static

from screens.base import ConsoleScreen
from screens.messages import AuditLoaded
from screens.state import ConsoleState
from widgets import format as fmt
from widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from operator_tui.store.models import AuditEvent

AUDIT_COLUMNS = [("id", "#", 6), ("at", "at", 8), ("actor", "actor", 16), ("kind", "event", 24), ("ref", "about", 18),
                 ("data", "data")]
KEEP = 1000


def audit_cells(e: AuditEvent) -> tuple:
    data = json.dumps(e.data, sort_keys=True, default=str, separators=(",", ":")) if e.data else ""
    return (e.id, fmt.clock(e.at), fmt.clip(e.actor, 16), e.kind, e.ref or "-", fmt.clip(data, 120))


class AuditScreen(ConsoleScreen):
    MODE = "audit"

    BINDINGS = [Binding("v", "verify", "Verify chain")]

    def __init__(self) -> None:
        super().__init__()
        self.events: list[AuditEvent] = []
        self.chain: tuple[bool | None, int, str] = (None, 0, "")

    def compose_body(self) -> ComposeResult:
        with Vertical(id="audit-body"):
            yield Static("[dim]chain not checked yet (v)[/]", id="audit-chain")
            yield KeyedTable(AUDIT_COLUMNS, id="audit-table")

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.fetch(verify=True)

    def render_body(self, state: ConsoleState, what: str) -> None:
        if what == "store" and self.rendered_once:
            self.fetch(verify=False)

    def action_verify(self) -> None:
        self.query_one("#audit-chain", Static).update("[dim]verifying the chain…[/]")
        self.fetch(verify=True)

    def fetch(self, verify: bool) -> None:
        store = self.host.store
        if store is None:
            return
        after = self.events[-1].id if self.events and not verify else 0

        async def load() -> None:
            events = await store.list_audit(limit=KEEP, after_id=after)
            if verify:
                ok, checked, problem = await store.verify_audit()
                self.post_message(AuditLoaded(events, ok, checked, problem))
            else:
                self.post_message(AuditLoaded(events, None))

        self.load(load, group="audit-verify" if verify else "audit")

    @on(AuditLoaded)
    def show(self, message: AuditLoaded) -> None:
        if message.chain_ok is not None:
            self.chain = (message.chain_ok, message.checked, message.problem)
            self.events = list(message.events)
        else:
            known = self.events[-1].id if self.events else 0
            self.events.extend(e for e in message.events if e.id > known)
        self.events = self.events[-KEEP:]
        table = self.query_one(KeyedTable)
        table.sync([(str(e.id), audit_cells(e)) for e in reversed(self.events)])
        table.border_title = f"Audit log · newest first · {len(self.events)} shown"
        ok, checked, problem = self.chain
        line = self.query_one("#audit-chain", Static)
        if ok is None:
            line.update("[dim]chain not checked yet (v)[/]")
        elif ok:
            line.update(f"[b $success]✔ chain intact[/]: {checked} events verified, each hash links to the one before")
        else:
            line.update(f"[b $error reverse] ✘ CHAIN BROKEN [/] after {checked} good events: {escape(problem)}")
