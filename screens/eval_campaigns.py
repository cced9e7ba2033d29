"""The Eval screen: every campaign in the store (name, started, status, verdict, trials done of
planned, one badge per threshold), kept current by a one-shot poll; `enter` opens one."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual.worker import Worker

from screens.base import ConsoleScreen
from screens.eval_poll import Poller
from screens.messages import EvalCampaignsLoaded, EvalThresholdsLoaded
from screens.state import ConsoleState
from widgets import format as fmt
from widgets.keyed_table import KeyedTable

COLUMNS = [("id", "#", 4), ("name", "campaign", 22), ("started", "started", 20), ("status", "status", 11),
           ("verdict", "verdict", 16), ("trials", "trials", 20), ("thresholds", "thresholds", 44)]
STATUS_STYLE = {"running": "bold yellow", "complete": "green", "incomplete": "bold yellow", "aborted": "bold red"}
VERDICT = {0: ("pass", "bold green"), 1: ("FAIL", "bold red"), 3: ("incomplete", "bold yellow"),
           4: ("INTEGRITY", "bold white on red")}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def verdict_text(exit_code: int | None, verdict: str | None) -> Text:
    if exit_code is None:
        return Text("…" if verdict is None else verdict, style="dim")
    word, style = VERDICT.get(exit_code, (verdict or "?", ""))
    return Text.assemble((word, style), (f" (exit {exit_code})", "dim"))


def badges(thresholds: list[dict[str, Any]] | None) -> Text:
    """One mark per threshold rule: ✔ passed, ✘ failed; '…' while being judged."""
    if thresholds is None:
        return Text("…", style="dim")
    if not thresholds:
        return Text("none", style="dim")
    out = Text()
    for r in thresholds:
        out.append(" ✔ " if r["passed"] else " ✘ ", style="bold white on dark_green" if r["passed"]
                   else "bold white on red")
        out.append(" ")
    failed = sum(1 for r in thresholds if not r["passed"])
    out.append(f"{len(thresholds) - failed}/{len(thresholds)} pass", style="bold red" if failed else "green")
    return out


def trials_text(row: Any) -> Text:
    text = Text(f"{row.done}/{row.total}")
    if row.running:
        text.append(f"  ▶ {len(row.running)} running", style="bold yellow")
    return text


class EvalScreen(ConsoleScreen):
    MODE = "eval"

    BINDINGS = [Binding("enter", "open_selected", "Open campaign", priority=False)]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Any] = []
        self.judged: dict[int, tuple[tuple[Any, ...], list[dict[str, Any]]]] = {}  # id -> (version, rules)
        self.poller = Poller(self, self._read, lambda: self.app.poll_interval, "eval-campaigns")
        self.opened_initial = False

    def compose_body(self) -> ComposeResult:
        with Vertical(id="eval-body"):
            yield Static("", id="eval-hint")
            yield KeyedTable(COLUMNS, id="eval-campaigns")

    def on_mount(self) -> None:
        self.query_one("#eval-campaigns", KeyedTable).border_title = "Campaigns"
        self.query_one("#eval-hint", Static).update("[dim]reading the store…[/]")
        self.query_one(KeyedTable).focus()
        self.poller.start()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.poller.poll_now()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.poller.finished(event)

    async def _read(self) -> None:
        from eval.browse import campaign_rows

        store = self.host.store
        if store is None:
            return
        try:
            rows = await campaign_rows(store)
        except Exception as e:  # a store of another version, a locked file: say so, keep polling
            self.post_message(EvalCampaignsLoaded([], f"{type(e).__name__}: {e}"))
            return
        self.post_message(EvalCampaignsLoaded(rows))
        # Then the thresholds of every campaign whose trials moved since they were judged (the
        # analysis is the report's, bootstrap included: in a thread, one campaign at a time).
        for row in rows:
            judged = self.judged.get(row.id)
            if judged is not None and judged[0] == row.version:
                continue
            if judged is not None and row.status == "running" and row.running and self.poller.runs % 10:
                continue  # a running campaign is judged again every tenth poll, not on every trial phase
            try:
                from eval.browse import campaign_analysis, campaign_view

                analysis = await campaign_analysis(await campaign_view(store, row.id))
            except Exception as e:  # a campaign whose spec no longer loads: no badges, the reason in the log
                self.log.warning(f"campaign {row.id}: cannot judge its thresholds: {e}")
                self.post_message(EvalThresholdsLoaded(row.id, row.version, [], -1))
                continue
            self.post_message(EvalThresholdsLoaded(row.id, row.version, analysis.thresholds, analysis.exit_code))

    @on(EvalCampaignsLoaded)
    def _loaded(self, message: EvalCampaignsLoaded) -> None:
        self.rows = message.rows
        self._draw()
        hint = self.query_one("#eval-hint", Static)
        if message.error:
            hint.update(f"[b $error]cannot read the campaigns: {message.error}[/]")
        elif not self.rows:
            hint.update("No campaign in this store yet. Run one: [b]operator-tui --eval scenarios/campaigns/ci.yaml"
                        "[/] (with the same --db), and it shows here as it runs.")
        else:
            running = sum(1 for r in self.rows if r.status == "running")
            hint.update(f"{len(self.rows)} campaign{'s' if len(self.rows) != 1 else ''}"
                        + (f", [b $warning]{running} running[/]" if running else "")
                        + "   [dim]enter: open · the list follows the store[/]")
        initial = getattr(self.app, "browse_campaign", None)
        if initial is not None and not self.opened_initial:
            self.opened_initial = True
            self.open_campaign(int(initial))

    @on(EvalThresholdsLoaded)
    def _judged(self, message: EvalThresholdsLoaded) -> None:
        self.judged[message.campaign_id] = (message.version, message.thresholds)
        self._draw()

    def _draw(self) -> None:
        table = self.query_one(KeyedTable)
        table.sync([(str(r.id), (r.id, fmt.clip(r.name, 22), r.started.replace("T", " ")[:19],
                                 status_text(r.status), verdict_text(r.exit_code, r.verdict), trials_text(r),
                                 badges(self.judged.get(r.id, (None, None))[1])))
                    for r in self.rows])

    def render_body(self, state: ConsoleState, what: str) -> None:
        pass  # the campaigns come from this screen's own poll, not from the console's state

    def open_campaign(self, campaign_id: int) -> None:
        from screens.eval_campaign import CampaignScreen

        self.app.push_screen(CampaignScreen(campaign_id))

    def action_open_selected(self) -> None:
        key = self.query_one(KeyedTable).cursor_key
        if key is not None:
            self.open_campaign(int(key))

    @on(DataTable.RowSelected, "#eval-campaigns")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.open_campaign(int(event.row_key.value))
