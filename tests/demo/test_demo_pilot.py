"""The demo's behaviour in the console, on a real store (no subject: its lab chapter starts a demo
run and the tests write what the monitor and the agent would)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from operator_tui.store import Store
from screens.approval import ApprovalModal
from screens.demo import DemoScreen
from tests.console.conftest import SIZE, awaiting_action, open_ticket, until, until_async
from tests.demo.conftest import chapter, demo_app, script
from widgets.narration import NarrationPanel

WAIT_TICKET = {"event": "ticket_opened", "invariant": "store_unreachable", "timeout_s": 60,
               "on_timeout": "No ticket came."}


def panel(app) -> NarrationPanel:
    return app.screen.query_one(NarrationPanel)


async def test_keys_move_through_the_chapters_without_undoing_anything(db_path: Path, store: Store) -> None:
    app = demo_app(db_path, script(chapter("two"), chapter("three"), chapter("four")))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.director is not None and app.director.runs[0].phase == "done",
                    what="the lab chapter done")
        assert isinstance(app.screen, DemoScreen)
        await until(pilot, lambda: panel(app).view is not None and panel(app).view.title == "The lab", what="panel")
        assert panel(app).view.hint == "space/→ next · ← back · q quit"
        for key, index in (("space", 1), ("right", 2), ("enter", 3), ("left", 2), ("left", 1), ("left", 0),
                           ("left", 0), ("right", 1)):
            await pilot.press(key)
            await until(pilot, lambda index=index: app.director.index == index and panel(app).view.number == index + 1,
                        what=f"chapter {index + 1} after {key}")
        assert panel(app).view.title == "Two" and panel(app).view.segments == ("done", "current", "done", "done")
        await pilot.press("right", "right", "space")  # past the last chapter: it stays there
        await pilot.pause(0.3)
        assert app.director.index == 3 and panel(app).view.hint == "last chapter · ← back · q quit"
        run_id = app.state.run_id
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    runs = await store.list_runs()
    assert [(r.id, r.kind, r.status) for r in runs] == [(run_id, "demo", "completed")]  # the lab started once


async def test_a_waiting_chapter_says_what_it_waits_for_and_moves_on_when_it_happens(db_path: Path,
                                                                                     store: Store) -> None:
    app = demo_app(db_path, script(chapter("detect", wait=WAIT_TICKET, dwell_s=0.3), chapter("after")))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.director is not None and app.director.runs[0].phase == "done", what="lab")
        await pilot.press("space")
        await until(pilot, lambda: "Waiting for the monitor to open a ticket (store_unreachable)"
                    in panel(app).status_text, what="the wait shown")
        assert "space moves on without waiting" in panel(app).status_text
        # a key moves on without waiting; shown again, the chapter still waits
        await pilot.press("space")
        await until(pilot, lambda: app.director.index == 2, what="moved on")
        await pilot.press("left")
        await until(pilot, lambda: app.director.index == 1 and app.director.runs[1].phase == "waiting", what="back")
        run_id = app.state.run_id
        await open_ticket(store, run_id, entity="cluster", invariant="leader_imbalance")  # not the one it waits for
        await pilot.pause(0.6)
        assert app.director.runs[1].phase == "waiting"
        ticket_id = await open_ticket(store, run_id)
        await until(pilot, lambda: app.director.index == 2, timeout=5, what="moved on by itself")
        assert app.director.ticket_id == ticket_id
        await pilot.press("left")
        await until(pilot, lambda: f"  ticket #{ticket_id} store_unreachable on store:2" in panel(app).status_text,
                    what="what happened")
        assert panel(app).view.lines[-1][0].startswith("✔ ")
        await pilot.pause(0.8)
        assert app.director.index == 1  # shown again on purpose, it stays
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_autoplay_ends_the_demo_and_a_missed_chapter_fails_it(db_path: Path) -> None:
    never = {"event": "ticket_opened", "timeout_s": 0.5, "on_timeout": "Nothing **came**."}
    app = demo_app(db_path, script(chapter("never", wait=never, dwell_s=0), chapter("end", dwell_s=0)), autoplay=True)
    async with app.run_test(size=SIZE):
        for _ in range(200):
            if app.return_code is not None:
                break
            await asyncio.sleep(0.05)
    assert app.return_code == 1
    assert app.director.finished and app.director.missed == ["never"]
    assert app.director.runs[1].problem == "Nothing **came**."


async def test_the_approval_dialog_waits_for_the_remediation_chapter_and_y_approves(db_path: Path,
                                                                                  store: Store) -> None:
    fix = {"event": "action_executed", "timeout_s": 60, "on_timeout": "x"}
    app = demo_app(db_path, script(chapter("talk"), chapter("fix", wait=fix)), approval="all")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.director is not None and app.director.runs[0].phase == "done", what="lab")
        ticket_id = await open_ticket(store, app.state.run_id)
        action_id = await awaiting_action(store, ticket_id=ticket_id)
        await pilot.press("space")
        await until(pilot, lambda: app.state.awaiting and app.director.index == 1, what="awaiting, chapter 2")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ApprovalModal)  # still talking about the fault
        await pilot.press("space")
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), what="the dialog, in the remediation chapter")
        assert app.screen.action.id == action_id
        await pilot.press("y")

        async def approved() -> bool:
            return (await store.get_action(action_id)).state == "approved"

        await until_async(pilot, approved, what="approved in the store")
        await until(pilot, lambda: isinstance(app.screen, DemoScreen), what="back to the demo")
        await pilot.press("ctrl+c")  # a presenter's reflex: in a demo it quits, cleanly
        await pilot.pause()
    assert app.return_code == 0
    assert (await store.get_run(app.state.run_id)).status == "completed"
