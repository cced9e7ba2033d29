"""The rate limiter lab as containers: observed by the subject as the process lab is, and every fault
kind done through the engine (or iptables on a container's loopback address), through the same
chaos module the CLI uses, each one's effect and revert checked both here and by the fault's own
checks (`fault_checks`, what the evaluation harness relies on)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from docker_support import chains_listed
from rl_subject_support import clear, firing, observe_until, subject_for
from rl_support import healthy, wait_until

from containers import nodes
from subjects import evaluation
from subjects.base import NodeState
from subjects.netfault import Chain
from subjects.ratelimiter import chaos, fault_checks
from subjects.ratelimiter.lab import LOADGEN_STATUS, open_lab
from subjects.ratelimiter.lab_command import LAB

pytestmark = pytest.mark.slow
CHAINS: set[str] = set()  # every partition chain these tests made: restored and checked by name


def container(lab: Any, name: str) -> dict:
    return nodes.info(lab._client(), lab.state.containers[name].id)


def restore(lab: Any) -> None:
    """Back to how `up` left it, whatever a failed test did."""
    client = lab._client()
    for rec in lab.state.containers.values():
        state = nodes.state(client, rec.id)
        if state == nodes.PAUSED:
            nodes.unpause(client, rec.id)
        elif state != nodes.RUNNING:
            nodes.start(client, rec.id)
    for chain in CHAINS:
        Chain(chain).delete()
    with contextlib.suppress(Exception):
        r = lab.redis()
        r.delete("tests:probe")
        r.close()
    for node_id, url in lab.node_urls().items():
        wait_until(lambda url=url: healthy(url), 30.0, what=f"{node_id} healthy")


def assert_clean(lab: Any) -> None:
    for name in lab.state.containers:
        assert container(lab, name)["state"] == nodes.RUNNING, name
    assert chains_listed(CHAINS) == []
    for node_id, url in lab.node_urls().items():
        wait_until(lambda url=url: healthy(url), 30.0, what=f"{node_id} healthy")
    r = lab.redis()
    try:
        r.set("tests:probe", "1", px=1000)  # Redis takes writes: not paused, disk not full
    finally:
        r.close()


@pytest.fixture(autouse=True)
def clean(docker_lab: Any) -> Iterator[None]:
    restore(docker_lab)
    assert_clean(docker_lab)
    yield
    restore(docker_lab)
    assert_clean(docker_lab)


async def test_the_subject_observes_the_containers(docker_lab: Any, docker_client: Any) -> None:
    lab = open_lab(docker_lab.run_dir)  # the state file says docker: the subject gets the docker lab
    assert type(lab).__name__ == "DockerRateLimiterLab" and lab.state.runtime == "docker"
    listed = nodes.of_lab(docker_client, lab.run_dir)
    assert sorted(c.labels[nodes.LABEL_NODE] for c in listed) == ["n1", "n2", "n3", "proxy", "redis"]
    for c in listed:
        assert c.attrs["HostConfig"]["NetworkMode"] == "host" and c.labels[nodes.LABEL_SUBJECT] == "ratelimiter"
    # Each node on an address of its own on loopback (the lab's block, by default 127.18.0.0/24).
    assert [n.url for n in lab.state.nodes] == [f"http://127.18.0.{10 + i}:{n.port}"
                                                for i, n in enumerate(lab.state.nodes, 1)]
    assert len({lab.state.redis_host, lab.state.proxy_host, *(n.host for n in lab.state.nodes),
                *(n.link_host for n in lab.state.nodes)}) == 2 + 2 * 3
    subject = await subject_for(lab)
    try:
        obs = await observe_until(subject, lambda o: o if o.reachable and len(
            [n for n in o.nodes if n.kind == "node" and n.state == NodeState.up]) == 3 else None, what="3 nodes up")
        assert obs.details["redis"]["reachable"] and obs.details["lab_dir"] == str(lab.run_dir)
    finally:
        await subject.aclose()


def test_the_load_generator_starts_and_stops_as_a_container(docker_lab: Any, docker_client: Any) -> None:
    """What the demo's traffic chapter does on a lab brought up without load: the load generator
    starts in a container of its own and sends traffic; stopped, its container is removed, its log kept."""
    status = docker_lab.run_dir / LOADGEN_STATUS
    try:
        assert LAB.load(docker_lab.run_dir, True).data["outcome"] == "started"
        assert LAB.load(docker_lab.run_dir, True).data["outcome"] == "already running"
        assert container(docker_lab, "loadgen")["state"] == nodes.RUNNING
        wait_until(lambda: status.exists() and json.loads(status.read_text())["sent"] > 0, 20.0, what="load sent")
    finally:
        outcome = LAB.load(docker_lab.run_dir, False).data["outcome"]
    assert outcome == "stopped" and "loadgen" not in docker_lab.state.containers
    assert sorted(c.labels[nodes.LABEL_NODE] for c in nodes.of_lab(docker_client, docker_lab.run_dir)) == [
        "n1", "n2", "n3", "proxy", "redis"]
    assert (docker_lab.logs_dir / "loadgen.log").exists()
    assert LAB.load(docker_lab.run_dir, False).data["outcome"] == "not running"


async def inject(lab: Any, kind: str, target: str | None = None, **params: Any) -> Any:
    record = await chaos.inject({"lab_dir": str(lab.run_dir)}, kind, target, params)
    lab_record = record.undo["lab_record"]
    if kind == "partition":
        CHAINS.add(lab_record["facts"]["chain"])
    verdict = await asyncio.to_thread(evaluation.wait, lambda: fault_checks.effect(lab, lab_record), 10.0)
    assert verdict.ok, f"{kind}: effect check: {verdict.detail}"
    return record


async def revert(lab: Any, record: Any) -> str:
    detail = await chaos.revert({"lab_dir": str(lab.run_dir)}, record)
    lab_record = record.undo["lab_record"]
    verdict = await asyncio.to_thread(evaluation.wait, lambda: fault_checks.reverted(lab, lab_record), 20.0)
    assert verdict.ok, f"{record.kind}: revert check: {verdict.detail}"
    return detail


async def test_node_kill_and_the_subject_sees_it_down(docker_lab: Any) -> None:
    subject = await subject_for(docker_lab)
    try:
        record = await inject(docker_lab, "node_kill", "n2")
        got = container(docker_lab, "n2")
        assert got["state"] == nodes.EXITED and got["exit_code"] == 137  # SIGKILL
        await observe_until(subject, firing(subject, "node_down", "node:n2"), what="node_down on n2")
        detail = await revert(docker_lab, record)
        assert "started n2" in detail
        assert container(docker_lab, "n2")["state"] == nodes.RUNNING
        await observe_until(subject, clear(subject, "node_down", "node:n2"), what="node_down clear")
    finally:
        await subject.aclose()


async def test_node_stop_is_a_clean_exit(docker_lab: Any) -> None:
    record = await inject(docker_lab, "node_stop", "n3")
    got = container(docker_lab, "n3")
    assert got["state"] == nodes.EXITED and got["exit_code"] == 0  # SIGTERM handled: a clean stop
    assert not healthy(docker_lab.node_urls()["n3"])
    assert "started n3" in await revert(docker_lab, record)


async def test_node_restart_is_a_new_run_of_the_same_container(docker_lab: Any) -> None:
    before = container(docker_lab, "n1")
    stats_before = httpx.get(f"{docker_lab.node_urls()['n1']}/api/stats", timeout=5).json()
    record = await inject(docker_lab, "node_restart", "n1")
    after = container(docker_lab, "n1")
    assert after["id"] == before["id"] and after["started_ms"] > before["started_ms"]
    stats = httpx.get(f"{docker_lab.node_urls()['n1']}/api/stats", timeout=5).json()
    assert stats["started_ms"] > stats_before["started_ms"]
    assert docker_lab.answers_as("n1", stats, docker_lab.node_process("n1"))
    assert "already running" in await revert(docker_lab, record)


async def test_node_pause_freezes_the_container(docker_lab: Any) -> None:
    record = await inject(docker_lab, "node_pause", "n2")
    assert container(docker_lab, "n2")["state"] == nodes.PAUSED
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{docker_lab.node_urls()['n2']}/health", timeout=1.0)  # accepted by the kernel, never answered
    assert "resumed n2" in await revert(docker_lab, record)
    assert healthy(docker_lab.node_urls()["n2"])
    assert "already" in await revert(docker_lab, record)  # a second revert finds nothing to do


async def test_redis_pause_freezes_the_redis_container(docker_lab: Any) -> None:
    record = await inject(docker_lab, "redis_pause", mode="sigstop")
    assert container(docker_lab, "redis")["state"] == nodes.PAUSED
    r = redis.Redis.from_url(docker_lab.redis_url(), socket_timeout=1.0)
    try:
        with pytest.raises(redis.TimeoutError):
            r.ping()
    finally:
        r.close()
    assert "resumed redis" in await revert(docker_lab, record)


def connects(host: str, port: int, source: str) -> bool:
    """A TCP connection from `source` (a lab part's own address) to host:port: False when dropped."""
    try:
        socket.create_connection((host, port), timeout=1.0, source_address=(source, 0)).close()
        return True
    except TimeoutError:
        return False


async def test_partition_drops_a_nodes_traffic_on_its_own_address(docker_lab: Any) -> None:
    urls = docker_lab.node_urls()
    record = await inject(docker_lab, "partition", "n2", direction="both")
    chain = record.undo["lab_record"]["facts"]["chain"]
    assert chains_listed({chain}) == [chain]
    try:
        with pytest.raises(httpx.ConnectTimeout):
            httpx.get(f"{urls['n2']}/health", timeout=1.0)
        assert healthy(urls["n1"]) and healthy(urls["n3"])  # only n2's address is cut
        n1, n2, state = docker_lab.state.node("n1"), docker_lab.state.node("n2"), docker_lab.state
        # n2's Redis link and Redis itself are cut for what comes from n2's own address, not n1's.
        assert not connects(n2.link_host, n2.link_port, n2.host)
        assert not connects(state.redis_host, state.redis_port, n2.host)
        assert connects(state.redis_host, state.redis_port, n1.host)
        # n2's own heartbeats to Redis go through that link: the chain's counters show them dropped.
        await asyncio.to_thread(wait_until, lambda: Chain(chain).packets() > 2, 10.0, 0.2, "drops counted")
    finally:
        detail = await revert(docker_lab, record)
    assert f"deleted iptables chain {chain} and its jump (checked gone)" in detail and chains_listed({chain}) == []
    assert healthy(urls["n2"])


async def test_partition_from_redis_by_default_leaves_the_node_answering(docker_lab: Any) -> None:
    """What the harness injects: the node cut from Redis, matched by its container's address alone
    (no cgroup v2 path): it still answers its clients, and says it cannot reach Redis."""
    record = await inject(docker_lab, "partition", "n3")
    facts = record.undo["lab_record"]["facts"]
    try:
        assert facts["direction"] == "redis" and facts["cgroup"] is None
        assert all(rule["src"] == docker_lab.state.node("n3").host for rule in facts["rules"])
        url = docker_lab.node_urls()["n3"]

        def cut_off() -> bool:
            r = httpx.get(f"{url}/health", timeout=2.0)
            return r.status_code == 503 and r.json().get("redis_ok") is False

        await asyncio.to_thread(wait_until, cut_off, 15.0, 0.2, "n3 answering without Redis")
    finally:
        await revert(docker_lab, record)
    assert chains_listed({facts["chain"]}) == []


async def test_the_faults_on_links_and_settings_work_on_containers(docker_lab: Any) -> None:
    """Faults that act through the proxy and the nodes' admin API, and Redis's CLIENT PAUSE."""
    for kind, target, params in (("counter_drift", "n1", {"ttl_ms": 60_000}), ("fail_open", "n2", {}),
                                 ("redis_latency", "n3", {"delay_ms": 250}),
                                 ("redis_pause", None, {"duration_ms": 60_000})):
        record = await inject(docker_lab, kind, target, **params)
        assert (await revert(docker_lab, record)).startswith(f"reverted {kind}")


async def test_redis_disk_full_makes_redis_refuse_writes(docker_lab: Any) -> None:
    record = await inject(docker_lab, "redis_disk_full")
    assert "BGSAVE: err" in record.detail
    usage = nodes.disk_usage(docker_lab._client(), docker_lab.state.containers["redis"].id, "/data")
    assert usage["avail_kb"] <= 64 and usage["size_kb"] <= 32 * 1024  # the container's 32 MiB tmpfs, not the host's
    filler = record.undo["lab_record"]["facts"]["filler"]
    assert filler.startswith("/data/spool-") and not Path(filler).exists()  # in the container, not on the host
    r = docker_lab.redis()
    try:
        with pytest.raises(redis.ResponseError, match="MISCONF"):
            r.set("tests:probe", "1")
    finally:
        r.close()
    detail = await revert(docker_lab, record)
    assert "removed" in detail and "BGSAVE ok" in detail
    r = docker_lab.redis()
    try:
        assert r.set("tests:probe", "1", px=1000)
    finally:
        r.close()
