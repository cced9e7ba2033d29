"""The etcd lab as containers: `lab up etcd --docker` from the command line, observed by the subject as
the process lab is, `lab down` leaving nothing (the engine's own listing included); and every fault
kind done through the engine (or iptables on the member's address and container cgroup), its effect
checked and its revert checked, through the same chaos module the CLI uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from etcd_support import (
    clears,
    fires,
    free_block,
    healthy,
    inject,
    leader,
    leftovers,
    revert,
    subject_for,
    until,
)

from containers import nodes
from subjects.base import NodeState
from subjects.etcd.chaos import ChaosError
from subjects.etcd.client import call_sync
from subjects.etcd.lab import open_lab
from subjects.netfault import Chain

SCRIPT = Path(sys.executable).parent / "operator-tui"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "operator_tui"]

pytestmark = pytest.mark.slow


def cli(*args: str, docker_host: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}  # default: the project's local engine
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=180, env=env)


def container(lab: Any, name: str) -> dict:
    return nodes.info(lab._client(), lab.state.containers[name].id)


def labelled(lab: Any) -> dict[str, str]:
    """The lab's containers in the engine's own listing: member label -> container id."""
    return {c.labels[nodes.LABEL_NODE]: c.id for c in nodes.of_lab(lab._client(), lab.run_dir)}


async def test_lab_up_docker_is_observed_like_the_process_lab_and_down_leaves_nothing(docker_engine: str,
                                                                                       tmp_path: Path) -> None:
    block, client, peer = free_block()
    where = ["--lab-dir", str(tmp_path / "labs")]
    up = cli("lab", "up", "etcd", "--docker", "--address-block", block, "--client-port", str(client),
             "--peer-port", str(peer), "--load-rate", "10", *where)
    lab = open_lab(tmp_path / "labs" / "etcd")
    state = lab._read()
    try:
        assert up.returncode == 0, up.stderr
        assert type(lab).__name__ == "DockerEtcdLab" and state is not None and state.runtime == "docker"
        assert f"m1   http://{block}.1:{client}" in up.stdout and "container " in up.stdout
        # The state file names each member's container; the engine's listing finds them by label.
        assert labelled(lab) == {name: rec.id for name, rec in state.containers.items()}
        assert sorted(state.containers) == ["m1", "m2", "m3"]
        assert all(m.cgroup and m.cgroup.endswith(state.containers[m.name].id) for m in state.members)

        again = cli("lab", "up", "etcd", "--docker", *where)
        assert again.returncode == 2 and again.stderr.startswith("operator-tui: error: ") and "already up" in again.stderr
        status = json.loads(cli("lab", "status", "etcd", "--json", *where).stdout)
        assert status["runtime"] == "docker" and [m["health"] for m in status["members"]] == ["healthy"] * 3
        assert [m["container"] for m in status["members"]] == [state.containers[n].id[:12] for n in ("m1", "m2", "m3")]

        subject = await subject_for(lab)
        try:
            await healthy(subject)
            obs = await until(subject, lambda o: (o.workload.qps or 0) > 0, 20, "the load generator's qps")
        finally:
            await subject.aclose()
        assert {n.id: n.labels.get("process") for n in obs.nodes} == {"m1": "alive", "m2": "alive", "m3": "alive"}
        assert obs.details["leader"] in {"m1", "m2", "m3"}
        assert all(n.address == f"http://{block}.{i}:{client}" for i, n in enumerate(obs.nodes, 1))
    finally:
        down = cli("lab", "down", "etcd", *where)
    assert down.returncode == 0, down.stderr
    assert "no container of this lab left" in down.stdout
    assert labelled(lab) == {}
    assert leftovers(lab, state) == []
    lab.close()


@pytest.fixture
async def subject(docker_etcd_lab: Any) -> AsyncIterator[Any]:
    """The subject on the Docker lab: every member healthy before and after, no fault left behind."""
    lab = docker_etcd_lab
    s = await subject_for(lab)
    try:
        await healthy(s)
        yield s
        await healthy(s)
        assert not lab.state.chains
        assert {n: container(lab, n)["state"] for n in lab.member_names()} == dict.fromkeys(lab.member_names(),
                                                                                          nodes.RUNNING)
    finally:
        await s.aclose()


async def test_kill_stop_and_restart_go_through_the_engine(docker_etcd_lab: Any, subject: Any) -> None:
    lab = docker_etcd_lab
    for kind in ("kill_member", "stop_member"):
        before = container(lab, "m2")
        record = await inject(lab, kind, "m2")
        assert container(lab, "m2")["state"] == nodes.EXITED
        assert record.undo["lab_record"]["effect"]["process"] == "stopped"
        await fires(subject, "member_reachable", "member:m2")
        assert "reverted" in await revert(lab, record)
        after = container(lab, "m2")
        # The same container started again on its data (not a new one): it rejoins as itself.
        assert after["id"] == before["id"] and after["state"] == nodes.RUNNING
        assert after["started_ms"] > before["started_ms"]
        await healthy(subject)
        assert "already" in await revert(lab, record)  # harmless twice

    old = leader(await subject.observe())
    before = container(lab, old)
    record = await inject(lab, "restart_member", "leader")
    after = container(lab, old)
    assert record.target == old and after["started_ms"] > before["started_ms"] and after["id"] == before["id"]
    obs = await healthy(subject)
    assert leader(obs) in lab.member_names()
    assert "already running" in await revert(lab, record)


async def test_pause_freezes_the_container_and_revert_thaws_it(docker_etcd_lab: Any, subject: Any) -> None:
    lab = docker_etcd_lab
    record = await inject(lab, "pause_member", "m3")
    undo = record.undo["lab_record"]["undo"]
    assert undo == [{"op": "unpause", "member": "m3", "container": lab.state.containers["m3"].id}]
    assert container(lab, "m3")["state"] == nodes.PAUSED
    obs = await until(subject, lambda o: any(n.id == "m3" and n.state == NodeState.down for n in o.nodes), 10,
                      "m3 seen down")
    assert next(n for n in obs.nodes if n.id == "m3").labels["process"] == "paused"
    assert "unpaused m3's container" in await revert(lab, record)
    assert container(lab, "m3")["state"] == nodes.RUNNING
    await healthy(subject)
    assert "already undone" in await revert(lab, record)


async def test_partition_cuts_a_member_off_its_peers_not_its_clients(docker_etcd_lab: Any, subject: Any) -> None:
    lab = docker_etcd_lab
    record = await inject(lab, "partition_member", "m1")
    chain = record.undo["lab_record"]["effect"]["chain"]
    try:
        assert record.undo["lab_record"]["effect"]["member_lost_leader"] is True
        rules = Chain(chain).rules()
        # Outgoing by the container's cgroup (runc's, in the v2 hierarchy), incoming by address and port.
        cid = lab.state.containers["m1"].id
        assert sum(f"docker/{cid}" in r for r in rules) == 2
        assert any(f"-d {lab.member('m1').address}/32" in r and f"--dport {lab.state.peer_port}" in r for r in rules)
        # Its clients still reach it: it answers, and says it has no leader.
        status = call_sync(lab.member("m1").client_url, "/v3/maintenance/status", timeout=2.0)
        assert not status.get("leader") or "no leader" in " ".join(status.get("errors") or [])
        await fires(subject, "member_has_leader", "member:m1")
    finally:
        assert "deleted iptables chain" in await revert(lab, record)
    assert Chain(chain).gone()
    await clears(subject, "member_has_leader", timeout=30)


async def test_disk_full_inside_the_container_and_quota_fill(docker_etcd_lab: Any, subject: Any) -> None:
    lab = docker_etcd_lab
    record = await inject(lab, "disk_full", "m2")
    effect = record.undo["lab_record"]["effect"]
    filler = Path(effect["filler"])
    assert filler.parent == Path(lab.member("m2").folder) and filler.exists()
    assert effect["member_exited"] is True and container(lab, "m2")["state"] == nodes.EXITED
    assert lab.free_bytes("m2") < 1024 * 1024
    detail = await revert(lab, record)
    assert f"removed {filler}" in detail and "started m2" in detail
    assert not filler.exists() and container(lab, "m2")["state"] == nodes.RUNNING
    await healthy(subject)

    record = await inject(lab, "quota_fill")
    try:
        await fires(subject, "no_alarms")
    finally:
        assert "disarmed alarms" in await revert(lab, record)
    await clears(subject, "no_alarms")


async def test_process_level_faults_say_they_need_the_process_lab(docker_etcd_lab: Any, subject: Any) -> None:
    with pytest.raises(ChaosError, match="need the process lab"):
        await inject(docker_etcd_lab, "slow_disk", "m2")


def test_an_engine_that_does_not_answer_is_one_line_and_leaves_no_lab(tmp_path: Path) -> None:
    result = cli("lab", "up", "etcd", "--docker", "--lab-dir", str(tmp_path), docker_host=f"unix://{tmp_path}/no.sock")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("operator-tui: error: no Docker engine answers at unix://")
    assert "check DOCKER_HOST" in result.stderr
    assert not (tmp_path / "etcd" / "state.json").exists()
