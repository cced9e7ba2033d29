"""`operator-tui lab up|status|down ratelimiter` as a user runs it: separate processes, real ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rl_support import (
    assert_dead,
    assert_ports_closed,
    free_block_lab,
    free_lab_ports,
    teardown_lab,
    wait_until,
)

from subjects import netfault, processes, tmpfs
from subjects.ratelimiter.lab import LabState, RateLimiterLab

SCRIPT = Path(sys.executable).parent / "operator-tui"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "operator_tui"]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=env)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("operator-tui: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def labs(tmp_path) -> Path:
    """What --lab-dir names: the folder where every lab keeps its own run folder."""
    return tmp_path / "labs"


@pytest.fixture
def lab_dir(labs) -> Iterator[Path]:
    """The rate limiter's run folder; whatever a failing test left running in it is torn down."""
    path = labs / "ratelimiter"
    yield path
    lab = RateLimiterLab(path)
    if lab.state_path.exists():
        teardown_lab(lab)


@pytest.fixture
def env(tmp_path) -> dict:
    # Keep the user's data directory out of it, whatever a command defaults to.
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}


def node_checks(url: str) -> int:
    return sum(httpx.get(f"{url}/api/stats", timeout=5.0).json()["checks"].values())


def test_up_status_down(lab_dir, labs, env):
    redis_port, base = free_lab_ports(2)
    common = ["--lab-dir", str(labs)]
    up = cli(
        "lab",
        "up",
        "ratelimiter",
        "--nodes",
        "2",
        "--redis-port",
        str(redis_port),
        "--base-port",
        str(base),
        *common,
        env=env,
    )
    assert up.returncode == 0, up.stderr
    assert f"http://127.0.0.1:{base + 1}" in up.stdout and f"http://127.0.0.1:{base + 2}" in up.stdout
    state = LabState.model_validate_json((lab_dir / "state.json").read_text())
    records = list(state.processes.values())
    assert set(state.processes) == {"redis", "proxy", "n1", "n2", "loadgen"}

    again = cli(
        "lab",
        "up",
        "ratelimiter",
        "--redis-port",
        str(redis_port),
        "--base-port",
        str(base),
        *common,
        env=env,
    )
    assert_user_error(again, "already up")

    text = cli("lab", "status", "ratelimiter", *common, env=env)
    assert text.returncode == 0, text.stderr
    assert "n1" in text.stdout and "alive" in text.stdout and "links: n1=pass, n2=pass" in text.stdout
    status = json.loads(cli("lab", "status", "ratelimiter", "--json", *common, env=env).stdout)
    assert status["up"] is True and status["redis_url"] == f"redis://127.0.0.1:{redis_port}/0"
    assert {p["name"]: p["state"] for p in status["processes"]} == dict.fromkeys(state.processes, "alive")
    assert [(n["id"], n["health"]) for n in status["nodes"]] == [("n1", "ok"), ("n2", "ok")]

    # The load generator spreads over the up nodes and stops sending to a draining one.
    urls = {n.id: n.url for n in state.nodes}
    wait_until(lambda: node_checks(urls["n1"]) > 0 and node_checks(urls["n2"]) > 0, what="load on both nodes")
    httpx.post(f"{urls['n1']}/admin/drain", timeout=5.0).raise_for_status()

    def n1_quiet() -> bool:  # the generator re-reads the registry every 2 s; in-flight calls finish
        first = node_checks(urls["n1"])
        time.sleep(1.5)
        return node_checks(urls["n1"]) == first

    wait_until(n1_quiet, 60.0, what="load to leave the draining n1")
    before = node_checks(urls["n1"]), node_checks(urls["n2"])
    wait_until(lambda: node_checks(urls["n2"]) > before[1] + 20, what="load to continue on n2")
    assert node_checks(urls["n1"]) == before[0]
    httpx.post(f"{urls['n1']}/admin/undrain", timeout=5.0).raise_for_status()
    wait_until(lambda: node_checks(urls["n1"]) > before[0], what="load back on n1")

    # a fault left in place ends with the lab (the store is the default one, under XDG_DATA_HOME)
    slow = cli("chaos", "inject", "redis_latency", "--target", "n1", "--subject", "ratelimiter", *common, env=env)
    assert slow.returncode == 0, slow.stderr
    down = cli("lab", "down", "ratelimiter", *common, env=env)
    assert down.returncode == 0, down.stderr
    assert "no process left" in down.stdout and "fault 1 (redis_latency on n1) ended with the lab" in down.stdout
    [fault] = json.loads(cli("chaos", "list", "--json", env=env).stdout)
    assert fault["status"] == "ended"
    assert cli("chaos", "list", "--active", env=env).stdout.strip() == "no active faults"
    outcomes = {line.split()[0]: line.split()[-1] for line in down.stdout.splitlines()[:5]}
    assert outcomes == dict.fromkeys(
        ["loadgen", "n1", "n2", "proxy", "redis"], "terminated"
    )  # all heed SIGTERM
    assert_dead(records)
    assert_ports_closed(list(state.ports().values()))
    assert not (lab_dir / "state.json").exists() and not (lab_dir / "redis").exists()
    assert (lab_dir / "logs" / "n1.log").exists()  # logs stay for the post-mortem

    assert_user_error(cli("lab", "down", "ratelimiter", *common, env=env), "no ratelimiter lab is up")
    assert_user_error(cli("lab", "status", "ratelimiter", *common, env=env), "no ratelimiter lab is up")


def test_port_taken_is_one_line_and_starts_nothing(lab_dir, labs, env):
    redis_port, base = free_lab_ports(1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 1))
        squatter.listen()
        result = cli(
            "lab", "up", "ratelimiter", "--nodes", "1", "--no-load", "--redis-port", str(redis_port),
            "--base-port", str(base), "--lab-dir", str(labs), env=env,
        )  # fmt: skip
    assert_user_error(result, f"{base + 1} (n1)", "already in use")
    assert not (lab_dir / "state.json").exists()
    assert not processes.is_listening("127.0.0.1", redis_port)  # redis-server was never started


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["lab", "up", "ratelimiter", "--nodes", "0"], "--nodes must be between 1 and 50"),
        (["lab", "up", "ratelimiter", "--base-port", "70000"], "--base-port must be between"),
        (["lab", "up", "ratelimiter", "--stores", "3"], "--stores is a tikv lab option"),
        (["lab", "up", "tikv", "--redis-port", "7000"], "--redis-port is a ratelimiter lab option"),
        (["lab", "down", "tikv"], "no TiKV lab is up"),
        (["lab", "up", "ratelimiter", "--addresses", "10.1.2.0/24"], "expected a loopback /24"),
        (["lab", "up", "ratelimiter", "--addresses", "127.0.0.0/24"], "taken by the default lab"),
        (["lab", "up", "ratelimiter", "--addresses", "127.12.0.0/16"], "expected a loopback /24"),
        (["lab", "up", "ratelimiter", "--redis-disk-mb", "0"], "--redis-disk-mb must be between 1 and 4096"),
    ],
)
def test_bad_lab_commands_are_one_line(lab_dir, labs, env, args, fragment):
    assert_user_error(cli(*args, "--lab-dir", str(labs), env=env), fragment)


def test_a_lab_on_an_address_block_with_redis_on_a_tmpfs(lab_dir, labs, env):
    """Every part on its own address, each process in its own cgroup, Redis's data on a small
    tmpfs with save points; `lab down` unmounts it and removes the cgroups, and says so."""
    block, base = free_block_lab(2)
    common = ["--lab-dir", str(labs)]
    up = cli("lab", "up", "ratelimiter", "--nodes", "2", "--no-load", "--addresses", f"{block}.0/24",
             "--redis-disk-mb", "8", "--redis-port", str(base), "--base-port", str(base), *common, env=env)
    assert up.returncode == 0, up.stderr
    assert f"on {block}.0/24" in up.stdout and "8 MiB tmpfs" in up.stdout
    state = LabState.model_validate_json((lab_dir / "state.json").read_text())
    assert state.redis_url == f"redis://{block}.1:{base}/0"
    assert [n.url for n in state.nodes] == [f"http://{block}.11:{base + 1}", f"http://{block}.12:{base + 2}"]
    assert [n.redis_url for n in state.nodes] == [f"redis://{block}.101:{base + 101}/0",
                                                   f"redis://{block}.102:{base + 102}/0"]
    records = list(state.processes.values())
    disk = lab_dir / "redis"
    assert tmpfs.is_mounted(disk) and tmpfs.usage(disk)["total_bytes"] == 8 * 1024 * 1024
    for rec in records:
        assert str(rec.pid) in (netfault.CGROUP_ROOT / rec.cgroup / "cgroup.procs").read_text().split(), rec.name
    client = RateLimiterLab(lab_dir).redis()
    try:
        assert client.config_get("save")["save"] == "1 1"
        addresses = {c["addr"].rsplit(":", 1)[0] for c in client.client_list()}
    finally:
        client.close()
    assert f"{block}.2" in addresses  # the proxy connects from its own address, not 127.0.0.1
    status = json.loads(cli("lab", "status", "ratelimiter", "--json", *common, env=env).stdout)
    assert status["addresses"] == f"{block}.0/24" and status["redis_disk"]["mounted"] is True
    assert [n["health"] for n in status["nodes"]] == ["ok", "ok"]

    down = cli("lab", "down", "ratelimiter", *common, env=env)
    assert down.returncode == 0, down.stderr
    assert f"unmounted {disk}" in down.stdout and f"removed cgroup {state.cgroup}" in down.stdout
    assert_dead(records)
    assert not tmpfs.is_mounted(disk) and not disk.exists()
    assert not (netfault.CGROUP_ROOT / state.cgroup).exists()
