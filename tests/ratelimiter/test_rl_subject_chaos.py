"""`operator-tui chaos inject|list|revert|kinds --subject ratelimiter` as a user runs it: separate
processes, a real lab, every fault injected, recorded in the store, reverted, nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rl_subject_support import assert_clean, make_loaded_lab, restore
from rl_support import teardown_lab

from subjects import evaluation, processes
from subjects.base import FaultRecord
from subjects.ratelimiter import chaos, fault_checks
from subjects.ratelimiter.lab import RateLimiterLab

pytestmark = pytest.mark.slow
SCRIPT = Path(sys.executable).parent / "operator-tui"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "operator_tui"]


@pytest.fixture(scope="module")
def labs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("labs")


@pytest.fixture(scope="module")
def lab(labs) -> Iterator[RateLimiterLab]:
    lab = make_loaded_lab(labs / "ratelimiter", load=False, redis_disk_mb=8)
    try:
        yield lab
    finally:
        if lab.state_path.exists():
            teardown_lab(lab)


@pytest.fixture(autouse=True)
def clean(request, lab) -> Iterator[None]:
    if lab.state_path.exists():
        assert_clean(lab)
    yield
    if lab.state_path.exists():
        restore(lab)
        assert_clean(lab)


@pytest.fixture
def cli(labs, tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    common = ["--subject", "ratelimiter", "--lab-dir", str(labs), "--db", str(tmp_path / "op.db")]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "chaos", *args, *common], capture_output=True, text=True, timeout=120, env=env)
    return run


def iptables_s() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout


def inject(cli, kind: str, *extra: str) -> dict:
    r = cli("inject", kind, *extra, "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["kind"] == kind and row["status"] == "active" and row["subject"] == "ratelimiter"
    return row


def revert(cli, fault_id: int) -> str:
    r = cli("revert", str(fault_id))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def listed(cli) -> dict[int, dict]:
    r = cli("list", "--json")
    assert r.returncode == 0, r.stderr
    return {row["id"]: row for row in json.loads(r.stdout)}


def test_kinds_lists_every_fault(cli) -> None:
    r = cli("kinds")
    assert r.returncode == 0, r.stderr
    kinds = {"node_kill", "node_pause", "redis_pause", "counter_drift", "fail_open", "redis_latency", "node_stop",
             "node_restart", "partition", "redis_disk_full"}
    for kind in kinds:
        assert kind in r.stdout
    assert set(chaos.kinds()) == kinds


@pytest.mark.parametrize(("kind", "extra", "target"), [
    ("node_kill", ["--target", "n2"], "n2"),
    ("node_pause", [], "n1"),
    ("redis_pause", ["--param", "duration_ms=60000"], "redis"),
    ("redis_pause", ["--param", "mode=sigstop"], "redis"),
    ("counter_drift", ["--target", "n3", "--param", "ttl_ms=90000"], "n3"),
    ("fail_open", ["--target", "n2", "--param", "link_mode=blackhole"], "n2"),
    ("redis_latency", ["--param", "delay_ms=150"], "*"),
    ("node_stop", ["--target", "n1"], "n1"),
    ("node_restart", ["--target", "n2"], "n2"),
    ("partition", ["--target", "n3"], "n3"),
    ("partition", ["--target", "n1", "--param", "direction=both"], "n1"),
    ("redis_disk_full", [], "redis"),
])
def test_inject_list_revert(cli, lab, kind, extra, target) -> None:
    row = inject(cli, kind, *extra)
    assert row["target"] == target
    record = FaultRecord.model_validate(row["record"])
    lab_record = record.undo["lab_record"]
    assert record.undo["lab_dir"] == str(lab.run_dir) and lab_record["undo"], record
    # The fault is real.
    if kind in ("node_kill", "node_stop"):
        assert lab.node_process(target)["state"] in (processes.STOPPED, processes.ZOMBIE)
    elif kind == "node_pause":
        assert lab.node_process(target)["state"] == processes.PAUSED
    elif kind == "redis_pause" and "mode=sigstop" in extra:
        assert processes.process_state(lab.process("redis")) == processes.PAUSED
    elif kind == "redis_pause":
        assert lab_record["done"] == ["CLIENT PAUSE 60000 WRITE"]
    elif kind == "counter_drift":
        assert httpx.get(f"{lab.node_urls()[target]}/admin/config", timeout=5).json()["cache_ttl_ms"] == 90_000
    elif kind == "fail_open":
        assert lab.links()[target]["mode"] == "blackhole"
        assert httpx.get(f"{lab.node_urls()[target]}/admin/config", timeout=5).json()["fail_mode"] == "open"
    elif kind in ("partition", "redis_disk_full", "node_restart"):
        # The CLI made up the chain's (or filler's) name and recorded it; the fault's own checks agree.
        facts = lab_record["facts"]
        if kind == "node_restart":  # a new process runs: the one the fault recorded after restarting it
            assert facts["after"]["pid"] != facts["process"]["pid"]
            assert lab.node_process(target)["pid"] == facts["after"]["pid"]
        else:
            assert (facts["chain"] in iptables_s()) if kind == "partition" else Path(facts["filler"]).exists()
        verdict = evaluation.wait(lambda: fault_checks.effect(lab, lab_record), 10.0)
        assert verdict.ok, verdict.detail
    else:
        assert {(link["mode"], link["delay_ms"]) for link in lab.links().values()} == {("delay", 150)}
    assert listed(cli)[row["id"]]["status"] == "active"
    out = revert(cli, row["id"])
    assert f"fault {row['id']}: reverted {kind}" in out
    verdict = evaluation.wait(lambda: fault_checks.reverted(lab, lab_record), 15.0)
    assert verdict.ok, verdict.detail
    if kind == "partition":
        assert lab_record["facts"]["chain"] not in iptables_s()
    after = listed(cli)[row["id"]]
    assert after["status"] == "reverted" and after["revert_detail"].startswith(f"reverted {kind}")
    assert_clean(lab)  # nothing left behind, checked here rather than only by the fixture
    again = cli("revert", str(row["id"]))
    assert again.returncode == 0 and "already reverted" in again.stdout


def test_revert_all(cli, lab) -> None:
    ids = [inject(cli, "counter_drift", "--target", "n1")["id"], inject(cli, "node_pause", "--target", "n3")["id"],
           inject(cli, "redis_latency", "--target", "n2", "--param", "delay_ms=50")["id"]]
    r = cli("revert", "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    for fid in ids:
        assert f"fault {fid}: reverted" in r.stdout
    assert all(row["status"] == "reverted" for row in listed(cli).values())
    assert_clean(lab)
    r = cli("revert", "--all")
    assert r.returncode == 0 and "no active faults" in r.stdout


def test_user_errors_are_one_line(cli) -> None:
    for args, fragment in ((["inject", "meteor"], "unknown fault 'meteor'"),
                           (["inject", "node_kill", "--target", "n9"], "unknown target 'n9'"),
                           (["inject", "counter_drift", "--param", "ttl_ms=1"], "bad parameter ttl_ms"),
                           (["inject", "redis_pause", "--target", "n1"], "targets redis"),
                           (["revert"], "a fault ID or --all")):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in r.stderr, (args, r.stderr)


def test_revert_after_lab_down_has_nothing_left(cli, lab, labs, tmp_path) -> None:
    """Last: takes the module's lab down. A fault outlives nothing once its lab is gone."""
    row = inject(cli, "node_pause", "--target", "n2")
    records = list(lab.state.processes.values())
    teardown_lab(lab)
    assert not [r for r in records if processes.is_live(r)]
    out = revert(cli, row["id"])
    assert "is down" in out and "nothing left to undo" in out
    r = cli("inject", "node_kill")
    assert r.returncode == 2 and "no ratelimiter lab is up" in r.stderr
