"""One campaign: the scenario x variant matrix (k/n successes, the Wilson interval, the median
TTM, coloured by outcome) beside the paired comparisons and the thresholds; the trials, filterable
(`/`) and sortable (`s`); the plots. A running campaign updates as its trials finish.

Keys: `m` `t` `g` matrix, trials, plots; `enter` on a cell shows its trials, on a trial its
detail; `c` compares two variants; `escape` goes back.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Static, TabbedContent, TabPane
from textual.worker import Worker

from screens.base import ConsoleScreen
from screens.eval_campaigns import verdict_text
from screens.eval_poll import Poller
from screens.messages import EvalAnalysisLoaded, EvalCampaignLoaded, EvalComparisonLoaded
from screens.state import ConsoleState
from widgets.eval_plots import EvalPlots, VariantSeries
from widgets.keyed_table import KeyedTable

TRIAL_COLUMNS = [("id", "trial", 6), ("scenario", "scenario", 26), ("variant", "variant", 12), ("seed", "seed", 5),
                 ("outcome", "outcome", 22), ("ttd", "TTD", 8), ("ttm", "TTM", 8), ("actions", "actions", 7),
                 ("tokens", "tokens", 8), ("reason", "reason")]
SORTS = ("id", "ttd", "ttm", "actions", "tokens")
OUTCOME_STYLE = {"success": "green", "failure": "bold red", "timeout": "red", "harmful": "bold white on red",
                 "invalid": "yellow", "skipped": "dim", "missing": "dim", "running": "bold yellow"}
DECISION_STYLE = {"a_better": "bold white on dark_green", "b_better": "bold white on dark_red",
                  "no_difference": "bold black on yellow", "insufficient_pairs": "dim reverse"}
DECISION_WORD = {"a_better": " A better ", "b_better": " B better ", "no_difference": " no difference ",
                 "insufficient_pairs": " too few pairs "}
REANALYSE_S = 5.0  # a running campaign's bootstrap analysis, at most this often
FILTER_KEYS = {"o": "outcome", "outcome": "outcome", "v": "variant", "variant": "variant", "s": "scenario",
               "scenario": "scenario"}


# -- what the views show, from the campaign's TrialResults ---------------------------------------------


def outcome_of(t: Any) -> str:
    """A trial's outcome as the browser shows it: a running trial says so (with its phase)."""
    if t.outcome == "missing" and t.trial_id is not None:
        return "running"
    if t.outcome == "success" and t.self_healed:
        return "success (self-healed)"
    return t.outcome


def _secs(value: Any, censored: bool = False) -> str:
    if value is None:
        return "-"
    return f">{value:.0f}s" if censored else f"{value:.1f}s"


def trial_values(t: Any) -> dict[str, Any]:
    m = t.metrics or {}
    agent = m.get("agent") or {}
    return {
        "id": t.trial_id if t.trial_id is not None else 10**9,
        "ttd": None if m.get("ttd_censored") else m.get("ttd_s"),
        "ttm": None if m.get("ttm_censored") else m.get("ttm_s"),
        "actions": int((m.get("actions") or {}).get("executed") or 0),
        "tokens": int(agent.get("input_tokens") or 0) + int(agent.get("output_tokens") or 0),
    }


def parse_filter(text: str) -> list[tuple[str | None, str]]:
    """`outcome:failure v:embedded tikv` -> [(outcome, failure), (variant, embedded), (None, tikv)]."""
    out: list[tuple[str | None, str]] = []
    for word in text.lower().split():
        key, sep, value = word.partition(":")
        if sep and key in FILTER_KEYS:
            out.append((FILTER_KEYS[key], value))
        else:
            out.append((None, word))
    return out


def matches(t: Any, terms: list[tuple[str | None, str]]) -> bool:
    fields = {"outcome": outcome_of(t).lower(), "variant": t.variant.lower(), "scenario": t.scenario.lower()}
    for key, value in terms:
        if key is None:
            if not any(value in v for v in fields.values()):
                return False
        elif value not in fields[key]:
            return False
    return True


def sort_trials(trials: list[Any], key: str, descending: bool) -> list[Any]:
    """By a column; trials without the value (not detected, not mitigated) always last."""
    known = [t for t in trials if trial_values(t)[key] is not None]
    unknown = [t for t in trials if trial_values(t)[key] is None]
    known.sort(key=lambda t: (trial_values(t)[key], trial_values(t)["id"]), reverse=descending)
    return known + unknown


def trial_cells(t: Any) -> tuple[Any, ...]:
    m = t.metrics or {}
    v = trial_values(t)
    outcome = outcome_of(t)
    if outcome == "running" and t.phases:
        outcome = f"running: {t.phases[-1].get('phase')}"
    reason = m.get("reason") or (t.error or {}).get("reason") or (t.error or {}).get("message") or ""
    return (t.trial_id if t.trial_id is not None else "-", t.scenario, t.variant, t.seed_index,
            Text(outcome, style=OUTCOME_STYLE.get(outcome.split(" ")[0].rstrip(":"), "")),
            _secs(m.get("ttd_s"), bool(m.get("ttd_censored"))), _secs(m.get("ttm_s"), bool(m.get("ttm_censored"))),
            v["actions"], v["tokens"] or "-", str(reason)[:80])


def cell_text(cell: dict[str, Any], running: int) -> Text:
    """A matrix cell: k/n [Wilson 95%], then the median TTM and what went wrong, coloured by outcome."""
    o = cell["outcomes"]
    tail = []
    if running:
        tail.append((f" ▶{running}", "bold yellow"))
    if cell["control"]:
        text = Text(f"control: {cell['valid']} valid", style="cyan")
        text.append(f"\n{cell.get('false_tickets', 0)} tickets · {cell.get('unnecessary_actions', 0)} actions",
                    style="red" if cell.get("false_tickets") or cell.get("unnecessary_actions") else "dim")
        for part in tail:
            text.append(*part)
        return text
    s = cell["success"]
    if not s["n"]:
        text = Text(f"- (0 valid of {cell['trials']})", style="dim")
    else:
        rate = s["rate"]
        style = "bold green" if rate == 1 else ("yellow" if rate >= 0.5 else "bold red")
        if o["harmful"]:
            style = "bold white on red"
        lo, hi = s["ci95"]
        text = Text(f"{s['k']}/{s['n']} [{lo:.2f}, {hi:.2f}]", style=style)
    ttm = cell.get("ttm") or {}
    median = ttm.get("median")
    text.append("\nTTM " + (f"{median:.1f}s" if median is not None else "-"), style="")
    bad = [(f" · {o[k]} {k}", "red" if k in ("harmful", "failure", "timeout") else "yellow")
           for k in ("harmful", "failure", "timeout", "invalid") if o.get(k)]
    for part in bad + tail:
        text.append(*part)
    return text


def variant_series(view: Any) -> list[VariantSeries]:
    """Per variant over the faulted scenarios: KM of TTM, each trial's TTM, tokens."""
    from eval import stats

    spec = view.campaign.spec
    faulted = {s.name for s in spec.scenarios if not s.control}
    out = []
    for v in spec.variants:
        valid = [t for t in view.trials if t.variant == v.name and t.scenario in faulted and t.valid]
        times = [float(t.ttm_rmst or 0.0) for t in valid]
        events = [t.mitigated for t in valid]
        km = tuple((t, round(1 - s, 6)) for t, s in stats.kaplan_meier(times, events)) if valid else ()
        out.append(VariantSeries(
            name=v.name, km=km, ttm=tuple((x, not e) for x, e in zip(times, events, strict=True)),
            tokens=sum(trial_values(t)["tokens"] for t in valid), trials=len(valid),
            budget_s=max((t.budget_s or 0.0 for t in valid), default=0.0),
            sessions=sum(t.count("agent", "sessions") for t in valid)))
    return out


METRIC_NAME = {"success_rate": "success", "ttm_rmst": "TTM (RMST)"}


def comparison_lines(rows: list[dict[str, Any]]) -> Text:
    """Each comparison as its decision badge, where and what, the estimate with n, interval and
    method; grouped under a heading per pair of variants."""
    out = Text()
    pair = None
    for c in rows:
        if (c["a"], c["b"]) != pair:
            pair = (c["a"], c["b"])
            out.append(f"{c['a']} (A) vs {c['b']} (B)\n", style="bold")
        word = DECISION_WORD.get(c.get("decision", ""), c.get("decision", "?"))
        out.append(word, style=DECISION_STYLE.get(c.get("decision", ""), ""))
        out.append(f" {c['scenario'] or 'all scenarios'} · {METRIC_NAME.get(c['metric'], c['metric'])}\n")
        out.append(f"   {c['text']}\n", style="dim")
    return out


def threshold_lines(rules: list[dict[str, Any]]) -> Text:
    out = Text()
    for r in rules:
        out.append(" ✔ " if r["passed"] else " ✘ ", style="bold white on dark_green" if r["passed"]
                   else "bold white on red")
        out.append(f" {r['rule']}\n", style="bold")
        out.append(f"   {r['observed']}\n", style="dim")
    return out


class CampaignScreen(ConsoleScreen):
    MODE = "eval"

    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("m", "tab('matrix')", "Matrix"),
        Binding("t", "tab('trials')", "Trials"),
        Binding("g", "tab('plots')", "Plots"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("r", "reverse", "Reverse", show=False),
        Binding("c", "compare", "Compare"),
    ]

    def __init__(self, campaign_id: int) -> None:
        super().__init__()
        self.campaign_id = campaign_id
        self.view: Any = None  # eval.browse.CampaignView
        self.analysis: Any = None
        self.analysed_version: tuple[Any, ...] | None = None
        self.analysed_at = 0.0
        self.picked: tuple[str, str] | None = None
        self.picked_rows: list[dict[str, Any]] = []
        self.filter_text = ""
        self.sort_key = "id"
        self.descending = False
        self.shown_trials: list[Any] = []
        self.trials_table_stale = False  # filled when its tab shows: 500 rows cost the matrix 0.2 s
        self.error = ""
        self.poller = Poller(self, self._read, lambda: self.app.poll_interval, f"eval-campaign-{campaign_id}")

    def compose_body(self) -> ComposeResult:
        with Vertical(id="campaign-body"):
            yield Static(f"campaign {self.campaign_id}: loading…", id="campaign-title")
            with TabbedContent(id="campaign-tabs", initial="matrix"):
                with TabPane("Matrix [m]", id="matrix"), Horizontal(id="matrix-body"):
                    yield DataTable(id="matrix-table", cursor_type="cell", zebra_stripes=False)
                    with VerticalScroll(id="campaign-side"):
                        yield Static("", id="comparisons")
                        yield Static("", id="thresholds")
                with TabPane("Trials [t]", id="trials"), Vertical(id="trials-body"):
                    yield Input(placeholder="filter: outcome:failure variant:embedded scenario:tikv, or any word",
                                id="trial-filter")
                    yield Static("", id="trials-status")
                    yield KeyedTable(TRIAL_COLUMNS, id="trials-table")
                with TabPane("Plots [g]", id="plots"):
                    yield EvalPlots(id="eval-plots")

    def on_mount(self) -> None:
        self.query_one("#matrix-table").border_title = "Scenario x variant: successes k/n \\[Wilson 95%], median TTM"
        self.query_one("#campaign-side").border_title = "Comparisons and thresholds"
        self.query_one("#trials-table").border_title = "Trials"
        self.query_one("#trial-filter").display = False
        self.query_one("#matrix-table").focus()
        self.poller.start()

    def on_unmount(self) -> None:
        self.poller.stop()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.poller.finished(event)

    def render_body(self, state: ConsoleState, what: str) -> None:
        pass  # this screen draws what its own poll reads

    # -- reading ------------------------------------------------------------------------------------

    async def _read(self) -> None:
        from eval.browse import campaign_analysis, campaign_version, campaign_view

        store = self.host.store
        if store is None:
            return
        try:
            version = await campaign_version(store, self.campaign_id)
            if version is None:
                self.post_message(EvalCampaignLoaded(self.campaign_id, None, f"no campaign {self.campaign_id} in "
                                                     "this store"))
                return
            view = self.view
            if view is None or view.version != version:
                view = await campaign_view(store, self.campaign_id)
                self.post_message(EvalCampaignLoaded(self.campaign_id, view))
        except Exception as e:  # a spec that no longer loads, a store being written: shown, polled again
            self.post_message(EvalCampaignLoaded(self.campaign_id, None, f"{type(e).__name__}: {e}"))
            return
        running = version[0] == "running"
        drawn = self.view is not None and self.view.version == version  # the matrix first, then the analysis
        if drawn and self.analysed_version != version and (not running or
                                                           time.monotonic() - self.analysed_at > REANALYSE_S):
            self.analysed_at = time.monotonic()
            analysis = await campaign_analysis(view)
            self.post_message(EvalAnalysisLoaded(self.campaign_id, view.version, analysis))

    @on(EvalCampaignLoaded)
    def _loaded(self, message: EvalCampaignLoaded) -> None:
        if message.campaign_id != self.campaign_id:
            return
        if message.view is None:
            self.error = message.error
            self._title()
            return
        self.error = ""
        self.view = message.view
        self._title()
        self._matrix()
        self._trials()
        self.query_one(EvalPlots).show(variant_series(self.view))
        if self.picked is not None:
            self._compare(*self.picked)
        if self.analysed_version != self.view.version:
            # the matrix is drawn once this refresh is done: its analysis next, not a poll later
            self.call_after_refresh(self.poller.poll_soon)

    @on(EvalAnalysisLoaded)
    def _analysed(self, message: EvalAnalysisLoaded) -> None:
        if message.campaign_id != self.campaign_id:
            return
        self.analysis, self.analysed_version = message.analysis, message.version
        self._title()
        self._side()

    # -- drawing --------------------------------------------------------------------------------------

    def _title(self) -> None:
        title = self.query_one("#campaign-title", Static)
        if self.view is None:
            title.update(f"[b]campaign {self.campaign_id}[/]: " + (f"[b $error]{self.error}[/]" if self.error
                                                                  else "loading…"))
            return
        r, spec = self.view.record, self.view.campaign.spec
        trials = self.view.trials
        done = sum(1 for t in trials if t.outcome not in ("missing",))
        running = sum(1 for t in trials if outcome_of(t) == "running")
        line = Text.assemble((f"campaign {self.campaign_id} · {r.name}", "bold"), "  ",
                             (r.status, "bold yellow" if r.status == "running" else ""), "  ")
        if self.analysis is not None:
            line.append_text(verdict_text(self.analysis.exit_code, self.analysis.verdict))
            if r.status == "running":
                line.append(" so far", style="dim")
        else:
            line.append("judging…", style="dim")
        line.append(f"  {done}/{len(trials)} trials")
        if running:
            line.append(f" (▶ {running} running)", style="bold yellow")
        line.append(f"  · started {(r.started_at or '')[:19].replace('T', ' ')} · seed {r.seed} · spec "
                    f"{r.spec_sha256[:12]} · {spec.seeds} seeds x {spec.repeats} repeats", style="dim")
        if self.error:
            line.append(f"\n{self.error}", style="bold red")
        elif self.analysis is not None and self.analysis.reasons:
            line.append("\n" + "; ".join(self.analysis.reasons[:3]), style="yellow")
        title.update(line)

    def _matrix(self) -> None:
        table = self.query_one("#matrix-table", DataTable)
        spec = self.view.campaign.spec
        variants = [v.name for v in spec.variants]
        cells = {(c["scenario"], c["variant"]): c for c in self.view.cells}
        running: dict[tuple[str, str], int] = {}
        for t in self.view.trials:
            if outcome_of(t) == "running":
                running[(t.scenario, t.variant)] = running.get((t.scenario, t.variant), 0) + 1
        cursor = table.cursor_coordinate
        table.clear(columns=True)
        table.add_column("scenario", key="scenario", width=26)
        for v in variants:
            table.add_column(v, key=v, width=max(25, len(v) + 2))
        for s in spec.scenarios:
            fault = ", ".join(f.kind for f in s.faults) or "no fault"
            row: list[Any] = [Text.assemble((s.name, "bold"), (f"\n{s.subject}: {fault}", "dim"))]
            for v in variants:
                cell = cells.get((s.name, v))
                row.append(cell_text(cell, running.get((s.name, v), 0)) if cell else Text("not run", style="dim"))
            table.add_row(*row, key=s.name, height=2)
        if table.row_count:
            table.move_cursor(row=min(cursor.row, table.row_count - 1),
                              column=max(1, min(cursor.column, len(variants))), animate=False)

    def _side(self) -> None:
        comps = self.query_one("#comparisons", Static)
        parts = Text()
        if self.picked is not None:
            parts.append("Picked with c\n", style="bold underline")
            parts.append_text(comparison_lines(self.picked_rows) if self.picked_rows else Text("computing…\n",
                                                                                              style="dim"))
            parts.append("\n")
        if self.analysis is not None:
            parts.append("Paired comparisons (A - B)\n", style="bold underline")
            if self.analysis.comparisons:
                parts.append_text(comparison_lines(self.analysis.comparisons))
            else:
                parts.append("none: no baseline and agent variant pair (press c to pick two)\n", style="dim")
        else:
            parts.append("computing the comparisons (bootstrap)…\n", style="dim")
        comps.update(parts)
        rules = self.query_one("#thresholds", Static)
        if self.analysis is None:
            rules.update("")
            return
        out = Text("\nThresholds\n", style="bold underline")
        out.append_text(threshold_lines(self.analysis.thresholds) if self.analysis.thresholds
                        else Text("none in this campaign\n", style="dim"))
        integ = self.analysis.integrity
        out.append("\nIntegrity: ", style="bold")
        out.append("every fault reverted and verified" if integ["ok"] else "; ".join(integ["problems"][:3]),
                   style="green" if integ["ok"] else "bold red")
        rules.update(out)

    def _trials(self) -> None:
        if self.view is None:
            return
        terms = parse_filter(self.filter_text)
        shown = [t for t in self.view.trials if t.trial_id is not None and matches(t, terms)]
        shown = sort_trials(shown, self.sort_key, self.descending)
        self.shown_trials = shown
        self.trials_table_stale = True
        if self.query_one(TabbedContent).active == "trials":
            self._fill_trials_table()
        total = sum(1 for t in self.view.trials if t.trial_id is not None)
        arrow = "↓" if self.descending else "↑"
        status = f"{len(shown)} of {total} trials · sorted by [b]{self.sort_key}[/] {arrow} [dim](s: next column, " \
                 f"r: reverse)[/]"
        if self.filter_text:
            status += f" · filter [b]{self.filter_text}[/] [dim](/ to change, empty to clear)[/]"
        else:
            status += " [dim]· / filters by outcome, variant, scenario[/]"
        self.query_one("#trials-status", Static).update(status)

    def _fill_trials_table(self) -> None:
        if self.trials_table_stale:
            self.trials_table_stale = False
            self.query_one("#trials-table", KeyedTable).sync([(str(t.trial_id), trial_cells(t))
                                                               for t in self.shown_trials])

    @on(TabbedContent.TabActivated, "#campaign-tabs")
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "trials":
            self._fill_trials_table()

    # -- keys ----------------------------------------------------------------------------------------

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name
        if name == "trials":
            self._fill_trials_table()  # now: a key pressed next (enter) finds the rows
        focus = {"matrix": "#matrix-table", "trials": "#trials-table"}.get(name)
        if focus:
            self.query_one(focus).focus()

    def action_back(self) -> None:
        box = self.query_one("#trial-filter", Input)
        if box.display and box.has_focus:
            box.display = bool(self.filter_text)
            self.query_one("#trials-table").focus()
            return
        if self.query_one(TabbedContent).active != "matrix":  # back up the way enter came: trials -> matrix
            self.action_tab("matrix")
            return
        self.dismiss()

    def action_filter(self) -> None:
        self.action_tab("trials")
        box = self.query_one("#trial-filter", Input)
        box.display = True
        box.value = self.filter_text
        box.focus()

    @on(Input.Changed, "#trial-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._trials()

    @on(Input.Submitted, "#trial-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.input.display = bool(self.filter_text)
        self.query_one("#trials-table").focus()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        box = self.query_one("#trial-filter", Input)
        box.value = text
        box.display = bool(text)
        self._trials()

    def action_sort(self) -> None:
        self.sort_key = SORTS[(SORTS.index(self.sort_key) + 1) % len(SORTS)]
        self.descending = self.sort_key in ("actions", "tokens")  # the most first; times: the fastest first
        self.action_tab("trials")
        self._trials()

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self._trials()

    @on(DataTable.HeaderSelected, "#trials-table")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key in SORTS:
            self.descending = not self.descending if key == self.sort_key else key in ("actions", "tokens")
            self.sort_key = key
            self._trials()

    @on(DataTable.CellSelected, "#matrix-table")
    def _cell(self, event: DataTable.CellSelected) -> None:
        event.stop()
        if self.view is None:
            return
        scenario = str(event.cell_key.row_key.value)
        column = str(event.cell_key.column_key.value)
        self.set_filter(f"scenario:{scenario}" + (f" variant:{column}" if column != "scenario" else ""))
        self.action_tab("trials")

    @on(DataTable.RowSelected, "#trials-table")
    def _trial(self, event: DataTable.RowSelected) -> None:
        event.stop()
        from screens.eval_trial import TrialScreen

        self.app.push_screen(TrialScreen(int(event.row_key.value)))

    def action_compare(self) -> None:
        from screens.eval_compare import VariantPicker

        if self.view is None:
            return
        variants = [v.name for v in self.view.campaign.spec.variants]
        if len(variants) < 2:
            self.notify("This campaign has one variant: nothing to compare it with.", timeout=4)
            return

        def picked(pair: tuple[str, str] | None) -> None:
            if pair is not None:
                self.picked, self.picked_rows = pair, []
                self.action_tab("matrix")
                self._side()
                self._compare(*pair)

        self.app.push_screen(VariantPicker(variants), picked)

    def _compare(self, a: str, b: str) -> None:
        view = self.view

        async def work() -> None:
            import asyncio

            from eval.campaign_analysis import compare

            rows = await asyncio.to_thread(compare, view.campaign, view.trials, a, b)
            self.post_message(EvalComparisonLoaded(self.campaign_id, a, b, rows))

        self.run_worker(work, group="eval-compare", exclusive=True, exit_on_error=False)

    @on(EvalComparisonLoaded)
    def _compared(self, message: EvalComparisonLoaded) -> None:
        if message.campaign_id == self.campaign_id and (message.a, message.b) == self.picked:
            self.picked_rows = message.rows
            self._side()
