"""The demo's narration panel: where we are (a bar with one segment per chapter), the chapter's
narration as Markdown, a big countdown before a fault, what the chapter waits for or what
happened, and the keys.

It shows plain data (`NarrationView`); the console builds that from the demo director's progress.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Digits, Static

SEGMENT_STYLE = {"done": "$success", "missed": "$error", "current": "bold $accent", "todo": "$panel-lighten-2"}
LINE_STYLE = {"wait": "bold $warning", "good": "bold $success", "bad": "bold $error", "note": "", "dim": "dim",
              "countdown": "bold $error"}


@dataclass(frozen=True)
class NarrationView:
    demo_title: str
    number: int  # 1-based
    total: int
    title: str
    narration: str  # Markdown
    segments: tuple[str, ...]  # per chapter: done | missed | current | todo
    lines: tuple[tuple[str, str], ...] = ()  # (text, tone): what the chapter did, waits for, found
    detail: tuple[str, ...] = ()  # what happened, line by line (a diagnosis and what it ruled out)
    countdown: int | None = None  # seconds before the fault, while counting down
    hint: str = ""


class ChapterBar(Widget):
    """One segment per chapter, as wide as the panel allows."""

    DEFAULT_CSS = "ChapterBar { height: 1; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.segments: tuple[str, ...] = ()

    def show(self, segments: tuple[str, ...]) -> None:
        if segments != self.segments:
            self.segments = segments
            self.refresh()

    def render(self) -> Content:
        n = len(self.segments)
        if not n:
            return Content("")
        width = max(n * 2 - 1, self.size.width)
        seg = max(1, (width - (n - 1)) // n)
        parts: list[str | tuple[str, str]] = []
        for i, state in enumerate(self.segments):
            if i:
                parts.append(" ")
            parts.append(("━" * seg, SEGMENT_STYLE.get(state, "")))
        return Content.assemble(*parts)


class NarrationPanel(Vertical):
    DEFAULT_CSS = """
    NarrationPanel { border: round $accent; background: $surface; padding: 0 1; }
    NarrationPanel > #narration-head { height: auto; color: $text-muted; }
    NarrationPanel > #narration-title { height: auto; text-style: bold; color: $text; margin: 0 0 1 0; }
    NarrationPanel > #narration-scroll { height: 1fr; scrollbar-size-vertical: 1; }
    NarrationPanel #narration-text { background: $surface; padding: 0; margin: 0; }
    NarrationPanel > #narration-countdown { height: auto; display: none; color: $error; text-align: center;
                                           width: 1fr; }
    NarrationPanel > #narration-countdown.-shown { display: block; }
    NarrationPanel > #narration-status { height: auto; max-height: 60%; border-top: solid $panel-lighten-2;
                                         padding: 0; }
    NarrationPanel > #narration-hint { height: 1; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: NarrationView | None = None

    def compose(self) -> ComposeResult:
        from textual.widgets import Markdown  # markdown-it is slow to import: only when the demo runs

        yield Static("", id="narration-head")
        yield ChapterBar(id="narration-bar")
        yield Static("", id="narration-title")
        with VerticalScroll(id="narration-scroll"):
            yield Markdown("", id="narration-text")
        yield Digits("", id="narration-countdown")
        yield Static("", id="narration-status")
        yield Static("", id="narration-hint")

    @property
    def status_text(self) -> str:
        """What the status area shows, as plain text (for tests)."""
        return "\n".join(t for t, _ in self.view.lines) + "\n" + "\n".join(self.view.detail) if self.view else ""

    def show(self, view: NarrationView) -> None:
        old, self.view = self.view, view
        if not self.is_mounted:
            return
        if old is None or (old.number, old.total, old.demo_title) != (view.number, view.total, view.demo_title):
            self.query_one("#narration-head", Static).update(
                Content.assemble((view.demo_title, "bold"), f" · chapter {view.number}/{view.total}"))
        self.query_one(ChapterBar).show(view.segments)
        if old is None or (old.title, old.narration) != (view.title, view.narration):
            self.query_one("#narration-title", Static).update(Content(view.title))
            self.query_one("#narration-text").update(view.narration)
            self.query_one("#narration-scroll").scroll_home(animate=False)
        countdown = self.query_one("#narration-countdown", Digits)
        countdown.set_class(view.countdown is not None, "-shown")
        if view.countdown is not None:
            countdown.update(str(view.countdown))
        if old is None or (old.lines, old.detail) != (view.lines, view.detail):
            parts: list[Content] = [Content.styled(text, LINE_STYLE.get(tone, "")) for text, tone in view.lines]
            parts += [Content.styled(f"  {line}", "dim" if line.startswith(("✘", "→")) else "") for line in view.detail]
            self.query_one("#narration-status", Static).update(Content("\n").join(parts))
        self.query_one("#narration-hint", Static).update(Content.styled(view.hint, "dim"))

    def on_mount(self) -> None:
        if self.view is not None:
            view, self.view = self.view, None
            self.show(view)
