"""The CLI keeps its promises (issue 10, defects 8 and 12): `actions run --delay S` runs S seconds
from now; `--json` piped into a reader that stops early ends quietly, in every command; `audit
verify` with the audit key detects a chain rebuilt by someone without it."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from operator_tui.store import Store, TickWrite
from operator_tui.store.audit import GENESIS, event_hash
from subjects.base import Severity, Violation
from subjects.tikv.sim import SimThread

CLI = [sys.executable, "-m", "operator_tui"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
async def test_delay_runs_the_action_that_many_seconds_from_now(sim: SimThread, tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "actions", "run", "wait", "--param", "seconds=0.01", "--delay", "3", "--pd", sim.pd_url,
        "--db", str(db), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert "runs at" in out.decode() and "succeeded" in out.decode()
    store = await Store.open(db)
    try:
        [action] = await store.list_actions()
        transitions = await store.action_transitions(action.id)
    finally:
        await store.close()
    started = next(t.at for t in transitions if t.to_state == "executing")
    assert (started - action.created_at).total_seconds() >= 2.9, "it must not run before S seconds have passed"
    assert "scheduled" in [t.to_state for t in transitions]


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose lists are far larger than a pipe's buffer (64 KiB), even as tables."""
    db = tmp_path_factory.mktemp("big") / "big.db"

    async def fill() -> None:
        store = await Store.open(db)
        try:
            run_id = await store.start_run("test", "tikv")
            opened = [Violation(invariant="store_unreachable", entity=f"store:{i}", severity=Severity.critical,
                                summary=f"store {i} does not answer " + "x" * 200, evidence={"i": i})
                      for i in range(2000)]
            await store.apply_tick(TickWrite(run_id=run_id, open=opened))
            for i in range(800):
                await store.create_action(name="wait", params={"seconds": i + 1}, target="", risk="low",
                                          idempotent=True, requested_by="human:t", run_id=run_id, reason="y" * 200)
            await store.end_run(run_id)
        finally:
            await store.close()

    asyncio.run(fill())
    return db


@pytest.mark.parametrize("command", [["tickets", "list", "--json", "--limit", "2000"],
                                     ["actions", "list", "--json", "--limit", "800"],
                                     ["audit", "list", "--json", "--limit", "800"],
                                     ["tickets", "list", "--limit", "2000"], ["audit", "list", "--limit", "800"]])
def test_output_into_a_reader_that_stops_early_ends_quietly(big_store: Path, command: list[str]) -> None:
    """`operator-tui ... --json | head -c 100`: no BrokenPipeError traceback, the exit status of a
    command killed by SIGPIPE."""
    proc = subprocess.Popen([*CLI, *command, "--db", str(big_store)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert head and "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
    assert code == 141


def test_approving_an_action_whose_run_ended_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "o.db"

    async def orphan() -> int:
        from operator_tui.actions.states import ActionState

        store = await Store.open(db)
        try:
            run_id = await store.start_run("headless", "tikv")
            a = await store.create_action(name="drain_store", params={"store_id": 2}, target="store:2", risk="high",
                                          idempotent=True, requested_by="agent", run_id=run_id)
            await store.transition_action(a.id, ActionState.validated, "system", "t")
            await store.transition_action(a.id, ActionState.awaiting_approval, "system", "t")
            return a.id
        finally:
            await store.close()  # its process "dies": the run is not ended, its lock is gone

    action_id = asyncio.run(orphan())
    result = cli("actions", "approve", str(action_id), "--db", str(db))
    assert result.returncode == 2 and "would never run" in result.stderr and "runs it now" not in result.stdout
    shown = cli("actions", "show", str(action_id), "--db", str(db))
    assert "-> expired" in shown.stdout


@pytest.mark.slow
def test_audit_key_detects_a_rebuilt_chain(tmp_path: Path) -> None:
    db, keys = tmp_path / "store" / "o.db", tmp_path / "secrets"
    keys.mkdir()
    key = keys / "audit.key"
    key.write_text("k" * 40)
    for command in (["killswitch", "on"], ["killswitch", "off"], ["mode", "propose"], ["approval", "all"]):
        result = cli(*command, "--db", str(db), "--audit-key-file", str(key))
        assert result.returncode == 0, result.stderr
    ok = cli("audit", "verify", "--db", str(db), "--audit-key-file", str(key))
    assert ok.returncode == 0 and "intact" in ok.stdout and "HMAC" in ok.stdout, ok.stdout

    # Someone who can write the file, but has not the key, rewrites the first event and rebuilds the
    # whole chain (every hash and the head) so that the plain hash check passes.
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, at, run_id, actor, kind, ref, data FROM audit_events ORDER BY id").fetchall()
        prev = GENESIS
        for i, (event_id, at, run_id, actor, kind, ref, data) in enumerate(rows):
            if i == 0:
                actor = "human:nobody"
            digest = event_hash(event_id, at, run_id, actor, kind, ref, data, prev)
            conn.execute("UPDATE audit_events SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?",
                         (actor, prev, digest, event_id))
            prev = digest
        conn.execute("UPDATE audit_head SET last_hash = ?", (prev,))
    plain = cli("audit", "verify", "--db", str(db))
    assert plain.returncode == 0, "without the key a rebuilt chain looks intact: that is why the key exists"
    keyed = cli("audit", "verify", "--db", str(db), "--audit-key-file", str(key))
    assert keyed.returncode == 1 and "event 1's MAC does not match" in keyed.stdout, keyed.stdout
    with sqlite3.connect(db) as conn:  # ... and stripping every MAC does not help either
        conn.execute("UPDATE audit_events SET mac = NULL")
        conn.execute("UPDATE audit_head SET mac = NULL")
    stripped = cli("audit", "verify", "--db", str(db), "--audit-key-file", str(key), "--json")
    assert stripped.returncode == 1 and "no event carries a MAC" in stripped.stdout


def test_audit_key_must_live_outside_the_store_and_be_long_enough(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    beside = tmp_path / "audit.key"
    beside.write_text("k" * 40)
    result = cli("audit", "list", "--db", str(db), "--audit-key-file", str(beside))
    assert result.returncode == 2 and "in the store's folder" in result.stderr
    short = tmp_path / "elsewhere"
    short.mkdir()
    (short / "k").write_text("short")
    result = cli("killswitch", "status", "--db", str(db), "--audit-key-file", str(short / "k"))
    assert result.returncode == 2 and "at least 16" in result.stderr and "Traceback" not in result.stderr
