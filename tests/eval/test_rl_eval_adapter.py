"""The rate limiter's evaluation adapter on live labs: every fault kind lands (its effect check
passes and the harness's oracle turns dirty), reverts from its stored undo alone (its revert check
passes and the oracle turns clean), and leaves no chain, mount, cgroup or stopped process; two labs
on the same ports in two address blocks never meet, and a partition in one never names the other."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from rl_eval_support import (
    failing,
    findmnt_tmpfs,
    free_block,
    iptables_listing,
    oracle_until,
    reset,
    teardown,
)
from rl_eval_support import request as lab_request

from subjects import netfault, processes, registry
from subjects.evaluation import EvaluationAdapter, FaultPlan, Manifest, WorkloadSpec
from subjects.openloop import arrivals
from subjects.plugin import load
from subjects.ratelimiter import fault_checks
from subjects.ratelimiter.evaluation import ADAPTER
from subjects.ratelimiter.lab import RateLimiterLab

pytestmark = pytest.mark.slow

KIND_PARAMS = {
    "node_kill": {},
    "node_pause": {},
    "redis_pause": {"duration_ms": 60_000},
    "counter_drift": {"ttl_ms": 60_000},
    "fail_open": {},
    "redis_latency": {"delay_ms": 250},
    "node_stop": {},
    "node_restart": {},
    "partition": {},
    "redis_disk_full": {},
}


@pytest.fixture(scope="module")
def lab_a(tmp_path_factory) -> Iterator[Manifest]:
    manifest = reset(lab_request(tmp_path_factory.mktemp("trial-a"), free_block()))
    try:
        yield manifest
    finally:
        teardown(manifest)


@pytest.fixture(scope="module")
def lab_b(tmp_path_factory, lab_a) -> Iterator[Manifest]:
    """A second lab on the very same ports as lab A, in another address block."""
    block_a = lab_a.address_block
    slot = next(s for s in range(100, 245) if s != block_a.slot and
                _block_free(s, block_a.port_base))
    manifest = reset(lab_request(tmp_path_factory.mktemp("trial-b"), free_block(slot=slot, port_base=block_a.port_base)))
    try:
        yield manifest
    finally:
        teardown(manifest)


def _block_free(slot: int, port_base: int) -> bool:
    try:
        free_block(slot=slot, port_base=port_base)
    except RuntimeError:
        return False
    return True


def unique_name() -> str:
    """A fault's name on the host (its chain): unique, as the harness makes them, so that parallel
    runs of these tests never share one."""
    return f"OPEVt{uuid.uuid4().hex[:12]}"


def roundtrip(plan: FaultPlan) -> FaultPlan:
    """What the harness stores and reads back: plain JSON."""
    return FaultPlan.from_dict(json.loads(json.dumps(plan.to_dict())))


def lab_of(manifest: Manifest) -> RateLimiterLab:
    return RateLimiterLab.load(manifest.admin["lab_dir"])


def test_the_plugin_names_the_adapter_and_its_kinds() -> None:
    adapter = load(registry.plugin("ratelimiter").evaluation)
    assert adapter is ADAPTER and isinstance(adapter, EvaluationAdapter)
    kinds = adapter.fault_kinds()
    assert set(kinds) == set(KIND_PARAMS)
    assert kinds["partition"].params == {"direction": "redis", "chain": None}  # cut from Redis unless told
    assert kinds["partition"].target_kind.startswith("node")
    assert kinds["redis_disk_full"].target_kind.startswith("redis")
    assert [k for k, v in kinds.items() if v.self_heals] == ["redis_pause", "node_restart"]
    assert adapter.lab_defaults()["redis_disk_mb"] > 0
    with pytest.raises(ValueError, match="ratelimiter lab option colour"):
        asyncio.run(adapter.reset(lab_request(Path("/nonexistent"), free_block(), colour=1)))


async def test_bad_faults_are_refused_before_anything_changes(lab_a: Manifest) -> None:
    rng = random.Random(0)
    with pytest.raises(ValueError, match="unknown fault kind 'meteor'"):
        await ADAPTER.plan_fault(lab_a, "meteor", None, {}, rng, "OPEVbad1")
    with pytest.raises(ValueError, match="unknown target 'n9'"):
        await ADAPTER.plan_fault(lab_a, "partition", "n9", {}, rng, "OPEVbad2")
    with pytest.raises(ValueError, match="bad parameter delay_ms"):
        await ADAPTER.plan_fault(lab_a, "redis_latency", "n1", {"delay_ms": 0}, rng, "OPEVbad3")
    with pytest.raises(ValueError, match="bad chain name"):
        await ADAPTER.plan_fault(lab_a, "partition", "n1", {}, rng, "no spaces allowed")


@pytest.mark.parametrize("kind", list(KIND_PARAMS))
async def test_a_fault_lands_dirties_the_oracle_and_reverts_whole(lab_a: Manifest, kind: str) -> None:
    await oracle_until(lab_a, want_clean=True)
    lab = lab_of(lab_a)
    name = unique_name()
    plan = roundtrip(await ADAPTER.plan_fault(lab_a, kind, None, KIND_PARAMS[kind], random.Random(3), name))
    record = plan.undo["record"]
    assert record["undo"] and record["injected_at"] is None  # the complete undo exists before the fault
    assert plan.affected and all(e in [*lab_a.entities, "cluster"] for e in plan.affected)
    paused_before = {n: lab.node_process(n)["state"] for n in lab.node_ids()}
    assert set(paused_before.values()) == {processes.RUNNING}

    evidence = await ADAPTER.apply_fault(lab_a, plan)
    assert evidence["done"]
    effect = await ADAPTER.fault_effect(lab_a, plan)
    assert effect.ok, effect.detail
    if kind != "node_restart":  # a restart is over once it returned: the effect check saw the new run
        dirty = await oracle_until(lab_a, want_clean=False, timeout_s=10.0)
        assert any(not c.ok and c.entity in [*plan.affected, "cluster", "redis"] for c in dirty), failing(dirty)
    if kind == "partition":
        assert name in iptables_listing() and plan.affected == [f"node:{plan.target}"]

    stored = json.loads(json.dumps(plan.undo))  # the revert needs nothing but the stored record
    text = await ADAPTER.revert_fault(stored)
    assert text.startswith(f"reverted {kind}")
    verdict = await ADAPTER.fault_reverted(stored)
    assert verdict.ok, verdict.detail
    await oracle_until(lab_a, want_clean=True)

    # Nothing of it is left: no chain, no stopped process, no filler; reverting again does nothing.
    assert name not in iptables_listing()
    for rec in lab.state.processes.values():
        assert processes.process_state(rec) == processes.RUNNING, rec.name
    if kind == "redis_disk_full":
        assert not os.path.exists(record["facts"]["filler"])
    again = await ADAPTER.revert_fault(stored)
    assert "(already)" in again or kind == "redis_pause"


async def test_safety_checks_hold_the_baseline(lab_a: Manifest) -> None:
    await oracle_until(lab_a, want_clean=True)
    baseline = await ADAPTER.baseline(lab_a)
    assert set(baseline["nodes"]) == {"n1", "n2", "n3"}
    safety = [c for c in await ADAPTER.oracle(lab_a, baseline, []) if c.kind == "safety"]
    assert safety and all(c.ok for c in safety)
    lab = lab_of(lab_a)
    url = lab.node_urls()["n2"]
    httpx.put(f"{url}/api/limits/rl-lab-test:key", json={"limit": 5, "window_ms": 1000}, timeout=5).raise_for_status()
    lab.pause_node("n3")  # no heartbeat can write n3 back while it is deregistered
    client = redis.Redis.from_url(lab.redis_url())
    try:
        client.hdel("rl:nodes", "n3")
        harmed = {(c.check, c.entity) for c in await ADAPTER.oracle(lab_a, baseline, [])
                  if c.kind == "safety" and not c.ok}
        assert harmed == {("limits_unchanged", "key:rl-lab-test:key"), ("baseline_node_kept", "node:n3")}
    finally:
        client.delete("rl:l:rl-lab-test:key")
        client.close()
        lab.resume_node("n3")
    await oracle_until(lab_a, want_clean=True, baseline=baseline)


async def test_a_drained_node_behind_a_partition_is_mitigation_but_no_node_in_rotation_is_not(
        lab_a: Manifest) -> None:
    """The oracle judges the service: a node an operator took out of rotation is not probed, as long
    as a node left in rotation serves."""
    await oracle_until(lab_a, want_clean=True)
    urls = lab_a.admin["nodes"]
    plan = await ADAPTER.plan_fault(lab_a, "partition", "n2", {}, random.Random(0), f"OPEVdr{random.randrange(10**6)}")
    await ADAPTER.apply_fault(lab_a, plan)
    try:
        dirty = await oracle_until(lab_a, want_clean=False)
        assert "node_serving" in {c.check for c in dirty if not c.ok and c.entity == "node:n2"}, failing(dirty)
        httpx.post(f"{urls['n2']}/admin/drain", timeout=5).raise_for_status()
        clean = await oracle_until(lab_a, want_clean=True)
        n2 = [c for c in clean if c.entity == "node:n2"]
        assert len(n2) == 4 and all(c.ok and c.detail.startswith("drained: out of rotation") for c in n2), n2
        assert [c.detail for c in clean if c.check == "nodes_in_rotation"] == ["serving: n1, n3; drained: n2"]
    finally:
        await ADAPTER.revert_fault(plan.undo)
        httpx.post(f"{urls['n2']}/admin/undrain", timeout=5)
    assert (await ADAPTER.fault_reverted(plan.undo)).ok
    try:
        for url in urls.values():
            httpx.post(f"{url}/admin/drain", timeout=5).raise_for_status()
        dirty = await oracle_until(lab_a, want_clean=False)
        assert [(c.check, c.detail) for c in dirty if not c.ok] == [("nodes_in_rotation",
                                                                     "serving: none; drained: n1, n2, n3")]
    finally:
        for url in urls.values():
            httpx.post(f"{url}/admin/undrain", timeout=5)
    await oracle_until(lab_a, want_clean=True)


async def test_the_workload_is_open_loop_its_buckets_add_up_and_show_a_fault(lab_a: Manifest) -> None:
    first, again, other = (list(arrivals(50, s, 2.0)) for s in (11, 11, 12))
    assert first == again and first != other and 60 <= len(first) <= 140  # seeded Poisson, about 100

    await oracle_until(lab_a, want_clean=True)
    spec = WorkloadSpec(rate_per_s=60, slo_success=0.99, slo_p99_ms=200, seed=11, params={"keys": 4})
    await ADAPTER.workload_start(lab_a, spec)
    try:
        await asyncio.sleep(3)
        plan = await ADAPTER.plan_fault(lab_a, "node_pause", "n2", {}, random.Random(0), unique_name())
        await ADAPTER.apply_fault(lab_a, plan)
        fault_at = time.time()
        await asyncio.sleep(3)
        await ADAPTER.revert_fault(plan.undo)
        assert (await ADAPTER.fault_reverted(plan.undo)).ok
        await asyncio.sleep(2)
        partial = await ADAPTER.workload_read(lab_a, None)
        assert partial, "buckets appear while the workload runs"
    finally:
        await ADAPTER.workload_stop(lab_a)
    buckets = await ADAPTER.workload_read(lab_a, None)
    assert len(buckets) >= 7
    for b in buckets:
        assert b.planned == b.ok + b.fail + b.indeterminate, b
    assert [b.t_wall for b in buckets] == sorted({b.t_wall for b in buckets})
    total = sum(b.planned for b in buckets)
    assert 0.5 * 60 * len(buckets) <= total <= 1.5 * 60 * len(buckets)
    before = [b for b in buckets if b.t_wall + 1 <= fault_at]
    during = [b for b in buckets if fault_at <= b.t_wall <= fault_at + 3]
    assert before and all(b.meets(spec) for b in before[1:]), before
    assert sum(b.fail + b.indeterminate + b.over_slo for b in during) > 0, during  # the fault shows
    assert all(b.p50_ms is not None for b in buckets if b.ok)
    after = await ADAPTER.workload_read(lab_a, buckets[-3].t_wall)
    assert after == buckets[-2:]


async def test_two_labs_on_the_same_ports_never_meet(lab_a: Manifest, lab_b: Manifest) -> None:
    assert lab_a.extra["ports"].keys() == lab_b.extra["ports"].keys()
    ports_a = {what: hp.rsplit(":", 1)[1] for what, hp in lab_a.extra["ports"].items()}
    ports_b = {what: hp.rsplit(":", 1)[1] for what, hp in lab_b.extra["ports"].items()}
    assert ports_a == ports_b  # the same port numbers ...
    prefix_a, prefix_b = lab_a.address_block.prefix, lab_b.address_block.prefix
    assert all(hp.startswith(prefix_b + ".") for hp in lab_b.extra["ports"].values())  # ... on other addresses
    await oracle_until(lab_a, want_clean=True)
    await oracle_until(lab_b, want_clean=True)
    base_a, base_b = await ADAPTER.baseline(lab_a), await ADAPTER.baseline(lab_b)
    assert all(n["url"].startswith(f"http://{prefix_a}.") for n in base_a["nodes"].values())
    assert all(n["url"].startswith(f"http://{prefix_b}.") for n in base_b["nodes"].values())

    # Each process runs in its lab's own cgroup and connects from its own address.
    lab = lab_of(lab_a)
    n1 = lab.state.processes["n1"]
    assert n1.cgroup and str(n1.pid) in (netfault.CGROUP_ROOT / n1.cgroup / "cgroup.procs").read_text().split()
    client = redis.Redis.from_url(lab.redis_url())
    try:
        sources = {c["addr"].rsplit(":", 1)[0] for c in client.client_list()}
    finally:
        client.close()
    assert f"{prefix_a}.2" in sources  # the proxy's links reach Redis from the proxy's address

    name = unique_name()
    plan = await ADAPTER.plan_fault(lab_a, "partition", "n2", {}, random.Random(0), name)
    await ADAPTER.apply_fault(lab_a, plan)
    try:
        assert (await ADAPTER.fault_effect(lab_a, plan)).ok
        rules = [line for line in iptables_listing().splitlines() if name in line.split()]
        assert rules and not any(prefix_b + "." in line for line in rules)
        assert all(prefix_a + "." in line for line in rules if line.startswith(f"-A {name}"))
        await oracle_until(lab_a, want_clean=False)
        checks_b = await ADAPTER.oracle(lab_b, base_b, [])
        assert all(c.ok for c in checks_b), failing(checks_b)  # the neighbour never notices
    finally:
        await ADAPTER.revert_fault(plan.undo)
    assert (await ADAPTER.fault_reverted(plan.undo)).ok


async def test_a_partition_outlives_its_lab_and_is_still_reverted(lab_b: Manifest) -> None:
    """Last (it tears lab B down): a crashed harness reverts from the record after the lab is gone."""
    name = unique_name()
    plan = await ADAPTER.plan_fault(lab_b, "partition", None, {}, random.Random(5), name)
    disk = await ADAPTER.plan_fault(lab_b, "redis_disk_full", None, {}, random.Random(5), name)
    for p in (plan, disk):
        await ADAPTER.apply_fault(lab_b, p)
        assert (await ADAPTER.fault_effect(lab_b, p)).ok
    records = list(lab_of(lab_b).state.processes.values())
    await ADAPTER.teardown(lab_b)  # the lab goes; the chain does not
    assert name in iptables_listing()
    still = fault_checks.reverted(None, plan.undo["record"])  # one look: the adapter's own check polls
    assert not still.ok and "still in iptables -S" in still.detail
    assert (await ADAPTER.fault_reverted(disk.undo)).ok  # the filler went with the unmounted disk
    text = await ADAPTER.revert_fault(json.loads(json.dumps(plan.undo)))
    assert f"deleted iptables chain {name} and its jump (checked gone)" in text
    assert (await ADAPTER.fault_reverted(plan.undo)).ok
    assert name not in iptables_listing()
    assert lab_b.mounts[0] not in findmnt_tmpfs()
    assert not [r for r in records if processes.is_live(r)]
    assert await ADAPTER.leftovers(lab_b) == []
