"""A whole etcd trial through the harness, as a person runs it: `operator-tui eval run --subject etcd`,
the embedded agent against a killed member, on a free slot block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from etcd_eval_support import free_block

from subjects import processes, tmpfs

pytestmark = pytest.mark.slow
SCRIPT = Path(sys.executable).parent / "operator-tui"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "operator_tui"]


def test_the_agent_restarts_a_killed_member_and_the_trial_leaves_nothing(tmp_path: Path) -> None:
    block = free_block()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    run = subprocess.run(
        [*CLI, "eval", "run", "--subject", "etcd", "--chaos", "kill_member", "--target", "m2", "--budget", "40",
         "--pre-window", "2", "--hold", "3", "--slot", str(block.slot), "--port-base", str(block.port_base),
         "--db", str(tmp_path / "e.db"), "--json"],
        capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    trial = report["trials"][0]
    assert trial["outcome"] == "success", (trial["reason"], trial["error"])
    metrics = trial["metrics"]
    assert 0 < metrics["ttd_s"] < metrics["ttm_s"] <= 40 and not metrics["ttm_censored"]
    assert metrics["availability"]["planned"] > 0  # the trial's workload ran and was read
    fault = trial["faults"][0]
    assert (fault["kind"], fault["target"], fault["status"]) == ("kill_member", "m2", "revert_verified")
    assert report["integrity"]["leaked_faults"] == 0 and report["integrity"]["labs_left"] == 0

    lab_dir = Path(fault["undo"]["lab_dir"])
    assert not (lab_dir / "state.json").exists()
    assert not any(tmpfs.is_mounted(p) for p in (lab_dir / "members").glob("m*"))
    assert not [hp for hp in processes.listening() if hp[0].startswith(block.prefix + ".")]
    workload = json.loads((lab_dir / "workload" / "process.json").read_text())
    assert not processes.is_live(processes.ProcessRecord(**workload))
    assert trial["lab_state"] == "down", trial["lab_state"]
