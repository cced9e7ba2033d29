"""Snapshots of the eval browser's views, fed by the fixture campaigns through a real store.

Plain `def` tests (snap_compare runs the app). Each waits until the view has drawn what it read
(and, on a campaign, its analysis) before the screenshot. Update with `pytest --snapshot-update`.
"""

from __future__ import annotations

from typing import Any

from screens.eval_campaign import CampaignScreen
from screens.eval_campaigns import EvalScreen
from screens.eval_trial import TrialScreen
from tests.browser.conftest import FAILURES, PASSING, RUNNING, SIZE, browse_app, fixed_status
from tests.console.conftest import until
from widgets.eval_plots import EvalPlots


async def _campaign_ready(pilot: Any, campaign: int) -> CampaignScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, CampaignScreen), 10, "the campaign screen")
    screen = pilot.app.screen
    await until(pilot, lambda: screen.view is not None and screen.analysis is not None, 20, "the analysis")
    await until(pilot, lambda: pilot.app.state.phase == "running", 5, "the store")
    fixed_status(pilot.app)
    await pilot.pause()
    return screen


def test_campaign_list(snap_compare, eval_db) -> None:
    async def run_before(pilot) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, EvalScreen) and len(pilot.app.screen.judged) == 3,
                    20, "every campaign judged")
        await until(pilot, lambda: pilot.app.state.phase == "running", 5, "the store")
        fixed_status(pilot.app)
        await pilot.pause()

    assert snap_compare(browse_app(eval_db), terminal_size=SIZE, run_before=run_before)


def test_matrix_passing(snap_compare, eval_db) -> None:
    async def run_before(pilot) -> None:
        await _campaign_ready(pilot, PASSING)

    assert snap_compare(browse_app(eval_db, PASSING), terminal_size=SIZE, run_before=run_before)


def test_matrix_failures_harm_and_invalid(snap_compare, eval_db) -> None:
    async def run_before(pilot) -> None:
        await _campaign_ready(pilot, FAILURES)

    assert snap_compare(browse_app(eval_db, FAILURES), terminal_size=SIZE, run_before=run_before)


def test_matrix_running(snap_compare, eval_db) -> None:
    async def run_before(pilot) -> None:
        await _campaign_ready(pilot, RUNNING)

    assert snap_compare(browse_app(eval_db, RUNNING), terminal_size=SIZE, run_before=run_before)


def test_trials_filtered_by_outcome(snap_compare, eval_db) -> None:
    async def run_before(pilot) -> None:
        screen = await _campaign_ready(pilot, FAILURES)
        await pilot.press("slash", *"v:embedded", "enter")
        await until(pilot, lambda: screen.filter_text == "v:embedded", 5)
        await pilot.pause()

    assert snap_compare(browse_app(eval_db, FAILURES), terminal_size=SIZE, run_before=run_before)


def test_trial_detail_claude_timeout(snap_compare, eval_db) -> None:
    async def run_before(pilot) -> None:
        screen = await _campaign_ready(pilot, FAILURES)
        screen.set_filter("outcome:timeout variant:claude")
        await pilot.press("t", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, TrialScreen) and pilot.app.screen.view is not None,
                    10, "the trial")
        doc = pilot.app.screen.query_one("#trial-markdown")
        await until(pilot, lambda: doc.source.startswith("## Trial") and len(doc.children) > 3, 10, "the Markdown")
        fixed_status(pilot.app)
        await pilot.pause()

    assert snap_compare(browse_app(eval_db, FAILURES), terminal_size=SIZE, run_before=run_before)


def test_trial_detail_running_fault_not_reverted(snap_compare, eval_db) -> None:
    async def run_before(pilot) -> None:
        screen = await _campaign_ready(pilot, RUNNING)
        screen.set_filter("running")
        await pilot.press("t", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, TrialScreen) and pilot.app.screen.view is not None,
                    10, "the trial")
        doc = pilot.app.screen.query_one("#trial-markdown")
        await until(pilot, lambda: doc.source.startswith("## Trial") and len(doc.children) > 3, 10, "the Markdown")
        fixed_status(pilot.app)
        await pilot.pause()

    assert snap_compare(browse_app(eval_db, RUNNING), terminal_size=SIZE, run_before=run_before)


def test_plots(snap_compare, eval_db) -> None:
    async def run_before(pilot) -> None:
        screen = await _campaign_ready(pilot, FAILURES)
        await pilot.press("g")
        plots = screen.query_one(EvalPlots)
        await until(pilot, lambda: plots.plots is not None, 10, "plotext")
        await pilot.pause()

    assert snap_compare(browse_app(eval_db, FAILURES), terminal_size=SIZE, run_before=run_before)
