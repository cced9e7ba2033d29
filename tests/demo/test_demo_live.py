"""The demo for real: autoplay through every chapter on the embedded simulator, and demos that are
interrupted (ctrl+c in a terminal, SIGTERM) leaving no process, port or fault behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from operator_tui.app import make_app
from operator_tui.config import Settings
from operator_tui.demo.director import DemoOptions
from operator_tui.store import Store
from scenarios.demo import builtin, load_script
from subjects import processes
from subjects.ratelimiter.lab import LabState
from tests.console.conftest import SIZE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def port_closed(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host.split("//")[-1], int(port))) != 0


def sim_ports(pd_url: str) -> list[str]:
    """The simulator's PD address and every store's status address."""
    stores = httpx.get(f"{pd_url}/pd/api/v1/stores", timeout=5).json()["stores"]
    return [pd_url.split("//")[-1]] + [s["store"]["status_address"] for s in stores]


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def test_autoplay_plays_every_chapter_on_the_embedded_simulator(tmp_path: Path) -> None:
    db, shots = tmp_path / "demo.db", tmp_path / "shots"
    settings = Settings.model_validate({"db": db, "lab_dir": tmp_path / "labs" / "demo"})
    shots.mkdir()
    app = make_app(settings, cursor_blink=False,
                   demo=DemoOptions(load_script(builtin("tikv")), autoplay=True, speed=8, screenshots=shots))
    app.animation_level = "none"
    started = time.monotonic()
    async with app.run_test(size=SIZE):
        while app.return_code is None and time.monotonic() - started < 150:
            await asyncio.sleep(0.2)
    elapsed = time.monotonic() - started
    assert app.return_code == 0, f"missed: {app.director.missed}"
    assert elapsed < 120 and app.director.finished
    assert all(r.phase == "done" for r in app.director.runs)
    async with await Store.open(db) as store:
        [run] = await store.list_runs()
        assert (run.kind, run.status) == ("demo", "completed")
        [ticket] = [t for t in await store.list_tickets(run_id=run.id) if t.id == app.director.ticket_id]
        assert (ticket.invariant, ticket.entity, ticket.status) == ("store_unreachable", "store:2", "resolved")
        assert ticket.resolution["by"] == "agent" and ticket.resolution["verification"]["holds"]
        incident = await store.incident(ticket.id)
        assert {"fault", "ticket", "action", "verification"} <= {e.source for e in incident.events}
        [fault] = await store.list_faults()
        assert (fault.run_id, fault.status, fault.actor) == (run.id, "reverted", "demo")
        settings_now = await store.get_settings()
        assert (settings_now["mode"], settings_now["approval"]) == ("execute", "off")  # the defaults it found
    assert not (tmp_path / "labs" / "demo" / "tikv" / "state.json").exists()  # the advertisement is gone
    assert port_closed(run.config["embedded"])
    names = sorted(p.name for p in shots.iterdir())
    assert names == [f"{i:02d}-{c.id}.svg" for i, c in enumerate(load_script(builtin("tikv")).chapters, start=1)]
    last = (shots / names[-1]).read_text()
    assert "What" in last and "resolved" in last


class TerminalDemo:
    """`operator-tui demo ...` in its own tmux server (a real terminal), its exit status kept."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.db, self.lab_dir, self.rc = tmp / "demo.db", tmp / "labs", tmp / "rc"
        self.server = f"opdemo-{uuid.uuid4().hex[:8]}"
        # The shell may export the pane's size before tmux settles it; Textual would believe it over the terminal.
        command = " ".join(["env", "-u", "COLUMNS", "-u", "LINES", sys.executable, "-m", "operator_tui", "demo", *args,
                            "--db", str(self.db), "--lab-dir", str(self.lab_dir)])
        self.tmux("new-session", "-d", "-x", "160", "-y", "48", f"cd {ROOT} && {command}; echo $? > {self.rc}")
        shell = int(self.tmux("list-panes", "-F", "#{pane_pid}").strip())
        self.pid = wait_for(lambda: _child(shell), 10, "the demo process")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.server, *args], check=True, capture_output=True, text=True,
                              cwd=ROOT).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def exit_status(self, timeout: float) -> int:
        return int(wait_for(lambda: self.rc.exists() and self.rc.read_text().strip(), timeout, "the demo to exit"))

    def active_fault(self) -> Any:
        found = rows(self.db, "SELECT id, run_id FROM faults WHERE status = 'active'")
        return found[0] if found else None

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.tmux("kill-server")
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)  # only if a failed test left it running


def _child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[..., TerminalDemo]]:
    started: list[TerminalDemo] = []

    def start(*args: str) -> TerminalDemo:
        demo = TerminalDemo(tmp_path, *args)
        started.append(demo)
        return demo

    try:
        yield start
    finally:
        for demo in started:
            demo.close()


def test_ctrl_c_in_the_terminal_reverts_the_fault_and_stops_the_simulator(terminal) -> None:
    """With --approval all the remediation chapter shows the dialog; ctrl+c there ends it all."""
    demo = terminal("tikv", "--autoplay", "--speed", "4", "--approval", "all")
    fault_id, run_id = wait_for(demo.active_fault, 60, "the fault")
    [(config,)] = rows(demo.db, f"SELECT config FROM runs WHERE id = {run_id}")
    ports = sim_ports(json.loads(config)["embedded"])
    [(action_id,)] = wait_for(lambda: rows(demo.db, "SELECT id FROM actions WHERE state = 'awaiting_approval'"), 60,
                              "an action awaiting approval")
    screen = wait_for(lambda: "Approval needed" in demo.screen() and demo.screen(), 60, "the approval dialog")
    assert "restart_node" in screen and "Remediation" in screen, screen
    demo.tmux("send-keys", "C-c")
    assert demo.exit_status(30) == 0
    assert rows(demo.db, f"SELECT state FROM actions WHERE id = {action_id}") == [("cancelled",)]
    wait_for(lambda: not Path(f"/proc/{demo.pid}").exists(), 10, "the demo process gone")
    assert [p for p in ports if not port_closed(p)] == []
    assert rows(demo.db, f"SELECT status FROM faults WHERE id = {fault_id}") == [("reverted",)]
    assert rows(demo.db, f"SELECT kind, status FROM runs WHERE id = {run_id}") == [("demo", "completed")]


def test_sigterm_stops_the_rate_limiter_lab_and_reverts_the_drift(terminal) -> None:
    demo = terminal("ratelimiter", "--autoplay", "--speed", "4")
    fault_id, run_id = wait_for(demo.active_fault, 90, "the fault")
    state_path = demo.lab_dir / "demo" / "ratelimiter" / "state.json"
    lab = LabState.model_validate_json(state_path.read_text())
    assert set(lab.processes) == {"redis", "proxy", "n1", "n2", "n3", "loadgen"}  # the traffic chapter started load
    os.kill(demo.pid, signal.SIGTERM)
    assert demo.exit_status(60) == 0
    assert [name for name, rec in lab.processes.items() if processes.is_live(rec)] == []
    assert set(lab.ports().values()) & processes.listening_ports() == set()
    assert not state_path.exists()
    assert rows(demo.db, f"SELECT status FROM faults WHERE id = {fault_id}") == [("reverted",)]
    assert rows(demo.db, f"SELECT kind, status FROM runs WHERE id = {run_id}") == [("demo", "interrupted")]
