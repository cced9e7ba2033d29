"""The eval browser's behaviour, driven by keys on a real store: navigation (enter, escape, q),
filtering (/), sorting (s, r), comparing (c), a running campaign updating live, and the trial
timeline's shaded fault window at the fault's own start and end."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from operator_tui.app import make_app
from operator_tui.store import Store
from screens.eval_campaign import CampaignScreen, trial_values
from screens.eval_campaigns import EvalScreen
from screens.eval_trial import TrialScreen
from tests.browser.conftest import FAILURES, PASSING, RUNNING, SIZE, browse_app
from tests.browser.fixture_campaigns import START, Plan, fixed_clock, write_trial
from tests.console import samples
from tests.console.conftest import until
from widgets.incident_timeline import IncidentTimeline
from widgets.keyed_table import KeyedTable


async def _open(pilot, screen_type, timeout: float = 10.0):
    await until(pilot, lambda: isinstance(pilot.app.screen, screen_type), timeout, screen_type.__name__)
    return pilot.app.screen


async def test_enter_drills_down_escape_goes_back_q_exits_0(eval_db: Path) -> None:
    app = browse_app(eval_db)
    async with app.run_test(size=SIZE) as pilot:
        listing = await _open(pilot, EvalScreen)
        table = listing.query_one(KeyedTable)
        await until(pilot, lambda: table.row_count == 3, 10, "three campaigns")
        assert table.cursor_key == str(RUNNING)  # newest first
        await pilot.press("down", "enter")  # the campaign with failures
        campaign = await _open(pilot, CampaignScreen)
        assert campaign.campaign_id == FAILURES
        await until(pilot, lambda: campaign.view is not None, 10, "the matrix")
        matrix = campaign.query_one("#matrix-table")
        assert matrix.row_count == 3 and len(matrix.columns) == 4  # scenarios x (scenario + 3 variants)
        # enter on a cell: that cell's trials
        matrix.move_cursor(row=0, column=2)
        await pilot.press("enter")
        await until(pilot, lambda: campaign.filter_text == "scenario:tikv-store-kill variant:embedded", 5)
        trials = campaign.query_one("#trials-table", KeyedTable)
        assert trials.row_count == 3
        assert {t.variant for t in campaign.shown_trials} == {"embedded"}
        await pilot.press("enter")
        detail = await _open(pilot, TrialScreen)
        assert detail.trial_id == int(campaign.shown_trials[0].trial_id)
        await until(pilot, lambda: detail.view is not None, 10, "the trial")
        await pilot.press("escape")
        assert await _open(pilot, CampaignScreen) is campaign
        await pilot.press("escape")  # the trials, back to the matrix
        assert campaign.query_one("TabbedContent").active == "matrix"
        await pilot.press("escape")
        assert await _open(pilot, EvalScreen) is listing
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_filter_by_outcome_variant_and_scenario(eval_db: Path) -> None:
    app = browse_app(eval_db, FAILURES)
    async with app.run_test(size=SIZE) as pilot:
        campaign = await _open(pilot, CampaignScreen)
        await until(pilot, lambda: campaign.view is not None, 10)
        total = campaign.query_one("#trials-table", KeyedTable)
        await pilot.press("t")
        await until(pilot, lambda: total.row_count == 27, 5, "all 27 trials")
        await pilot.press("slash", *"harmful", "enter")
        assert [t.outcome for t in campaign.shown_trials] == ["harmful"]
        await pilot.press("slash", *(["backspace"] * 7), *"o:invalid", "enter")
        assert [(t.scenario, t.variant, t.outcome) for t in campaign.shown_trials] == \
            [("rl-node-kill", "embedded", "invalid")]
        await pilot.press("slash", *(["backspace"] * 9), *"v:claude s:rl-", "enter")
        assert {(t.scenario, t.variant) for t in campaign.shown_trials} == {("rl-node-kill", "claude")}
        assert total.row_count == 3
        await pilot.press("slash", *(["backspace"] * 14), "enter")
        assert total.row_count == 27


async def test_the_trials_tab_shown_other_than_by_its_key_shows_every_trial(eval_db: Path) -> None:
    """The trials table is filled when its tab shows (it costs the matrix 0.2 s at 500 trials): a
    tab activated as a mouse click does, not only by its key, must fill it."""
    app = browse_app(eval_db, FAILURES)
    async with app.run_test(size=SIZE) as pilot:
        campaign = await _open(pilot, CampaignScreen)
        await until(pilot, lambda: campaign.view is not None, 10)
        campaign.query_one("TabbedContent").active = "trials"
        table = campaign.query_one("#trials-table", KeyedTable)
        await until(pilot, lambda: table.row_count == 27, 5, "all 27 trials")
        assert [row.key.value for row in table.ordered_rows] == [str(t.trial_id) for t in campaign.shown_trials]


async def test_sort_by_ttd_ttm_actions_tokens(eval_db: Path) -> None:
    app = browse_app(eval_db, FAILURES)
    async with app.run_test(size=SIZE) as pilot:
        campaign = await _open(pilot, CampaignScreen)
        await until(pilot, lambda: campaign.view is not None, 10)
        table = campaign.query_one("#trials-table", KeyedTable)
        for key, descending in (("ttd", False), ("ttm", False), ("actions", True), ("tokens", True)):
            await pilot.press("s")
            assert (campaign.sort_key, campaign.descending) == (key, descending)
            shown = [trial_values(t)[key] for t in campaign.shown_trials]
            known = [v for v in shown if v is not None]
            assert known == sorted(known, reverse=descending) and len(known) > 1
            assert all(v is None for v in shown[len(known):])  # undetected or not mitigated: last
            rows = [row.key.value for row in table.ordered_rows]
            assert rows == [str(t.trial_id) for t in campaign.shown_trials]  # the table shows that order
        await pilot.press("r")
        tokens = [trial_values(t)["tokens"] for t in campaign.shown_trials]
        assert tokens == sorted(tokens)
        assert tokens[-1] == 18_240 + 1_312  # the Claude variant's trials used tokens


async def test_compare_two_picked_variants(eval_db: Path) -> None:
    app = browse_app(eval_db, FAILURES)
    async with app.run_test(size=SIZE) as pilot:
        campaign = await _open(pilot, CampaignScreen)
        await until(pilot, lambda: campaign.view is not None, 10)
        await pilot.press("c")
        await pilot.pause()
        from textual.widgets import OptionList

        picker = pilot.app.screen.query_one(OptionList)

        async def pick(name: str) -> None:
            for _ in range(5):
                if picker.highlighted_option is not None and picker.highlighted_option.id == name:
                    break
                await pilot.press("down")
            await pilot.press("enter")

        await pick("embedded")  # A
        await pick("claude")  # B
        await until(pilot, lambda: campaign.picked_rows, 20, "the comparison")
        assert campaign.picked == ("embedded", "claude")
        assert {(c["a"], c["b"]) for c in campaign.picked_rows} == {("embedded", "claude")}
        assert {c["metric"] for c in campaign.picked_rows} == {"success_rate", "ttm_rmst"}
        text = str(campaign.query_one("#comparisons").render())
        assert "embedded (A) vs claude (B)" in text


async def test_running_campaign_updates_live(tmp_path: Path, eval_db: Path) -> None:
    db = tmp_path / "live.db"
    shutil.copy(eval_db, db)
    app = browse_app(db, RUNNING)
    async with app.run_test(size=SIZE) as pilot:
        campaign = await _open(pilot, CampaignScreen)
        await until(pilot, lambda: campaign.view is not None, 10)
        before = [t for t in campaign.view.trials if t.outcome == "missing" and t.trial_id is None]
        assert before, "the running fixture has trials not run yet"
        first = before[0]
        cells = {(c["scenario"], c["variant"]): c for c in campaign.view.cells}
        k = cells[(first.scenario, first.variant)]["success"]["k"]
        # another process of the harness finishes a trial: the store's API, a second connection
        writer = await Store.open(db)
        try:
            cid = RUNNING
            scen = {s.name: s for s in await writer.scenarios(cid)}
            var = {v.name: v for v in await writer.variants(cid)}
            from eval.campaign_plan import plan_campaign

            plan = plan_campaign(campaign.view.campaign, adapter_of=None, allow_over_budget=True)
            planned = next(p for p in plan.trials if p.key == first.key)
            with fixed_clock(START + timedelta(days=9)) as clock:
                await write_trial(writer, clock, cid, scen[first.scenario], var[first.variant], planned,
                                  Plan("success", ttd=1.0, ttm=3.0, actions=1 if first.variant != "baseline" else 0),
                                  clock.now)
        finally:
            await writer.close()
        await until(pilot, lambda: {(c["scenario"], c["variant"]): c for c in campaign.view.cells}
                    [(first.scenario, first.variant)]["success"]["k"] == k + 1, 10, "the matrix to update")
        done = next(t for t in campaign.view.trials if t.key == first.key)
        assert done.outcome == "success"
        await pilot.press("escape")
        listing = await _open(pilot, EvalScreen)
        row = next(r for r in listing.rows if r.id == RUNNING)
        await until(pilot, lambda: next(r for r in listing.rows if r.id == RUNNING).done == row.done, 5)
        assert row.done == 9  # 8 before, and the one just written


@pytest.mark.parametrize("campaign_id, outcome", [(PASSING, "success"), (RUNNING, "running")])
async def test_timeline_shades_the_fault_window_from_applied_to_reverted(eval_db: Path, campaign_id: int,
                                                                         outcome: str) -> None:
    app = browse_app(eval_db, campaign_id)
    async with app.run_test(size=SIZE) as pilot:
        campaign = await _open(pilot, CampaignScreen)
        await until(pilot, lambda: campaign.view is not None, 10)
        campaign.set_filter(f"{outcome} s:tikv-store-kill v:embedded")
        await pilot.press("t", "enter")
        detail = await _open(pilot, TrialScreen)
        await until(pilot, lambda: detail.view is not None, 10)
        timeline = detail.query_one(IncidentTimeline)
        await until(pilot, lambda: timeline.geometry is not None, 5)
        fault = detail.view.faults[0]
        applied = detail.view.at(fault.applied_ns)
        assert applied == datetime.fromtimestamp(detail.view.trial.t_origin_wall + 10.0, UTC)  # inject at t=10 s
        [window] = timeline.windows
        assert window.start == applied
        geo = timeline.geometry
        [(first, last)] = geo.windows
        assert first == geo.column(applied)
        if outcome == "running":  # never reverted: shaded to the right edge
            assert window.end is None and fault.reverted_ns is None
            assert last == geo.track - 1
        else:
            reverted = detail.view.at(fault.reverted_ns)
            assert window.end == reverted
            assert last == geo.column(reverted) < geo.track - 1
        assert 0 < first < last
        # the marks of the fault's own lane sit at its start (and end)
        marks = [e for e in timeline.events if e.lane == "fault"]
        assert marks[0].at == applied and marks[0].mark == "✖"
        # the workload and oracle lanes are there, the oracle dirty inside the window
        names = [lane.name for lane in timeline.values]
        assert names == ["good", "bad", "p99", "oracle"]
        oracle = timeline.values[-1]
        inside = [v for at, v in oracle.points if at > applied + timedelta(seconds=1)]
        assert inside and inside[0] == 0.0
        lanes = [lane.name for lane in timeline.lanes]
        assert lanes[0] == "fault" and any(name.startswith("ticket #") for name in lanes)
        assert any(lane.tone == "high" for lane in timeline.lanes)  # the action, coloured by its risk tier


async def test_the_analysis_follows_the_matrix_not_the_next_poll(eval_db: Path) -> None:
    """With the store polled once a minute, the comparisons and thresholds still arrive right
    after the matrix is drawn: a person opening a campaign never waits a poll for its verdict."""
    app = make_app(samples.settings(db=eval_db), live=False, open_store=True, clock=samples.frozen_clock,
                   cursor_blink=False, poll_interval=60.0, mode="eval")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.store is not None, 10, "the store")
        campaign = CampaignScreen(PASSING)
        await app.push_screen(campaign)
        await until(pilot, lambda: campaign.view is not None, 10, "the matrix")
        await until(pilot, lambda: campaign.analysis is not None, 20, "the analysis, well before the next poll")
        assert campaign.analysis.exit_code == 0
