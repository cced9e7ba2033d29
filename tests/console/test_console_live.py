"""The real console: its own runtime, monitor, agent and engine as workers, on the embedded
simulator (or on a PD that does not answer)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from operator_tui.app import OperatorApp, load_chaos_kinds, make_app
from operator_tui.config import Settings
from operator_tui.monitor import Monitor
from operator_tui.store import Store
from screens.approval import ApprovalModal
from screens.commands import console_commands
from subjects.tikv.lab import state_file
from tests.console import samples
from tests.console.conftest import SIZE, until
from widgets.node_grid import NodeTile
from widgets.status import Banner


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_app(tmp_path: Path, **extra: object) -> OperatorApp:
    settings = Settings.model_validate({
        "db": tmp_path / "console.db", "lab_dir": tmp_path / "labs", "approval": "all", "interval": 0.5,
        "agent_options": {"verify_delay_s": 0.5}, **extra})
    app = make_app(settings, clock=samples.frozen_clock, cursor_blink=False, poll_interval=0.1, restart_delay=0.2)
    app.animation_level = "none"
    return app


def _tile(app: OperatorApp, key: str) -> NodeTile | None:
    return next((t for t in app.screen.query(NodeTile) if t.view.key == key), None)


@pytest.mark.slow
async def test_end_to_end_fault_approval_resolution(tmp_path: Path) -> None:
    """Kill a store through the palette's chaos command, approve the agent's restart in the modal,
    see the ticket resolve; quit; the store is closed and the lab file is gone."""
    app = live_app(tmp_path)
    lab_file = state_file(tmp_path / "labs" / "tikv")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len([t for t in app.screen.query(NodeTile) if t.view.key.startswith("store:")]) == 5,
                    timeout=20, what="5 store tiles")
        advertised = json.loads(lab_file.read_text())
        assert advertised["pid"] == os.getpid() and advertised["pd_url"] == app.state.endpoint
        assert advertised["embedded"] is True and advertised["admin_url"] != app.state.endpoint
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Chaos: kill_store on store 2")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: app.state.faults, timeout=10, what="fault recorded")
        await until(pilot, lambda: isinstance(app.screen, ApprovalModal), timeout=30, what="approval modal")
        modal = app.screen
        assert modal.action.name == "restart_node" and modal.action.params == {"store_id": 2}
        await until(pilot, lambda: modal.context is not None, timeout=10, what="dry run and diagnosis")
        assert modal.context.diagnosis and modal.context.dry_run is not None
        ticket_id = modal.action.ticket_id
        await pilot.press("y")
        await until(pilot, lambda: not isinstance(app.screen, ApprovalModal), what="modal closed")
        await until(pilot, lambda: any(t.id == ticket_id and t.status == "resolved" for t in app.state.tickets),
                    timeout=60, what="ticket resolved")
        await until(pilot, lambda: (_tile(app, "store:2") is not None and _tile(app, "store:2").has_class("-up")
                                    and not _tile(app, "store:2").has_class("-ticket")), timeout=20,
                    what="store 2 tile healthy")
        app.action_revert_all_faults()
        await until(pilot, lambda: not app.state.faults, timeout=10, what="fault reverted")
        store = app.store
        await pilot.press("q")
        await pilot.pause()
    assert store.db.closed and app.return_code == 0
    assert not lab_file.exists()
    async with await Store.open(tmp_path / "console.db") as db:
        action = (await db.list_actions(ticket_id=ticket_id))[-1]
        assert action.state == "succeeded" and action.decided_by.startswith("human:")
        assert (await db.get_run(app.state.run_id)).status == "completed"
        assert (await db.verify_audit())[0]


async def test_unreachable_pd_shows_a_banner_and_keeps_ticking(tmp_path: Path) -> None:
    app = live_app(tmp_path, tikv={"pd": f"http://127.0.0.1:{_closed_port()}"}, agent="none")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.tick >= 3, timeout=15, what="three ticks")
        banner = app.screen.query_one("#unreachable-banner", Banner)
        assert banner.has_class("-shown") and "UNREACHABLE" in banner.text
        assert app.restarts == {}  # --agent none: no agent worker, and nothing crashed
        assert not state_file(tmp_path / "labs" / "tikv").exists()  # a real PD: nothing to advertise
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_a_crashed_worker_is_shown_and_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = Monitor.tick

    async def flaky_tick(self: Monitor):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the store went away")
        return await original(self)

    monkeypatch.setattr(Monitor, "tick", flaky_tick)
    app = live_app(tmp_path, tikv={"pd": f"http://127.0.0.1:{_closed_port()}"})
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "monitor" in app.state.trouble, timeout=15, what="crash shown")
        assert "RuntimeError: the store went away" in app.state.trouble["monitor"]
        assert "restarting" in app.screen.query_one("#status").view.trouble
        await until(pilot, lambda: app.restarts.get("monitor") == 1 and "monitor" not in app.state.trouble,
                    timeout=10, what="restarted")
        ticks = app.state.tick
        await until(pilot, lambda: app.state.tick > ticks, timeout=10, what="ticking again")
        assert any("crashed" in line.title for line in app.state.feed)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_a_bad_store_exits_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_text("this is not sqlite" * 100)
    app = live_app(tmp_path, db=bad)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(1.0)
    assert app.return_code == 2


def test_chaos_commands_follow_the_cluster() -> None:
    from screens.state import ConsoleState

    kinds = load_chaos_kinds("tikv")
    assert {k.name for k in kinds} >= {"kill_store", "slow_store", "pd_down"}
    state = ConsoleState(subject="tikv", endpoint=samples.PD_URL)
    state.observation = samples.healthy_observation(stores=3)
    state.faults = [samples.fault()]
    titles = {c.title: c.action for c in console_commands(state, kinds)}
    assert titles["Chaos: kill_store on store 3"] == "chaos('kill_store', '3')"
    assert "Chaos: kill_store on store 4" not in titles
    assert titles["Chaos: pd_down"] == "chaos('pd_down', '')"
    assert titles["Chaos: revert fault #1 (kill_store on 2)"] == "revert_fault(1)"
    assert titles["Kill switch: engage"] == "killswitch"
