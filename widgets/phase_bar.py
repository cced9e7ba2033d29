"""A trial's phases on one bar: each phase as long as it took (proportionally), green when it
passed, red when it failed, yellow while it runs; its name and time below when they fit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

STYLE = {True: "$success", False: "$error", None: "$warning"}


@dataclass(frozen=True)
class Phase:
    name: str
    start_s: float
    end_s: float | None  # None: still running
    ok: bool | None  # None: running or not judged


def render_phases(phases: Sequence[Phase], width: int, now_s: float | None = None) -> Content:
    if not phases:
        return Content.styled("no phase yet", "dim italic")
    start = phases[0].start_s
    end = max([p.end_s for p in phases if p.end_s is not None] + [now_s or 0.0, phases[-1].start_s])
    span = max(end - start, 1e-6)
    widths = []
    for p in phases:
        took = (p.end_s if p.end_s is not None else end) - p.start_s
        widths.append(max(1, round(took / span * width)))
    while sum(widths) > width and max(widths) > 1:  # the minimum widths pushed it over: trim the longest
        widths[widths.index(max(widths))] -= 1
    bar: list[tuple[str, str]] = []
    names: list[str | tuple[str, str]] = []
    for i, (p, w) in enumerate(zip(phases, widths, strict=True)):
        fill = "▆" if i % 2 == 0 else "▇"  # neighbours in one colour stay apart
        bar.append((fill * w, STYLE[p.ok]))
        took = (p.end_s if p.end_s is not None else end) - p.start_s
        label = f"{p.name} {took:.1f}s" + ("" if p.ok is not False else " ✘")
        if len(label) > w - 1:
            label = p.name if len(p.name) <= w - 1 else p.name[: max(0, w - 1)]
        names.append((label.ljust(w)[:w], "bold $error" if p.ok is False else "dim"))
    return Content("\n").join([Content.assemble(*bar), Content.assemble(*names)])


class PhaseBar(Static):
    DEFAULT_CSS = """
    PhaseBar { height: 2; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.phases: tuple[Phase, ...] = ()
        self.now_s: float | None = None

    def show(self, phases: Sequence[Phase], now_s: float | None = None) -> None:
        self.phases, self.now_s = tuple(phases), now_s
        self._draw()

    def _draw(self) -> None:
        self.update(render_phases(self.phases, max(10, self.content_region.width or 80), self.now_s))

    def on_resize(self) -> None:
        self._draw()
