"""The lab's Python API: driving a lab through its state file, stopping what is stopped, failing clean."""

from __future__ import annotations

import signal

import pytest
from rl_support import (
    assert_dead,
    assert_ports_closed,
    free_lab_ports,
    healthy,
    make_lab,
    teardown_lab,
    wait_until,
)

from subjects import processes
from subjects.ratelimiter.lab import LabError, NodeOptions, RateLimiterLab, plan_ports


def test_a_second_handle_drives_the_lab_and_down_resumes_stopped_processes(tmp_path):
    lab = make_lab(tmp_path / "lab", nodes=2)
    records = list(lab.state.processes.values())
    try:
        other = RateLimiterLab.load(tmp_path / "lab")  # as a separate process would
        assert other.node_urls() == lab.node_urls() and other.redis_url() == lab.redis_url()
        old_pid = other.node_process("n2")["pid"]
        assert other.restart_node("n2") == "restarted"
        assert lab.node_process("n2")["pid"] != old_pid  # the first handle sees the new process
        wait_until(lambda: healthy(lab.node_urls()["n2"]), what="n2 restarted")
        assert other.pause_node("n1") == "paused"
        assert other.pause_redis() == "paused"
        status = lab.status()
        states = {p["name"]: p["state"] for p in status["processes"]}
        assert states["n1"] == "paused" and states["redis"] == "paused" and states["n2"] == "alive"
        assert {n["id"]: n["health"] for n in status["nodes"]}["n1"] == "paused"
        assert set(status) >= {
            "up",
            "run_dir",
            "redis_url",
            "proxy_url",
            "processes",
            "nodes",
            "links",
            "loadgen",
        }
        with pytest.raises(LabError, match="no node 'n7'"):
            other.kill_node("n7")
        with pytest.raises(LabError, match="no node 'n7'"):
            other.set_link("n7", "reset")
    finally:
        teardown_lab(lab)  # SIGCONT first, then SIGTERM: a stopped process would ignore it
    assert_dead(records)


def test_failed_start_stops_what_it_started(tmp_path):
    redis_port, base = free_lab_ports(2)
    lab = RateLimiterLab(tmp_path / "lab")
    bad = NodeOptions(heartbeat_ms=10)  # the node refuses it and exits at once
    with pytest.raises(LabError, match=r"node n1 exited: .*--heartbeat-ms"):
        lab.up(nodes=2, redis_port=redis_port, base_port=base, load=False, node_options=bad)
    assert not lab.state_path.exists()
    assert_ports_closed(list(plan_ports(2, redis_port, base).values()))
    with pytest.raises(LabError, match="no ratelimiter lab is up"):
        RateLimiterLab.load(tmp_path / "lab")


def test_up_refuses_taken_ports_and_a_running_lab(tmp_path):
    lab = make_lab(tmp_path / "one", nodes=1, options=NodeOptions(heartbeat_ms=200, node_ttl_ms=1000))
    try:
        state = lab.state
        with pytest.raises(LabError, match="already up"):
            lab.up(nodes=1, redis_port=state.redis_port, base_port=state.nodes[0].port - 1, load=False)
        with pytest.raises(LabError, match=rf"{state.redis_port} \(redis\)"):
            RateLimiterLab(tmp_path / "two").up(nodes=1, redis_port=state.redis_port, load=False)
        assert not (tmp_path / "two" / "state.json").exists()
    finally:
        teardown_lab(lab)


def test_down_after_everything_died_by_itself(tmp_path):
    lab = make_lab(tmp_path / "lab", nodes=1)
    state = lab.state
    for rec in state.processes.values():
        processes.send(rec, signal.SIGKILL)
        assert processes.wait_dead(rec, 10.0)
    report = lab.down()
    assert {s["outcome"] for s in report["stopped"]} == {"not running"}
    assert not lab.state_path.exists()
    assert_dead(list(state.processes.values()))
