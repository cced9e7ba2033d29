"""The live agent panel: the agent's reasoning, tool calls, actions and verification, as they happen.

A scrolling column of styled lines, built from spans (no markup to parse, no Rich import: the
console's first frame does not wait for it). It follows the newest line unless the user has
scrolled up to read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

# kind -> (label, style)
KINDS: dict[str, tuple[str, str]] = {
    "context": ("context", "dim"),
    "diagnosis": ("diagnosis", "bold magenta"),
    "tool_call": ("tool", "cyan"),
    "tool_result": ("result", "dim cyan"),
    "thinking": ("thinking", "italic dim"),
    "actions": ("actions", "bold yellow"),
    "action": ("action", "yellow"),
    "action_results": ("results", "yellow"),
    "verification": ("verify", "bold green"),
    "error": ("error", "bold red"),
    "end": ("end", "bold"),
    "ticket": ("ticket", "bold"),
    "decision": ("decision", "bold cyan"),
    "killswitch": ("kill sw", "bold red"),
    "chaos": ("chaos", "bold magenta"),
    "policy": ("policy", "cyan"),
    "console": ("console", "dim"),
    "demo": ("demo", "bold cyan"),
}


@dataclass(frozen=True)
class FeedLine:
    seq: int
    at: str  # HH:MM:SS
    ticket_id: int | None
    entity: str
    kind: str
    title: str
    detail: tuple[str, ...] = ()  # extra lines, indented under the title
    tone: str = ""  # "good" | "bad" | "": overrides the kind's colour for verification and end lines


def render_line(line: FeedLine) -> Content:
    label, style = KINDS.get(line.kind, (line.kind, ""))
    if line.tone == "good":
        style = "bold green"
    elif line.tone == "bad":
        style = "bold red"
    parts: list[str | tuple[str, str]] = [(f"{line.at} ", "dim")]
    if line.ticket_id is not None:
        parts.append((f"#{line.ticket_id} ", "bold"))
    if line.entity:
        parts.append((f"{line.entity} ", "dim"))
    parts.append((f"{label:<9}", style) if style else f"{label:<9}")
    parts.append(" " + line.title)
    detail_style = "dim" if line.kind in ("context", "tool_result") else ""
    for extra in line.detail:
        parts.append("\n    ")
        parts.append((extra, detail_style) if detail_style else extra)
    return Content.assemble(*parts)


class AgentLog(VerticalScroll):
    """Append-only; `show` adds the lines it has not shown yet (by sequence number)."""

    DEFAULT_CSS = """
    AgentLog { border: round $panel-lighten-2; height: 1fr; padding: 0 1; background: $surface;
               scrollbar-size-vertical: 1; }
    AgentLog:focus { border: round $accent; }
    AgentLog > #agent-lines { width: 1fr; height: auto; }
    """

    def __init__(self, *, id: str | None = None, max_lines: int = 500) -> None:
        super().__init__(id=id)
        self.last_seq = 0
        self.entries: deque[Content] = deque(maxlen=max_lines)
        self.border_title = "Agent"

    def compose(self) -> ComposeResult:
        yield Static(id="agent-lines")

    @property
    def text(self) -> str:
        """Everything shown, as plain text (for tests and copying)."""
        return "\n".join(entry.plain for entry in self.entries)

    def show(self, lines: Iterable[FeedLine]) -> int:
        added = 0
        for line in lines:
            if line.seq <= self.last_seq:
                continue
            self.entries.append(render_line(line))
            self.last_seq = line.seq
            added += 1
        if added and self.is_mounted:
            following = self.scroll_y >= self.max_scroll_y - 1
            self.query_one("#agent-lines", Static).update(Content("\n").join(self.entries))
            if following:
                self.call_after_refresh(self.scroll_end, animate=False)
        return added

    def on_mount(self) -> None:
        if self.entries:
            self.query_one("#agent-lines", Static).update(Content("\n").join(self.entries))
