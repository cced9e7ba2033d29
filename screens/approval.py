"""The approval dialog: an action waits for a human's yes or no.

It shows the action, its parameters and risk, the diagnosis that asked for it and a dry run
through the engine. `y` approves, `n` asks for an optional reason and rejects, `escape` defers
(the action keeps waiting; `p` brings the dialog back). The dialog only returns the decision:
the app writes it through the engine's decision functions and the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape as _e
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from screens.messages import ApprovalContext
from widgets import format as fmt

if TYPE_CHECKING:
    from operator_tui.store.models import ActionRecord

RISK_STYLE = {"low": "$success", "high": "$warning", "destructive": "$error"}


@dataclass(frozen=True)
class ApprovalDecision:
    action_id: int
    verdict: Literal["approve", "reject", "defer", "gone"]
    reason: str = ""


class ApprovalModal(ModalScreen[ApprovalDecision]):
    BINDINGS = [
        Binding("y", "approve", "Approve", priority=False),
        Binding("n", "reject", "Reject"),
        Binding("escape", "defer", "Later"),
    ]

    def __init__(self, action: ActionRecord, *, waiting: int = 1, cursor_blink: bool = True) -> None:
        super().__init__()
        self.action = action
        self.waiting = waiting
        self.cursor_blink = cursor_blink
        self.context: ApprovalContext | None = None
        self.asking_reason = False

    def compose(self) -> ComposeResult:
        a = self.action
        with Vertical(id="approval-dialog") as dialog:
            dialog.border_title = f"Approval needed · action #{a.id}"
            if self.waiting > 1:
                dialog.border_subtitle = f"{self.waiting - 1} more waiting"
            yield Static(self._headline(), id="approval-headline")
            with VerticalScroll(id="approval-details"):
                yield Static(self._facts(), id="approval-facts")
                yield Static("[dim]loading the diagnosis and a dry run…[/]", id="approval-context")
            yield Static("[b]Reject[/]: why? (optional, recorded in the audit log)  [dim]enter rejects · escape goes "
                         "back[/]", id="approval-reason-label")
            yield Input(placeholder="reason for rejecting", id="approval-reason")
            with Horizontal(id="approval-buttons"):
                yield Button("Approve (y)", id="approve", variant="success")
                yield Button("Reject (n)", id="reject", variant="error")
                yield Button("Later (esc)", id="defer")

    def on_mount(self) -> None:
        reason = self.query_one("#approval-reason", Input)
        reason.cursor_blink = self.cursor_blink
        reason.display = False
        self.query_one("#approval-reason-label").display = False
        self.query_one("#approval-details").focus()

    def _headline(self) -> str:
        a = self.action
        risk = RISK_STYLE.get(a.risk, "$text")
        return (f"[b]{_e(a.name)}[/]  risk [b {risk}]{_e(a.risk.upper())}[/]  target [b]{_e(a.target or '-')}[/]"
                + (f"  ticket [b]#{a.ticket_id}[/]" if a.ticket_id else ""))

    def _facts(self) -> str:
        a = self.action
        lines = [
            f"[dim]parameters[/]   {_e(fmt.params(a.params, 100))}",
            f"[dim]requested by[/] {_e(a.requested_by)}" + (f" at {fmt.clock(a.created_at)} UTC" if a.created_at else ""),
            f"[dim]state[/]        {_e(a.state.replace('_', ' '))}: {_e(a.reason or '-')}",
            f"[dim]would send[/]   [b]{_e(a.preview or '-')}[/]",
        ]
        if a.workflow_id:
            lines.append(f"[dim]workflow[/]     step {a.step + 1} of workflow {_e(a.workflow_id)}")
        if a.expires_at:
            lines.append(f"[dim]expires[/]      {fmt.clock(a.expires_at)} UTC (then it is not run)")
        if not a.idempotent:
            lines.append("[b $warning]not idempotent[/]: running it twice is not the same as once")
        return "\n".join(lines)

    @on(ApprovalContext)
    def show_context(self, message: ApprovalContext) -> None:
        if message.action_id != self.action.id:
            return
        self.context = message
        self.query_one("#approval-context", Static).update(render_context(message))

    # -- decisions ----------------------------------------------------------------------------

    def action_approve(self) -> None:
        if not self.asking_reason:
            self.dismiss(ApprovalDecision(self.action.id, "approve"))

    def action_reject(self) -> None:
        if self.asking_reason:
            return
        self.asking_reason = True
        reason = self.query_one("#approval-reason", Input)
        reason.display = True
        self.query_one("#approval-reason-label").display = True
        reason.focus()

    def action_defer(self) -> None:
        if self.asking_reason:
            self.asking_reason = False
            reason = self.query_one("#approval-reason", Input)
            reason.value = ""
            reason.display = False
            self.query_one("#approval-reason-label").display = False
            self.query_one("#approval-details").focus()
            return
        self.dismiss(ApprovalDecision(self.action.id, "defer"))

    def close_as_gone(self) -> None:
        """The action no longer waits (decided in another process, cancelled, expired)."""
        self.dismiss(ApprovalDecision(self.action.id, "gone"))

    @on(Input.Submitted, "#approval-reason")
    def reject_with_reason(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(ApprovalDecision(self.action.id, "reject", event.value.strip()))

    @on(Button.Pressed, "#approve")
    def approve_pressed(self) -> None:
        self.action_approve()

    @on(Button.Pressed, "#reject")
    def reject_pressed(self) -> None:
        self.action_reject()

    @on(Button.Pressed, "#defer")
    def defer_pressed(self) -> None:
        self.dismiss(ApprovalDecision(self.action.id, "defer"))


def render_context(c: ApprovalContext) -> str:
    """Why, then the dry run (what happens if you say yes), then the diagnosis behind it."""
    lines: list[str] = []
    d: dict[str, Any] | None = c.diagnosis
    why = next((r.get("reason") for r in (d or {}).get("recommended_actions") or []
                if r.get("name") == c.action_name and r.get("reason")), None)
    if why:
        lines += [f"[b]Why[/] {_e(why)}", ""]
    dr = c.dry_run
    if dr is not None:
        problems = dr.get("problems") or []
        blocked = dr.get("blocked")
        verdict = ("[b $success]precheck passes[/]" if not problems and not blocked
                   else "[b $error]would not run[/]")
        lines.append(f"[b]Dry run[/] {verdict}: {_e(dr.get('preview', ''))}")
        for p in problems:
            lines.append(f"  [$error]✘[/] {_e(p)}")
        if blocked:
            lines.append(f"  [$error]✘[/] {_e(blocked)}")
        lines.append("")
    elif c.problem:
        lines += [f"[b]Dry run[/] [$warning]{_e(c.problem)}[/]", ""]
    if d:
        conf = d.get("confidence")
        lines.append(f"[b]Diagnosis[/] ({fmt.percent(conf)} confident)" if conf is not None else "[b]Diagnosis[/]")
        lines.append(f"  {_e(d.get('summary', ''))}")
        lines.append(f"  [dim]root cause[/] {_e(d.get('root_cause', ''))}")
        readings = list(dict.fromkeys(e.get("reading", "") for e in d.get("evidence") or []))
        for reading in readings[:4]:
            lines.append(f"  [dim]·[/] {_e(reading)}")
        rejected = [a for a in d.get("alternatives") or [] if a.get("verdict") != "chosen"]
        if rejected:
            lines.append(f"  [dim]ruled out[/] {_e(', '.join(a.get('cause', '') for a in rejected[:3]))}")
        if d.get("risks"):
            lines.append(f"  [dim]risks[/] {_e(d['risks'])}")
    elif c.ticket is not None:
        lines.append(f"[b]Ticket #{c.ticket.id}[/] {_e(c.ticket.summary)}")
    else:
        lines.append("[dim]requested by hand: no diagnosis[/]")
    return "\n".join(lines)
