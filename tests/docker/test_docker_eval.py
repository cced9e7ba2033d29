"""The evaluation harness's rate limiter adapter on the Docker lab (lab option ``kind: docker``):
the same faults with the same effect and revert checks, the same oracle, on the slot's address
block; a trial's containers go at teardown, also when its lab's state file is lost, by the ids the
manifest recorded."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from rl_eval_support import failing, free_block, oracle_until, request

from containers import nodes
from subjects.evaluation import FaultPlan
from subjects.ratelimiter.evaluation import ADAPTER

pytestmark = pytest.mark.slow


async def test_a_docker_trial_lab_takes_faults_like_the_process_lab_and_leaves_nothing(
        docker_client: Any, tmp_path: Path) -> None:
    block = free_block()
    manifest = await ADAPTER.reset(request(tmp_path / "trial", block, kind="docker"))
    lab_dir = manifest.admin["lab_dir"]
    try:
        assert set(manifest.extra["containers"]) == {"redis", "proxy", "n1", "n2", "n3"}
        assert not manifest.processes and not manifest.cgroups and not manifest.mounts
        assert all(url.startswith(f"http://{block.prefix}.") for url in manifest.admin["nodes"].values())
        await oracle_until(manifest, want_clean=True, timeout_s=30)
        for kind, target in (("partition", "n2"), ("node_kill", "n3"), ("redis_disk_full", None)):
            plan = await ADAPTER.plan_fault(manifest, kind, target, {}, random.Random(1), f"OPEVdk{kind[:4]}")
            plan = FaultPlan.from_dict(json.loads(json.dumps(plan.to_dict())))  # as the harness stores it
            await ADAPTER.apply_fault(manifest, plan)
            effect = await ADAPTER.fault_effect(manifest, plan)
            assert effect.ok, f"{kind}: {effect.detail}"
            dirty = await oracle_until(manifest, want_clean=False, timeout_s=15)
            assert any(c.entity in plan.affected for c in dirty if not c.ok), failing(dirty)
            assert (await ADAPTER.revert_fault(json.loads(json.dumps(plan.undo)))).startswith(f"reverted {kind}")
            verdict = await ADAPTER.fault_reverted(plan.undo)
            assert verdict.ok, f"{kind}: {verdict.detail}"
            await oracle_until(manifest, want_clean=True, timeout_s=30)
        # A crash that lost the lab's state file: the containers still go, by their recorded ids.
        (Path(lab_dir) / "state.json").unlink()
    finally:
        done = await ADAPTER.teardown(manifest)
    assert sorted(line.split()[2] for line in done if line.startswith("removed container")) == \
        ["n1", "n2", "n3", "proxy", "redis"]
    assert await ADAPTER.leftovers(manifest) == []
    assert nodes.of_lab(docker_client, lab_dir) == []
