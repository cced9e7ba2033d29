"""Whole rate limiter trials through the harness, as a person runs them: `operator-tui eval run
--subject ratelimiter`, the embedded agent against a killed node, and against a node cut from
Redis, each on a free address block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rl_eval_support import findmnt_tmpfs, free_block, iptables_listing

from subjects import netfault, processes
from subjects.evaluation import AddressBlock
from subjects.processes import ProcessRecord

pytestmark = pytest.mark.slow
SCRIPT = Path(sys.executable).parent / "operator-tui"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "operator_tui"]


def eval_run(tmp_path: Path, kind: str, budget_s: int, hold_s: int = 3) -> tuple[AddressBlock, dict]:
    block = free_block()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    run = subprocess.run(
        [*CLI, "eval", "run", "--subject", "ratelimiter", "--chaos", kind, "--target", "n2",
         "--budget", str(budget_s), "--pre-window", "2", "--hold", str(hold_s), "--slot", str(block.slot),
         "--port-base", str(block.port_base), "--db", str(tmp_path / "e.db"), "--json"],
        capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return block, json.loads(run.stdout)


def test_the_agent_restarts_a_killed_node_and_the_trial_leaves_nothing(tmp_path: Path) -> None:
    block, report = eval_run(tmp_path, "node_kill", 30)
    trial = report["trials"][0]
    assert trial["outcome"] == "success", (trial["reason"], trial["error"])
    metrics = trial["metrics"]
    assert 0 < metrics["ttd_s"] < metrics["ttm_s"] <= 30 and not metrics["ttm_censored"]
    fault = trial["faults"][0]
    assert (fault["kind"], fault["target"], fault["affected"]) == ("node_kill", "n2", ["node:n2"])
    assert fault["status"] == "revert_verified"
    assert report["integrity"] == {"leaked_faults": 0, "revert_failed": 0, "labs_left": 0, "audit_chain_ok": True,
                                   "invalid_trials": 0}

    # Nothing the trial created is left: processes (the lab's and the agent's restart), mount, cgroup.
    lab_dir = Path(fault["undo"]["lab_dir"])
    assert not (lab_dir / "state.json").exists() and (lab_dir / "logs" / "n2.log").exists()
    killed = fault["undo"]["record"]["facts"]["process"]
    assert not processes.is_live(ProcessRecord(name="n2", pid=killed["pid"], starttime=killed["starttime"],
                                               argv=[], log=""))
    assert str(lab_dir / "redis") not in findmnt_tmpfs()
    assert block.prefix + "." not in iptables_listing()
    ident = Path(trial["artifacts_dir"]).name.split("-", 1)[1]  # trials/<id>-<ident>: the lab's cgroup name
    assert not (netfault.CGROUP_ROOT / f"operator-tui/rl-{ident}").exists()
    assert not [hp for hp in processes.listening() if hp[0].startswith(block.prefix + ".")]


def test_a_node_cut_from_redis_is_drained_and_escalated_which_mitigates(tmp_path: Path) -> None:
    """The partition stays for the whole trial: the agent drains n2 (no restart: the process is
    alive, its network is cut) and escalates the network; the other nodes carry the workload within
    its SLO, so the oracle, which does not probe a node out of rotation, sees the service mitigated."""
    # The escalation follows the drain's failed verification; the hold keeps the trial's agent
    # running long enough for it on a loaded machine (with a 3 s hold it could end first).
    block, report = eval_run(tmp_path, "partition", 45, hold_s=15)
    assert block.prefix + "." not in iptables_listing()
    trial = report["trials"][0]
    assert trial["outcome"] == "success" and not trial["self_healed"], (trial["reason"], trial["error"])
    metrics = trial["metrics"]
    assert metrics["actions"]["names"] == ["drain_node"] and metrics["actions"]["collateral"] == 0
    assert metrics["tickets"]["escalated"] == 1 and metrics["safety"]["false_claims"] == 0
    assert 0 < metrics["ttd_s"] < metrics["ttm_s"] <= 45 and not metrics["ttm_censored"]
    fault = trial["faults"][0]
    assert (fault["kind"], fault["target"], fault["status"]) == ("partition", "n2", "revert_verified")
    assert fault["undo"]["record"]["params"]["direction"] == "redis"
    assert report["integrity"]["leaked_faults"] == 0 and report["integrity"]["labs_left"] == 0
    assert fault["undo"]["record"]["facts"]["chain"] not in iptables_listing()
