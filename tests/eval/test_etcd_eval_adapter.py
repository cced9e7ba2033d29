"""etcd's evaluation adapter on a live lab (real etcd members on a slot's block): every fault kind
lands (its effect check passes, the harness's oracle turns dirty), reverts from its stored undo
alone (its revert check passes, the oracle turns clean) and leaves nothing; a fault whose full
record was never stored is still undone; the load generator's buckets add up and show a fault."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_eval_support import free_block

from subjects import netfault, registry, tmpfs
from subjects.etcd.evaluation import ADAPTER
from subjects.etcd.lab import EtcdLab
from subjects.evaluation import EvaluationAdapter, FaultPlan, LabRequest, Manifest, WorkloadSpec
from subjects.plugin import load

pytestmark = pytest.mark.slow

if shutil.which("etcd") is None or shutil.which("strace") is None:  # missing tools fail the run, never skip
    raise RuntimeError("etcd or strace is not installed: run scripts/setup.sh")

KINDS = ("kill_member", "stop_member", "restart_member", "pause_member", "partition_member", "disk_full", "quota_fill",
         "slow_disk")
TRANSIENT = ("restart_member",)  # over before the oracle's next look: its effect is the new process


async def oracle_until(manifest: Manifest, clean: bool, timeout_s: float = 20.0, baseline: dict | None = None) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        checks = await ADAPTER.oracle(manifest, baseline, [])
        if all(c.ok for c in checks) == clean:
            return checks
        if time.monotonic() > deadline:
            bad = [(c.check, c.entity, c.detail) for c in checks if not c.ok]
            raise AssertionError(f"oracle not {'clean' if clean else 'dirty'} after {timeout_s}s: {bad}")
        await asyncio.sleep(0.5)


def name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"  # the harness's fault names are unique on the host: so are these


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Manifest]:
    request = LabRequest(free_block(), tmp_path_factory.mktemp("etcd-trial"), f"e{uuid.uuid4().hex[:8]}", 5, {})
    manifest = asyncio.run(ADAPTER.reset(request))
    try:
        yield manifest
    finally:
        asyncio.run(ADAPTER.teardown(manifest))
        assert asyncio.run(ADAPTER.leftovers(manifest)) == []
        assert not any(tmpfs.is_mounted(p) for p in manifest.mounts)
        assert not any((netfault.CGROUP_ROOT / c).exists() for c in manifest.cgroups)


def test_the_plugin_names_the_adapter() -> None:
    adapter = load(registry.plugin("etcd").evaluation)
    assert adapter is ADAPTER and isinstance(adapter, EvaluationAdapter)
    assert set(adapter.fault_kinds()) == set(KINDS)
    assert adapter.fault_kinds()["slow_disk"].params == {"delay_ms": 600}
    with pytest.raises(ValueError, match="etcd lab option tmpfs_mb"):
        asyncio.run(adapter.reset(LabRequest(free_block(), Path("/nonexistent"), "x", 0, {"tmpfs_mb": 1})))


async def test_the_lab_is_on_the_slot_block_and_the_oracle_is_clean(lab: Manifest) -> None:
    prefix = lab.address_block.prefix
    assert all(url.startswith(f"http://{prefix}.") for url in lab.section["endpoints"])
    assert lab.mounts and lab.cgroups and lab.entities == ["member:m1", "member:m2", "member:m3", "cluster"]
    checks = await oracle_until(lab, clean=True)
    assert {c.check for c in checks} >= {"member_healthy", "quorum", "one_leader", "no_alarms", "probe_put_get"}
    baseline = await ADAPTER.baseline(lab)
    assert set(baseline["members"]) == {"m1", "m2", "m3"}
    # A member missing from the cluster against the baseline is harm (the oracle's safety check).
    harmed = [c for c in await ADAPTER.oracle(lab, {"members": {**baseline["members"], "m9": {}}}, [])
              if c.kind == "safety" and not c.ok]
    assert [(c.check, c.entity) for c in harmed] == [("baseline_member_kept", "member:m9")]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fault_lands_dirties_the_oracle_and_reverts_whole(lab: Manifest, kind: str) -> None:
    baseline = await ADAPTER.baseline(lab)
    await oracle_until(lab, clean=True, baseline=baseline)
    plan = await ADAPTER.plan_fault(lab, kind, None, {}, random.Random(len(kind)), name())
    plan = FaultPlan.from_dict(json.loads(json.dumps(plan.to_dict())))  # stored, read back
    assert plan.undo["record"] is None and plan.undo["member_process"]  # written before anything happens
    await ADAPTER.apply_fault(lab, plan)
    effect = await ADAPTER.fault_effect(lab, plan)
    assert effect.ok, effect.detail
    if kind not in TRANSIENT:
        dirty = await oracle_until(lab, clean=False, timeout_s=10.0)
        assert any(not c.ok and c.entity in plan.affected for c in dirty), dirty
    stored = json.loads(json.dumps(plan.undo))
    assert (await ADAPTER.revert_fault(stored)).startswith(f"reverted {kind}")
    verdict = await ADAPTER.fault_reverted(stored)
    assert verdict.ok, verdict.detail
    await oracle_until(lab, clean=True, timeout_s=30.0, baseline=baseline)
    state = EtcdLab(lab.admin["lab_dir"]).state
    assert not state.chains and set(state.processes) == {"m1", "m2", "m3"}  # no tracer left
    assert "(already)" in await ADAPTER.revert_fault(stored)  # twice is harmless


async def test_a_fault_whose_record_was_never_stored_is_still_undone(lab: Manifest) -> None:
    """The harness died between applying a partition and storing its record: the plan alone undoes it."""
    await oracle_until(lab, clean=True)
    plan = await ADAPTER.plan_fault(lab, "partition_member", "m2", {}, random.Random(0), name())
    written_ahead = json.loads(json.dumps(plan.undo))
    await ADAPTER.apply_fault(lab, plan)
    assert (await ADAPTER.fault_effect(lab, plan)).ok
    chain = plan.undo["record"]["effect"]["chain"]
    assert netfault.listing_naming(chain)
    assert "deleted iptables chain" in await ADAPTER.revert_fault(written_ahead)
    assert not netfault.listing_naming(chain)
    assert (await ADAPTER.fault_reverted(plan.undo)).ok
    await oracle_until(lab, clean=True, timeout_s=30.0)


async def test_the_workload_buckets_add_up_and_show_a_fault(lab: Manifest) -> None:
    await oracle_until(lab, clean=True)
    spec = WorkloadSpec(rate_per_s=40, slo_p99_ms=200, seed=3)
    await ADAPTER.workload_start(lab, spec)
    try:
        await asyncio.sleep(3)
        plan = await ADAPTER.plan_fault(lab, "pause_member", "m1", {}, random.Random(0), name())
        await ADAPTER.apply_fault(lab, plan)
        paused_at = time.time()
        await asyncio.sleep(3)
        await ADAPTER.revert_fault(plan.undo)
        assert (await ADAPTER.fault_reverted(plan.undo)).ok
        await asyncio.sleep(3)
    finally:
        await ADAPTER.workload_stop(lab)
    buckets = await ADAPTER.workload_read(lab, None)
    assert len(buckets) >= 8
    assert all(b.planned == b.ok + b.fail + b.indeterminate for b in buckets), buckets
    assert all(30 <= b.planned <= 41 for b in buckets[1:-1]), [b.planned for b in buckets]  # a fixed rate: 40/s
    during = [b for b in buckets if paused_at - 1 <= b.t_wall <= paused_at + 3]
    # Requests to the stopped member wait out their timeout, then fail over: slow, failed or unknown.
    assert sum(b.fail + b.indeterminate + b.over_slo for b in during) > 0, during
