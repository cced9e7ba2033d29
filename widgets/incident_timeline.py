"""An incident on one time axis: a row per lane (the fault, the ticket, the agent, each action),
each event a mark where it happened, shaded windows (a fault while it was active) behind them,
then every event listed with its time.

It takes plain data (`TimelineEvent`, `ShadedWindow`), never a store: the ticket detail screen,
the demo and the evaluation browser each build their events from what they hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from textual.content import Content
from textual.widgets import Static

# tone -> style of marks and lane lines
TONES: dict[str, str] = {
    "fault": "bold $error",
    "ticket": "bold $warning",
    "agent": "bold magenta",
    "approval": "bold cyan",
    "good": "bold $success",
    "bad": "bold $error",
    "low": "bold $success",
    "high": "bold $warning",
    "destructive": "bold $error",
    "muted": "dim",
}
WINDOW_STYLE = {"fault": "on $error 25%", "": "on $primary 20%"}
NICE_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
MIN_TRACK = 12
TICK_LABEL = 7  # room a tick label needs: "+10m30s" at most


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    lane: str  # the row it is drawn on
    label: str  # what happened, in one line
    tone: str = ""  # a key of TONES; "" draws it plain
    mark: str = "●"


@dataclass(frozen=True)
class ShadedWindow:
    start: datetime
    end: datetime | None = None  # None: still open, shaded to the right edge
    label: str = ""
    tone: str = "fault"


@dataclass(frozen=True)
class Lane:
    name: str
    tone: str = ""  # the colour of its label and line (an action's risk tier, for instance)


def offset(seconds: float) -> str:
    """+4.2s, +38s, +2m05s, +1h02m."""
    if seconds < 10 and seconds != int(seconds):
        return f"+{seconds:.1f}s"
    if seconds < 59.5:
        return f"+{seconds:.0f}s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"+{m}m{s:02d}s"
    h, rest = divmod(round(seconds), 3600)
    return f"+{h}h{rest // 60:02d}m"


def _clock(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S") if at.tzinfo else at.strftime("%H:%M:%S")


def _step(span: float, track: int) -> float:
    fits = max(1, track // (TICK_LABEL + 2))
    for step in NICE_STEPS:
        if span / step <= fits:
            return step
    return NICE_STEPS[-1] * math.ceil(span / NICE_STEPS[-1] / fits)


class _Row:
    """One line of the chart: characters, their styles and their backgrounds (shaded windows)."""

    def __init__(self, width: int) -> None:
        self.chars = [" "] * width
        self.fg = [""] * width
        self.bg = [""] * width

    def put(self, x: int, char: str, style: str = "") -> None:
        if 0 <= x < len(self.chars):
            self.chars[x] = char
            self.fg[x] = style or self.fg[x]

    def shade(self, x: int, background: str) -> None:
        if 0 <= x < len(self.chars):
            self.bg[x] = background

    def content(self) -> Content:
        parts: list[str | tuple[str, str]] = []
        run, run_style = "", ""
        for char, fg, bg in zip(self.chars, self.fg, self.bg, strict=True):  # one span per run of a style
            style = f"{fg} {bg}".strip()  # the background last: "bold $warning on $error 25%"
            if style != run_style and run:
                parts.append((run, run_style) if run_style else run)
                run = ""
            run, run_style = run + char, style
        if run:
            parts.append((run, run_style) if run_style else run)
        return Content.assemble(*parts)


def render_timeline(events: Sequence[TimelineEvent], windows: Sequence[ShadedWindow] = (),
                    lanes: Sequence[Lane] = (), width: int = 80, now: datetime | None = None,
                    listing: bool = True) -> Content:
    """The chart (and the event list) for a given width."""
    if not events and not windows:
        return Content.styled("no events yet", "dim italic")
    times = [e.at for e in events] + [w.start for w in windows] + [w.end for w in windows if w.end]
    t0 = min(times)
    t1 = max([*times, now] if now is not None else times)
    span = max((t1 - t0).total_seconds(), 1.0)
    order = [lane.name for lane in lanes]
    for e in events:
        if e.lane not in order:
            order.append(e.lane)
    tone_of = {lane.name: lane.tone for lane in lanes}
    label_w = min(max((len(name) for name in order), default=4) + 1, 24, max(6, width // 3))
    track = max(MIN_TRACK, width - label_w - 1)

    def x(at: datetime) -> int:
        return round((at - t0).total_seconds() / span * (track - 1))

    shaded: list[tuple[int, int, str]] = []
    for w in windows:
        shaded.append((x(w.start), x(w.end) if w.end else track - 1, WINDOW_STYLE.get(w.tone, WINDOW_STYLE[""])))
    lines: list[Content] = []
    for name in order:
        row = _Row(track)
        for a, b, style in shaded:
            for col in range(a, b + 1):
                row.shade(col, style)
        mine = [e for e in events if e.lane == name]
        lane_style = TONES.get(tone_of.get(name, ""), "")
        if mine:
            first, last = x(mine[0].at), x(mine[-1].at)
            for col in range(first, last + 1):
                row.put(col, "─", "dim")
            taken: set[int] = set()
            for e in mine:
                col = x(e.at)
                row.put(col, "◆" if col in taken else e.mark, TONES.get(e.tone, lane_style or ""))
                taken.add(col)
        label = Content.styled(name[: label_w - 1].ljust(label_w), lane_style or "bold")
        lines.append(Content.assemble(label, " ", row.content()))
    # the axis: ticks every nice step from t0, labelled where they fit
    step = _step(span, track)
    axis, labels = _Row(track), _Row(track)
    for col in range(track):
        axis.put(col, "─", "dim")
    free_from = 0
    k = 0
    while k * step <= span + 1e-9:
        col = round(k * step / span * (track - 1))
        axis.put(col, "┴" if 0 < col < track - 1 else ("└" if col == 0 else "┘"), "dim")
        text = offset(k * step) if k else "+0s"
        if col >= free_from and col + len(text) <= track:
            for i, ch in enumerate(text):
                labels.put(col + i, ch, "dim")
            free_from = col + len(text) + 2
        k += 1
    lines.append(Content.assemble(" " * (label_w + 1), axis.content()))
    lines.append(Content.assemble(" " * (label_w + 1), labels.content()))
    lines.append(Content.styled(f"{_clock(t0)} → {_clock(t1)} UTC ({offset(span)[1:]})", "dim"))
    for w in windows:
        end = f"{_clock(w.end)} ({offset((w.end - w.start).total_seconds())[1:]})" if w.end else "not reverted yet"
        lines.append(Content.assemble((" ░ ", WINDOW_STYLE.get(w.tone, WINDOW_STYLE[""])),
                                      f" {w.label}: {_clock(w.start)} → {end}"))
    if listing and events:
        lines.append(Content(""))
        lane_w = max(len(e.lane) for e in events) if width >= 100 else 0  # narrow: no column, less wrapping
        for e in events:
            lines.append(Content.assemble(
                (f"{_clock(e.at)} ", "dim"), (f"{offset((e.at - t0).total_seconds()):>7} ", "dim"),
                (f"{e.mark} ", TONES.get(e.tone, "") or "bold"),
                (f"{e.lane:<{lane_w}}  ", TONES.get(tone_of.get(e.lane, ""), "") or "bold"), e.label))
    return Content("\n").join(lines)


class IncidentTimeline(Static):
    """`show(events, windows, lanes)`; redrawn for the width it gets."""

    DEFAULT_CSS = """
    IncidentTimeline { width: 1fr; height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None, listing: bool = True) -> None:
        super().__init__(id=id)
        self.events: tuple[TimelineEvent, ...] = ()
        self.windows: tuple[ShadedWindow, ...] = ()
        self.lanes: tuple[Lane, ...] = ()
        self.now: datetime | None = None
        self.listing = listing
        self._drawn_for: tuple[int, int] | None = None

    def show(self, events: Sequence[TimelineEvent], windows: Sequence[ShadedWindow] = (),
             lanes: Sequence[Lane] = (), now: datetime | None = None) -> None:
        data = (tuple(events), tuple(windows), tuple(lanes), now)
        if data == (self.events, self.windows, self.lanes, self.now) and self._drawn_for is not None:
            return
        self.events, self.windows, self.lanes, self.now = data
        self._draw()

    def _draw(self) -> None:
        width = self.content_region.width or self.size.width or 80
        self._drawn_for = (width, id(self.events))
        self.update(render_timeline(self.events, self.windows, self.lanes, width, self.now, self.listing))

    def on_resize(self) -> None:
        if self._drawn_for is None or self._drawn_for[0] != self.content_region.width:
            self._draw()
