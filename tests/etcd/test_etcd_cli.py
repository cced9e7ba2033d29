"""`operator-tui lab up|status|down etcd`, `chaos` and `actions` on etcd as a user runs them: separate
processes, real members; and every user error is one line with exit code 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_support import free_block, leftovers, teardown_lab

from subjects.etcd.lab import EtcdLab

SCRIPT = Path(sys.executable).parent / "operator-tui"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "operator_tui"]

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("operator-tui: error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def labs(tmp_path) -> Iterator[Path]:
    labs = tmp_path / "labs"
    yield labs
    lab = EtcdLab(labs / "etcd")
    if lab.state_path.exists():  # whatever a failing test left running
        teardown_lab(lab)


def test_lab_up_status_chaos_actions_and_down_from_the_command_line(labs, tmp_path) -> None:
    block, client, peer = free_block()
    where = ["--lab-dir", str(labs)]
    db = ["--db", str(tmp_path / "cli.db"), "--subject", "etcd"]
    up = cli("lab", "up", "etcd", "--members", "3", "--address-block", block, "--client-port", str(client),
             "--peer-port", str(peer), "--load-rate", "10", *where)
    assert up.returncode == 0, up.stderr
    assert f"m1   http://{block}.1:{client}" in up.stdout and "load  10 ops/s" in up.stdout
    state = EtcdLab(labs / "etcd").state

    assert_user_error(cli("lab", "up", "etcd", *where), "already up")
    status = json.loads(cli("lab", "status", "etcd", "--json", *where).stdout)
    assert status["up"] and [m["health"] for m in status["members"]] == ["healthy"] * 3
    assert sorted(m["role"] for m in status["members"]) == ["follower", "follower", "leader"]
    leader = next(m["name"] for m in status["members"] if m["role"] == "leader")
    text = cli("lab", "status", "etcd", *where).stdout
    assert "MEMBER" in text and "leader" in text and "load:" in text

    injected = cli("chaos", "inject", "kill_member", "--target", "leader", *db, *where)
    assert injected.returncode == 0, injected.stderr
    assert f"kill_member on {leader}" in injected.stdout and "(target leader -> " in injected.stdout
    assert_user_error(cli("chaos", "inject", "kill_member", "--target", "m7", *db, *where), "unknown target 'm7'")
    reverted = cli("chaos", "revert", "--all", *db, *where)
    assert reverted.returncode == 0 and f"started {leader}" in reverted.stdout, reverted.stdout + reverted.stderr

    catalogue = json.loads(cli("actions", "catalogue", "--json", *db, *where).stdout)
    risks = {a["name"]: a["risk"] for a in catalogue}
    assert risks["move_leader"] == "low" and risks["compact"] == "high" and risks["replace_member"] == "destructive"
    status = json.loads(cli("lab", "status", "etcd", "--json", *where).stdout)
    leader = next(m["name"] for m in status["members"] if m["role"] == "leader")  # a new one since the kill
    dry = cli("actions", "run", "defragment", "--param", f"member={leader}", "--dry-run", *db, *where)
    assert f"{leader} is the leader: defragmenting blocks it" in dry.stdout, dry.stdout

    left = cli("chaos", "inject", "kill_member", *db, *where)  # a follower, never reverted: it ends with the lab
    assert left.returncode == 0, left.stderr
    down = cli("lab", "down", "etcd", "--db", str(tmp_path / "cli.db"), *where)
    assert down.returncode == 0, down.stderr
    assert "nothing left" in down.stdout and "3 tmpfs unmounted" in down.stdout
    assert re.search(r"fault 2 \(kill_member on m\d\) ended with the lab", down.stdout), down.stdout
    faults = json.loads(cli("chaos", "list", "--json", *db).stdout)
    assert [f["status"] for f in faults] == ["reverted", "ended"]
    assert leftovers(EtcdLab(labs / "etcd"), state) == []
    assert_user_error(cli("lab", "status", "etcd", *where), "no etcd lab is up")
    assert_user_error(cli("lab", "down", "etcd", *where), "no etcd lab is up")


@pytest.mark.parametrize(("args", "fragments"), [
    (["lab", "up", "etcd", "--address-block", "10.0.0"], ["--address-block must be three octets"]),
    (["lab", "up", "etcd", "--members", "0"], ["--members must be between 1 and 9"]),
    (["lab", "up", "etcd", "--tmpfs-mb", "64"], ["--tmpfs-mb must be 0 (no tmpfs) or at least 160"]),
    (["lab", "up", "etcd", "--client-port", "23800", "--peer-port", "23800"], ["must differ"]),
    (["lab", "up", "etcd", "--redis-port", "16379"], ["--redis-port is a ratelimiter lab option"]),
    (["run", "--headless", "--subject", "etcd", "--duration", "5"], ["no etcd to watch", "lab up etcd"]),
    (["chaos", "inject", "kill_member", "--subject", "etcd"], ["no etcd lab is up"]),
    (["chaos", "inject", "melt", "--subject", "etcd"], ["unknown fault 'melt' for etcd"]),
])
def test_user_errors_are_one_line_with_exit_code_2(labs, tmp_path, args, fragments) -> None:
    result = cli(*args, "--db", str(tmp_path / "e.db"), "--lab-dir", str(labs)) if args[0] != "lab" else \
        cli(*args, "--lab-dir", str(labs))
    assert_user_error(result, *fragments)
    assert not (labs / "etcd" / "state.json").exists()


def test_endpoints_come_from_flags_and_typed_environment(tmp_path) -> None:
    # Nothing listens there: the point is that the list arrives whole, typed, from either source.
    env = {**os.environ, "OPERATOR_TUI_ETCD__ENDPOINTS": '["http://127.0.0.1:9", "http://127.0.0.2:9"]'}
    result = subprocess.run([*CLI, "actions", "catalogue", "--subject", "etcd", "--json", "--db",
                             str(tmp_path / "x.db")], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "restart_member" not in result.stdout and "move_leader" in result.stdout  # no lab: no process control
    flags = cli("actions", "catalogue", "--subject", "etcd", "--endpoints", "http://127.0.0.1:9,http://127.0.0.2:9",
                "--json", "--db", str(tmp_path / "y.db"))
    assert flags.returncode == 0 and json.loads(flags.stdout)
