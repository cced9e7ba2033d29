"""`kill -9` of the harness in the observe phase, then `operator-tui eval cleanup`: no process,
chain or simulator fault is left, and a second cleanup finds nothing to do."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_support import chains_named, free_port_base, free_slot, processes_with

from subjects.evaluation import proc_state, same_process

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "operator_tui", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def trial_row(db: Path) -> dict[str, object] | None:
    try:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM eval_trials ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else dict(row)


def test_kill_9_in_observe_then_cleanup_leaves_nothing(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    harness = subprocess.Popen(
        [sys.executable, "-m", "operator_tui", "eval", "run", "--subject", "tikv", "--chaos", "partition_status",
         "--budget", "120", "--pre-window", "1", "--slot", str(free_slot()), "--port-base", str(free_port_base()),
         "--db", str(db), "--artifacts", str(tmp_path / "art")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        row = None
        while time.monotonic() < deadline:
            row = trial_row(db)
            if row and row["phase"] == "observe":
                break
            assert harness.poll() is None, harness.stderr.read() if harness.stderr else ""
            time.sleep(0.2)
        assert row and row["phase"] == "observe"
        time.sleep(1.0)
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait(10)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(10)

    manifest = json.loads(str(row["lab_manifest_json"]))
    sim = manifest["processes"][0]
    operator = json.loads(str(row["metrics_json"]))["operator"]
    with sqlite3.connect(db) as conn:
        [(undo_text, status)] = conn.execute("SELECT undo_json, status FROM eval_faults").fetchall()
    undo = json.loads(undo_text)
    assert status == "effect_verified"
    assert same_process(sim["pid"], sim["start_time"]) and same_process(operator["pid"], operator["start_time"])
    assert chains_named(undo["chain"])  # the partition is still in place: the harness died holding it

    cleaned = cli("eval", "cleanup", "--db", str(db), "--json")
    assert cleaned.returncode == 0, cleaned.stderr + cleaned.stdout
    report = json.loads(cleaned.stdout)
    assert report["nothing_to_do"] is False and report["failures"] == []
    assert any("reverted and verified" in line for line in report["actions"])
    for ref in (sim, operator):
        alive = same_process(ref["pid"], ref["start_time"]) and proc_state(ref["pid"]) not in ("Z", "X", None)
        assert not alive, ref
    assert chains_named(undo["chain"]) == []
    assert processes_with(str(tmp_path / "art")) == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM eval_faults").fetchall() == [("revert_verified",)]
        assert conn.execute("SELECT lab_state, outcome FROM eval_trials").fetchall() == [("down", "invalid")]

    again = cli("eval", "cleanup", "--db", str(db))
    assert again.returncode == 0 and "nothing to do" in again.stdout
