"""The console under the operator's own faults (issue 10, defects 6, 7, 10): ctrl+k follows the
store's kill switch, the approval queue holds only actions that approving can make happen, and
the palette says what observe mode means."""

from __future__ import annotations

from pathlib import Path

import pytest

from operator_tui.actions import decisions
from operator_tui.actions.states import ActionState
from operator_tui.app import make_app
from operator_tui.policy import load_policy
from operator_tui.store import Store
from screens.commands import MODES
from tests.console import samples
from tests.console.conftest import SIZE, until
from tests.console.test_console_live import live_app


async def test_ctrl_k_follows_the_store_not_a_stale_screen(tmp_path: Path) -> None:
    db = tmp_path / "console.db"
    store = await Store.open(db)
    # The poller reads the store once at start, then only when woken: the screen goes stale.
    app = make_app(samples.settings(db=db), live=False, open_store=True, clock=samples.frozen_clock,
                   cursor_blink=False, poll_interval=60.0)
    app.animation_level = "none"
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.state.policy is not None, what="first store poll")
            assert not app.state.policy.killswitch
            await decisions.engage_killswitch(store, "human:alice")  # from another process, meanwhile
            assert not app.state.policy.killswitch, "the screen has not seen it yet"
            await pilot.press("ctrl+k")
            await until(pilot, lambda: app.state.policy.killswitch, what="screen caught up with the store")
            policy = await load_policy(store)
            assert policy.killswitch and policy.killswitch_by == "human:alice", "a stale screen changed nothing"
            await pilot.press("ctrl+k")  # now the person sees it engaged: this press releases it
            await until(pilot, lambda: not app.state.policy.killswitch, what="released")
            assert not (await load_policy(store)).killswitch
            await pilot.press("q")
    finally:
        await store.close()
    changes = [e.data["to"] for e in await _audit(db) if e.kind == "setting.changed" and e.data["key"] == "killswitch"]
    assert [c["engaged"] for c in changes] == [True, False], changes
    assert changes[0]["by"] == "human:alice"


async def _audit(db: Path) -> list:
    store = await Store.open(db)
    try:
        return await store.list_audit(limit=100)
    finally:
        await store.close()


def test_the_palette_says_what_observe_means() -> None:
    """Observe stops the agent, not people: actions run by hand still run (tests/core checks both)."""
    text = MODES["observe"]
    assert "agent" in text and "by hand still run" in text


async def _awaiting(store: Store, run_id: int, cluster: str | None) -> int:
    a = await store.create_action(name="restart_node", params={"store_id": 2}, target="store:2", risk="high",
                                  idempotent=True, requested_by="agent", run_id=run_id, cluster=cluster)
    await store.transition_action(a.id, ActionState.validated, "system", "test")
    await store.transition_action(a.id, ActionState.awaiting_approval, "system", "test")
    return a.id


@pytest.mark.slow
async def test_the_console_offers_only_actions_of_live_runs_on_its_cluster(tmp_path: Path) -> None:
    app = live_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.cluster is not None and app.state.policy is not None, timeout=30,
                    what="the console's runtime")
        store = await Store.open(tmp_path / "console.db")
        try:
            live = await store.start_run("headless", "tikv", cluster=app.cluster)
            ended = await store.start_run("headless", "tikv", cluster=app.cluster)
            elsewhere = await store.start_run("headless", "tikv", cluster="pd-cluster:42")
            mine = await _awaiting(store, live, app.cluster)
            orphan = await _awaiting(store, ended, app.cluster)
            other = await _awaiting(store, elsewhere, "pd-cluster:42")
            await store.end_run(ended)
            await until(pilot, lambda: any(a.id == mine for a in app.state.awaiting), timeout=10,
                        what="the live run's action offered")
            await pilot.pause(0.5)
            assert {a.id for a in app.state.awaiting} == {mine}
            # The console's engine expires what waits for an ended run.
            for _ in range(100):
                if (await store.get_action(orphan)).state == "expired":
                    break
                await pilot.pause(0.05)
            assert (await store.get_action(orphan)).state == "expired"
            with pytest.raises(decisions.DecisionError, match="it is for cluster pd-cluster:42"):
                await decisions.approve(store, other, "human:sre", cluster=app.cluster)
            assert (await store.get_action(other)).state == "awaiting_approval"
        finally:
            await store.close()
        await pilot.press("escape")
        await pilot.press("q")
        await pilot.pause()
