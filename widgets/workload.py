"""The workload panel: what clients see (QPS, error rate, p99) over the last minutes, with plotext."""

from __future__ import annotations

import asyncio
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from widgets import format as fmt


@dataclass(frozen=True)
class WorkloadPoint:
    t: float  # seconds, relative to the newest point (<= 0)
    qps: float | None
    error_rate: float | None
    p99_ms: float | None


class WorkloadPanel(Vertical):
    """A header line with the latest figures, then two plots over the same time axis: QPS, and p99
    latency. With the -degraded class the border and the lines turn red.

    plotext takes a quarter of a second to import: the plots are mounted once it is loaded (in a
    thread, after the first frame), so it never delays the console's first frame."""

    DEFAULT_CSS = """
    WorkloadPanel { border: round $panel-lighten-2; height: 20; padding: 0 1; }
    WorkloadPanel.-degraded { border: round $error; }
    WorkloadPanel > #workload-figures { height: 1; }
    WorkloadPanel > PlotextPlot { height: 1fr; }
    WorkloadPanel > #workload-loading { height: 1fr; color: $text-muted; content-align: center middle; }
    """

    def __init__(self, *, window_s: float = 300.0, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_window_s = window_s
        self.window_s = 60.0  # grows with the data, a minute at a time, up to max_window_s
        self.points: tuple[WorkloadPoint, ...] = ()
        self.degraded = False
        self.plots: tuple[Any, Any] | None = None  # (qps, p99) PlotextPlots, once loaded
        self.border_title = "Workload"

    @property
    def plot(self) -> Any:
        return self.plots[0] if self.plots else None

    def compose(self) -> ComposeResult:
        yield Static("no samples yet", id="workload-figures")
        yield Static("loading the plot…", id="workload-loading")

    def on_mount(self) -> None:
        self.run_worker(self._load_plot, group="workload-plot", exit_on_error=False)
        self._draw()

    async def _load_plot(self) -> None:
        module = await asyncio.to_thread(importlib.import_module, "textual_plotext")
        plots = (module.PlotextPlot(id="workload-qps"), module.PlotextPlot(id="workload-p99"))
        await self.query_one("#workload-loading").remove()
        await self.mount_all(plots)
        self.plots = plots
        self._draw()

    def show(self, points: Sequence[WorkloadPoint], degraded: bool) -> None:
        points = tuple(p for p in points if p.t >= -self.max_window_s)
        if points == self.points and degraded == self.degraded:
            return
        self.points = points
        self.degraded = degraded
        span = -min((p.t for p in points), default=0.0)
        self.window_s = min(self.max_window_s, max(60.0, math.ceil(span / 60.0) * 60.0))
        self.set_class(degraded, "-degraded")
        self._draw()

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        figures = self.query_one("#workload-figures", Static)
        last = self.points[-1] if self.points else None
        if last is None:
            figures.update("[$text-muted]no samples yet[/]", layout=False)
        else:
            err_style = "$error" if (last.error_rate or 0) > 0 else "$text"
            figures.update(
                f"QPS [b]{fmt.count(last.qps)}[/]   errors [{err_style}][b]{fmt.percent(last.error_rate, 2)}[/][/]"
                f"   p99 [b]{fmt.ms(last.p99_ms)}[/]"
                + ("   [$error b]DEGRADED[/]" if self.degraded else ""), layout=False
            )
        if self.plots is None:
            return
        qps_plot, p99_plot = self.plots
        errors = [(p.t, p.error_rate) for p in self.points if p.error_rate is not None]
        failing = any(v for _, v in errors)  # errors get their own axis only while there are some
        self._series(qps_plot, [(p.t, p.qps) for p in self.points if p.qps is not None],
                     "qps · errors % (right)" if failing else "qps", "red" if self.degraded else "green", fmt.count,
                     x_labels=False, right=(errors, "yellow", lambda v: fmt.percent(v, 1)) if failing else None)
        self._series(p99_plot, [(p.t, p.p99_ms) for p in self.points if p.p99_ms is not None], "p99",
                     "orange" if self.degraded else "cyan", fmt.ms, x_labels=True)

    def _series(self, plot: Any, values: list[tuple[float, float]], label: str, color: str,
                tick_label: Callable[[float], str], x_labels: bool,
                right: tuple[list[tuple[float, float]], str, Callable[[float], str]] | None = None) -> None:
        """One plot: `values` on the left axis and, when given, a second series on the right axis."""
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        if values:
            plt.plot([t for t, _ in values], [v for _, v in values], marker="braille", color=color)
            top = max(1.0, max(v for _, v in values) * 1.15)
            plt.ylim(0, top)
            plt.yticks(*_ticks(top, tick_label, 2))
        if right is not None:
            points, right_color, right_label = right
            plt.plot([t for t, _ in points], [v for _, v in points], marker="braille", color=right_color,
                     yside="right")
            top = max(0.01, max(v for _, v in points) * 1.15)
            plt.ylim(0, top, yside="right")
            plt.yticks(*_ticks(top, right_label, 2), yside="right")
        plt.title(label)
        plt.xlim(-self.window_s, 0)
        ticks = [-self.window_s + i * self.window_s / 4 for i in range(5)]
        plt.xticks(ticks, [_ago(t) for t in ticks] if x_labels else [""] * len(ticks))
        plot.refresh()


def _ticks(top: float, label, n: int = 4) -> tuple[list[float], list[str]]:
    values = [top * i / n for i in range(n + 1)]
    return values, [label(v) for v in values]


def _ago(t: float) -> str:
    if not t:
        return "now"
    return f"{t:.0f}s" if abs(t) < 60 else f"{t / 60:g}m"
