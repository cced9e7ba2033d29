"""An incident on one time axis: a row per lane (the fault, the ticket, the agent, each action),
each event a mark where it happened, shaded windows (a fault while it was active) behind them,
optional value lanes (a workload's good and bad requests and p99 as bars, an oracle's clean/dirty
strip), then every event listed with its time.

It takes plain data (`TimelineEvent`, `ShadedWindow`, `ValueLane`), never a store: the ticket
detail screen, the demo and the evaluation browser each build their events from what they hold.
`timeline_geometry` is where everything lands (columns of the shaded windows included), so a test
can check the drawing against the times it was given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from textual.content import Content
from textual.geometry import Size
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget

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
BARS = " ▁▂▃▄▅▆▇█"
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


@dataclass(frozen=True)
class ValueLane:
    """A row of values over time, each held until the next point: `bars` scale to the lane's
    largest value (▁ to █); `state` draws a point's value 1 as a good block and 0 as a bad one."""

    name: str
    points: tuple[tuple[datetime, float | None], ...]
    tone: str = ""  # the colour of its bars (a key of TONES)
    kind: str = "bars"  # bars | state
    unit: str = ""  # shown after the lane's largest value


@dataclass(frozen=True)
class Geometry:
    """Where a timeline is drawn: the time span of its track, the columns of the track, and each
    shaded window's first and last column (an open window reaches the last column)."""

    t0: datetime
    t1: datetime
    span: float  # seconds
    label_width: int
    track: int
    windows: tuple[tuple[int, int], ...]

    def column(self, at: datetime) -> int:
        return round((at - self.t0).total_seconds() / self.span * (self.track - 1))


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


def timeline_geometry(events: Sequence[TimelineEvent], windows: Sequence[ShadedWindow] = (),
                      lanes: Sequence[Lane] = (), width: int = 80, now: datetime | None = None,
                      values: Sequence[ValueLane] = ()) -> Geometry | None:
    """The layout for a given width (None: nothing to draw)."""
    times = [e.at for e in events] + [w.start for w in windows] + [w.end for w in windows if w.end]
    times += [at for lane in values for at, _ in lane.points]
    if not events and not windows:
        return None
    t0 = min(times)
    t1 = max([*times, now] if now is not None else times)
    span = max((t1 - t0).total_seconds(), 1.0)
    names = [lane.name for lane in lanes] + [e.lane for e in events] + [lane.name for lane in values]
    label_w = min(max((len(name) for name in names), default=4) + 1, 24, max(6, width // 3))
    track = max(MIN_TRACK, width - label_w - 1)
    geo = Geometry(t0, t1, span, label_w, track, ())
    shaded = tuple((geo.column(w.start), geo.column(w.end) if w.end else track - 1) for w in windows)
    return Geometry(t0, t1, span, label_w, track, shaded)


def _value_row(lane: ValueLane, geo: Geometry, shaded: list[tuple[int, int, str]]) -> tuple[_Row, str]:
    """A value lane's row and the largest value it shows."""
    row = _Row(geo.track)
    for a, b, style in shaded:
        for col in range(a, b + 1):
            row.shade(col, style)
    known = [v for _, v in lane.points if v is not None]
    top = max(known, default=0.0)
    points = sorted(lane.points, key=lambda p: p[0])
    for i, (at, value) in enumerate(points):
        first = geo.column(at)
        last = geo.column(points[i + 1][0]) - 1 if i + 1 < len(points) else first
        for col in range(first, max(first, last) + 1):
            if value is None:
                row.put(col, "·", "dim")
            elif lane.kind == "state":
                row.put(col, "█", TONES["good"] if value >= 0.5 else TONES["bad"])
            else:
                level = 0 if top <= 0 else max(1 if value > 0 else 0, round(value / top * (len(BARS) - 1)))
                row.put(col, BARS[level], TONES.get(lane.tone, ""))
    if lane.kind == "state" or not known:
        return row, ""
    return row, f"{top:.0f}{lane.unit}" if top >= 10 else f"{top:.2g}{lane.unit}"


def render_timeline(events: Sequence[TimelineEvent], windows: Sequence[ShadedWindow] = (),
                    lanes: Sequence[Lane] = (), width: int = 80, now: datetime | None = None,
                    listing: bool = True, values: Sequence[ValueLane] = ()) -> Content:
    """The chart (and the event list) for a given width."""
    return Content("\n").join(timeline_lines(events, windows, lanes, width, now, listing, values))


def timeline_lines(events: Sequence[TimelineEvent], windows: Sequence[ShadedWindow] = (),
                   lanes: Sequence[Lane] = (), width: int = 80, now: datetime | None = None,
                   listing: bool = True, values: Sequence[ValueLane] = ()) -> list[Content]:
    """`render_timeline`'s lines, unwrapped: only the event list's may be wider than `width`."""
    geo = timeline_geometry(events, windows, lanes, width, now, values)
    if geo is None:
        return [Content.styled("no events yet", "dim italic")]
    t0, t1, span, label_w, track = geo.t0, geo.t1, geo.span, geo.label_width, geo.track
    order = [lane.name for lane in lanes]
    for e in events:
        if e.lane not in order:
            order.append(e.lane)
    tone_of = {lane.name: lane.tone for lane in lanes}
    x = geo.column

    shaded = [(a, b, WINDOW_STYLE.get(w.tone, WINDOW_STYLE[""])) for (a, b), w in zip(geo.windows, windows,
                                                                                        strict=True)]
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
    scales = []
    for lane in values:
        row, top = _value_row(lane, geo, shaded)
        if top:
            scales.append(f"{lane.name} up to {top}")
        label = Content.styled(lane.name[: label_w - 1].ljust(label_w), TONES.get(lane.tone, "") or "bold")
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
    if scales:
        lines.append(Content.styled("bars: " + "; ".join(scales), "dim"))
    if listing and events:
        lines.append(Content(""))
        lane_w = max(len(e.lane) for e in events) if width >= 100 else 0  # narrow: no column, less wrapping
        for e in events:
            lines.append(Content.assemble(
                (f"{_clock(e.at)} ", "dim"), (f"{offset((e.at - t0).total_seconds()):>7} ", "dim"),
                (f"{e.mark} ", TONES.get(e.tone, "") or "bold"),
                (f"{e.lane:<{lane_w}}  ", TONES.get(tone_of.get(e.lane, ""), "") or "bold"), e.label))
    return lines


class IncidentTimeline(Widget):
    """`show(events, windows, lanes)`; redrawn for the width it gets.

    A trial's timeline runs to hundreds of lines (every event is listed): only the lines on screen
    are rendered, each once (a Static renders them all whenever it is drawn)."""

    DEFAULT_CSS = """
    IncidentTimeline { width: 1fr; height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None, listing: bool = True) -> None:
        super().__init__(id=id)
        self.events: tuple[TimelineEvent, ...] = ()
        self.windows: tuple[ShadedWindow, ...] = ()
        self.lanes: tuple[Lane, ...] = ()
        self.values: tuple[ValueLane, ...] = ()
        self.now: datetime | None = None
        self.geometry: Geometry | None = None  # as last drawn
        self.listing = listing
        self.lines: list[Content] = []  # as last drawn, wrapped to the width
        self._strips: dict[int, Strip] = {}
        self._drawn_for: tuple[int, int] | None = None

    def show(self, events: Sequence[TimelineEvent], windows: Sequence[ShadedWindow] = (),
             lanes: Sequence[Lane] = (), now: datetime | None = None, values: Sequence[ValueLane] = ()) -> None:
        data = (tuple(events), tuple(windows), tuple(lanes), now, tuple(values))
        if data == (self.events, self.windows, self.lanes, self.now, self.values) and self._drawn_for is not None:
            return
        self.events, self.windows, self.lanes, self.now, self.values = data
        self._draw()

    def _draw(self) -> None:
        width = self.content_region.width or self.size.width or 80
        self._drawn_for = (width, id(self.events))
        self.geometry = timeline_geometry(self.events, self.windows, self.lanes, width, self.now, self.values)
        self.lines = []
        for line in timeline_lines(self.events, self.windows, self.lanes, width, self.now, self.listing,
                                   self.values):
            self.lines += [line] if line.cell_length <= width else line.wrap(width)
        self._strips.clear()
        self.refresh(layout=True)

    def on_resize(self) -> None:
        if self._drawn_for is None or self._drawn_for[0] != self.content_region.width:
            self._draw()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # a new theme: the same lines in other colours

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self.lines))

    def render_line(self, y: int) -> Strip:
        strip = self._strips.get(y)
        if strip is None:
            line = self.lines[y] if y < len(self.lines) else Content("")
            strip = self._strips[y] = Visual.to_strips(self, line, self.size.width, 1, self.visual_style)[0]
        return strip
