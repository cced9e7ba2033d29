"""Every fault kind injects a real fault and reverts it, leaving nothing behind."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from rl_support import healthy, make_lab, teardown_lab, unique_key, wait_until

from subjects import evaluation, processes
from subjects.ratelimiter import fault_checks, faults
from subjects.ratelimiter.faults import FaultError
from subjects.ratelimiter.lab import RateLimiterLab


def check(url: str, key: str) -> httpx.Response:
    return httpx.post(f"{url}/check", json={"key": key, "limit": 1000, "window_ms": 1000}, timeout=10.0)


def assert_clean(lab: RateLimiterLab) -> None:
    """The lab as a fresh one: every process running, links pass, nodes at their start config."""
    for name, rec in lab.state.processes.items():
        assert processes.process_state(rec) == processes.RUNNING, name
    for name, link in lab.links().items():
        assert (link["mode"], link["delay_ms"]) == ("pass", 0), name
    for node_id, url in lab.node_urls().items():
        wait_until(lambda url=url: healthy(url), what=f"{node_id} healthy")
        config = httpx.get(f"{url}/admin/config", timeout=5.0).json()
        assert (config["fail_mode"], config["cache_ttl_ms"], config["draining"]) == ("closed", 0, False), (
            node_id
        )
    r = lab.redis()
    try:
        r.set("faults:probe", "1")  # a write goes through: Redis is not paused
    finally:
        r.close()


@pytest.fixture(autouse=True)
def clean_before_and_after(lab):
    assert_clean(lab)
    yield
    assert_clean(lab)


def roundtrip(record: dict) -> dict:
    """Records are JSON: what a separate process (the chaos CLI) would store and read back."""
    return json.loads(json.dumps(record))


def test_node_kill_and_revert(lab):
    record = roundtrip(faults.inject(lab, "node_kill"))
    assert (record["kind"], record["target"], record["target_chosen"]) == (
        "node_kill",
        "n1",
        "default: first running node",
    )
    assert record["undo"] == [{"op": "start_node", "node": "n1"}]
    assert lab.node_process("n1")["state"] in (processes.STOPPED, processes.ZOMBIE)
    report = faults.revert(lab, record)
    assert report["ok"] and report["undone"] == ["started n1"]
    wait_until(lambda: healthy(lab.node_urls()["n1"]), what="n1 back")
    again = faults.revert(lab, record)
    assert again["ok"] and again["undone"] == [] and again["nothing_to_do"]


def test_node_pause_and_revert(lab):
    record = roundtrip(faults.inject(lab, "node_pause", "n2"))
    assert record["target_chosen"] == "given"
    assert lab.node_process("n2")["state"] == processes.PAUSED
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{lab.node_urls()['n2']}/health", timeout=0.5)
    with pytest.raises(FaultError, match="not running"):
        faults.inject(lab, "node_pause", "n2")  # already paused
    report = faults.revert(lab, record)
    assert report["ok"] and report["undone"][0].startswith("SIGCONT n2")
    assert lab.node_process("n2")["state"] == processes.RUNNING
    assert faults.revert(lab, record)["nothing_to_do"]


def test_node_stop_restart_and_partition_in_the_process_lab(lab):
    before = lab.node_process("n3")
    record = roundtrip(faults.inject(lab, "node_stop", "n3"))
    assert lab.node_process("n3")["state"] in (processes.STOPPED, processes.ZOMBIE)
    assert faults.revert(lab, record)["undone"] == ["started n3"]
    record = roundtrip(faults.inject(lab, "node_restart", "n3"))
    assert lab.node_process("n3")["pid"] != before["pid"] and healthy(lab.node_urls()["n3"])
    assert faults.revert(lab, record)["nothing_to_do"] == ["n3 was already running"]
    record = roundtrip(faults.inject(lab, "partition", "n3", {"direction": "clients"}))
    [step] = record["undo"]
    with pytest.raises(httpx.ConnectTimeout):
        httpx.get(f"{lab.node_urls()['n3']}/health", timeout=0.5)
    assert healthy(lab.node_urls()["n2"])
    assert evaluation.wait(lambda: fault_checks.effect(lab, record), 5.0).ok
    report = faults.revert(lab, record)
    assert report["ok"] and report["undone"] == [f"deleted iptables chain {step['chain']} and its jump (checked gone)"]
    assert healthy(lab.node_urls()["n3"])
    with pytest.raises(FaultError, match=r"--redis-disk-mb MB .* or --docker"):
        faults.inject(lab, "redis_disk_full")  # this lab's Redis has no disk of its own


def test_redis_client_pause_and_revert(lab):
    url = lab.node_urls()["n1"]
    record = roundtrip(faults.inject(lab, "redis_pause", params={"duration_ms": 60_000}))
    assert record["target"] == "redis" and record["expires_at"]
    r = check(url, unique_key("paused"))
    assert r.status_code == 429 and r.json()["result"] == "denied_fail_closed"  # writes stall; closed denies
    report = faults.revert(lab, record)
    assert report["ok"] and report["undone"] == ["CLIENT UNPAUSE"]
    wait_until(lambda: check(url, unique_key("resumed")).status_code == 200, what="checks to pass again")


def test_redis_client_pause_that_ended_by_itself(lab):
    record = faults.inject(lab, "redis_pause", params={"duration_ms": 200})
    time.sleep(0.5)
    report = faults.revert(lab, record)
    assert report["ok"] and report["undone"] == [] and "ended by itself" in report["nothing_to_do"][0]


def test_redis_sigstop_and_revert(lab):
    record = roundtrip(faults.inject(lab, "redis_pause", "redis", {"mode": "sigstop"}))
    assert processes.process_state(lab.process("redis")) == processes.PAUSED
    wait_until(
        lambda: httpx.get(f"{lab.node_urls()['n3']}/health", timeout=5.0).status_code == 503,
        what="n3 to notice Redis is stopped",
    )
    report = faults.revert(lab, record)
    assert report["ok"] and report["undone"][0].startswith("SIGCONT redis")
    assert processes.process_state(lab.process("redis")) == processes.RUNNING


def test_counter_drift_and_revert(lab):
    urls = lab.node_urls()
    key = unique_key("drift")
    record = roundtrip(faults.inject(lab, "counter_drift", "n2", {"ttl_ms": 120_000}))
    assert record["params"] == {"ttl_ms": 120_000}
    assert httpx.get(f"{urls['n2']}/admin/config").json()["cache_ttl_ms"] == 120_000
    body = {"key": key, "limit": 3, "window_ms": 60_000}
    httpx.post(f"{urls['n2']}/check", json=body)  # n2 caches a view with 1 entry
    for _ in range(2):
        httpx.post(f"{urls['n1']}/check", json=body)
    over = sum(httpx.post(f"{urls['n2']}/check", json=body).status_code == 200 for _ in range(5))
    assert over == 2  # n2 admits two more than Redis allows
    report = faults.revert(lab, record)
    assert report["ok"] and "flushed 1 cache entries" in report["undone"][0]
    assert httpx.post(f"{urls['n2']}/check", json=body).status_code == 429


def test_fail_open_and_revert(lab):
    url = lab.node_urls()["n3"]
    record = roundtrip(faults.inject(lab, "fail_open", "n3"))
    assert [s["op"] for s in record["undo"]] == ["link", "node_config"]
    assert lab.links()["n3"]["mode"] == "reset"
    r = check(url, unique_key("open"))
    assert r.status_code == 200 and r.json()["result"] == "allowed_fail_open"
    report = faults.revert(lab, record)
    assert report["ok"] and len(report["undone"]) == 2
    wait_until(
        lambda: check(url, unique_key("closed")).json()["result"] == "allowed", what="n3 back on Redis"
    )


def test_redis_latency_on_all_links_and_revert(lab):
    # 1 s per round trip is beyond the lab nodes' 300 ms Redis timeout: checks fail closed.
    record = roundtrip(faults.inject(lab, "redis_latency", params={"delay_ms": 1000}))
    assert record["target"] == "*" and record["target_chosen"] == "default: every link (*)"
    assert len(record["undo"]) == 3
    assert {(link["mode"], link["delay_ms"]) for link in lab.links().values()} == {("delay", 1000)}
    r = check(lab.node_urls()["n2"], unique_key("slow"))
    assert r.status_code == 429 and r.json()["result"] == "denied_fail_closed"
    report = faults.revert(lab, record)
    assert report["ok"] and len(report["undone"]) == 3


def test_latency_on_one_link(lab):
    record = faults.inject(lab, "redis_latency", "n1", {"delay_ms": 100})
    links = lab.links()
    assert (links["n1"]["mode"], links["n1"]["delay_ms"], links["n2"]["mode"]) == ("delay", 100, "pass")
    url = lab.node_urls()["n1"]
    wait_until(lambda: check(url, unique_key("warm")).status_code == 200, what="n1 through the slow link")
    started = time.monotonic()
    assert check(url, unique_key("slow")).json()["result"] == "allowed"  # slower, still within the timeout
    assert time.monotonic() - started >= 0.1
    assert faults.revert(lab, record)["ok"]


def test_revert_after_the_process_died_reports_instead_of_crashing(lab):
    record = faults.inject(lab, "node_pause", "n2")
    lab.kill_node("n2")
    report = faults.revert(lab, record)
    assert report["ok"] and "no longer exists" in report["nothing_to_do"][0]
    assert lab.start_node("n2") == "started"
    wait_until(lambda: healthy(lab.node_urls()["n2"]), what="n2 back")


def test_revert_with_the_node_gone_lists_what_failed(lab):
    record = faults.inject(lab, "counter_drift", "n3")
    lab.kill_node("n3")
    report = faults.revert(lab, record)
    assert not report["ok"] and report["failed"][0]["step"]["node"] == "n3"
    assert "ConnectError" in report["failed"][0]["reason"]
    lab.start_node("n3")  # a restarted node starts from its command line: cache off
    wait_until(lambda: healthy(lab.node_urls()["n3"]), what="n3 back")
    assert faults.revert(lab, record)["ok"]


def test_revert_on_a_lab_that_is_gone(tmp_path):
    record = {
        "id": "rl-x",
        "kind": "fail_open",
        "target": "n1",
        "undo": [
            {"op": "link", "link": "n1", "mode": "pass", "delay_ms": 0},
            {"op": "start_node", "node": "n1"},
            {"op": "redis_unpause"},
            {"op": "bogus"},
        ],
    }
    report = faults.revert(RateLimiterLab(tmp_path / "nothing-here"), record)
    assert not report["ok"] and len(report["failed"]) == 4
    assert "no ratelimiter lab is up" in report["failed"][0]["reason"]
    assert "unknown undo step" in report["failed"][3]["reason"]


def test_bad_faults_are_clear_errors(lab):
    with pytest.raises(FaultError, match="kinds: node_kill, node_pause, redis_pause"):
        faults.inject(lab, "meteor")
    with pytest.raises(FaultError, match="unknown target 'n9'; nodes: n1, n2, n3"):
        faults.inject(lab, "node_kill", "n9")
    with pytest.raises(FaultError, match="delay_ms"):
        faults.inject(lab, "redis_latency", params={"delay_ms": 0})
    with pytest.raises(FaultError, match="parameters: ttl_ms"):
        faults.inject(lab, "counter_drift", params={"ttl": 5})
    with pytest.raises(FaultError, match="targets redis"):
        faults.inject(lab, "redis_pause", "n1")
    assert {k["kind"] for k in faults.describe_kinds()} == set(faults.KINDS)


def test_default_target_skips_a_dead_first_node(tmp_path):
    lab = make_lab(tmp_path, nodes=2)
    try:
        lab.kill_node("n1")
        record = faults.inject(lab, "node_pause")
        assert record["target"] == "n2"
        assert faults.revert(lab, record)["ok"]
    finally:
        teardown_lab(lab)
