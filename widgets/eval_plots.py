"""A campaign's plots, one per variant series: the fraction of trials mitigated over time
(Kaplan-Meier steps, censored trials included), each trial's TTM as a strip, and tokens.

Plain data in (`VariantSeries`), plotext out. plotext is imported in a thread when the plots are
first shown, so it never delays the console's first frame.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

COLORS = ("cyan", "orange", "magenta", "green", "yellow", "blue", "red")


@dataclass(frozen=True)
class VariantSeries:
    name: str
    km: tuple[tuple[float, float], ...]  # (t seconds, fraction mitigated by t), steps in time order
    ttm: tuple[tuple[float, bool], ...]  # (TTM or the budget, censored) of each valid trial
    tokens: int  # input + output tokens over its valid trials
    trials: int  # valid trials
    budget_s: float = 0.0
    sessions: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class EvalPlots(Vertical):
    DEFAULT_CSS = """
    EvalPlots { height: 1fr; }
    EvalPlots > #plots-loading { height: 1fr; content-align: center middle; color: $text-muted; }
    EvalPlots > #plots-km { height: 1fr; }
    EvalPlots > #plots-row { height: 1fr; }
    EvalPlots PlotextPlot { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series: tuple[VariantSeries, ...] = ()
        self.title = ""
        self.plots: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static("loading the plots…", id="plots-loading")

    def on_mount(self) -> None:
        self.run_worker(self._load, group="eval-plots", exit_on_error=False)

    async def _load(self) -> None:
        module = await asyncio.to_thread(importlib.import_module, "textual_plotext")
        plots = {name: module.PlotextPlot(id=f"plots-{name}") for name in ("km", "ttm", "tokens")}
        await self.query_one("#plots-loading").remove()
        await self.mount(plots["km"])
        await self.mount(Horizontal(plots["ttm"], plots["tokens"], id="plots-row"))
        self.plots = plots
        self._draw()

    def show(self, series: Sequence[VariantSeries], title: str = "") -> None:
        if tuple(series) == self.series and title == self.title:
            return
        self.series, self.title = tuple(series), title
        self._draw()

    def _draw(self) -> None:
        if self.plots is None:
            return
        km, ttm, tokens = self.plots["km"].plt, self.plots["ttm"].plt, self.plots["tokens"].plt
        for plt in (km, ttm, tokens):
            plt.clear_data()
            plt.clear_figure()
        budget = max((s.budget_s for s in self.series), default=0.0) or 1.0
        for i, s in enumerate(self.series):
            color = COLORS[i % len(COLORS)]
            xs, ys = [0.0], [0.0]
            for t, frac in s.km:
                xs += [t, t]
                ys += [ys[-1], frac]
            xs.append(budget)
            ys.append(ys[-1])
            km.plot(xs, ys, color=color, marker="braille", label=f"{s.name} (n={s.trials})")
            done = [(i + 1 + _jitter(j), v) for j, (v, censored) in enumerate(s.ttm) if not censored]
            cut = [(i + 1 + _jitter(j), v) for j, (v, censored) in enumerate(s.ttm) if censored]
            if done:
                ttm.scatter([x for x, _ in done], [v for _, v in done], color=color, marker="●")
            if cut:
                ttm.scatter([x for x, _ in cut], [v for _, v in cut], color="red", marker="x")
        km.title("fraction mitigated by t (Kaplan-Meier; censored at the budget)")
        km.ylim(0, 1.05)
        km.xlim(0, budget)
        km.xlabel("seconds after the fault")
        names = [s.name for s in self.series]
        ttm.title("TTM per trial (x not mitigated, at the budget)")
        ttm.xlim(0.5, len(names) + 0.5)
        ttm.ylim(0, budget * 1.05)
        ttm.xticks(list(range(1, len(names) + 1)), names)
        tokens.title("tokens per variant (input + output)")
        if names:
            tokens.bar(names, [s.tokens for s in self.series], color=[COLORS[i % len(COLORS)]
                                                                       for i in range(len(names))])
        for name in ("km", "ttm", "tokens"):
            self.plots[name].refresh()


def _jitter(j: int) -> float:
    """Spread a variant's points sideways, deterministically (a strip plot)."""
    return ((j * 7919) % 13 - 6) / 30
