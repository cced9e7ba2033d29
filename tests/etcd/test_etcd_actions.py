"""Every etcd action on the live lab: its precheck refuses what it must (on a fresh observation), and
when it runs, the cluster confirms its effect. One lab without load serves the module; the quota
alarm has a lab of its own (test_etcd_alarm_actions.py): a member added later would replay the fill."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import pytest
from etcd_support import action, clears, fires, healthy, leader, module_lab, problems, run, until

from subjects.etcd.client import EtcdError
from subjects.etcd.subject import build

pytestmark = pytest.mark.slow

lab = module_lab("etcd-actions")


async def test_move_leader_goes_to_the_leader_and_every_member_agrees(lab, subject) -> None:
    obs = await subject.observe()
    current = leader(obs)
    target = next(n.id for n in obs.nodes if n.id != current)
    assert await problems(subject, "move_leader", target=current) == [f"{current} is already the leader"]
    assert (await problems(subject, "move_leader", target="m9"))[0].startswith("no member m9")
    out = await run(subject, "move_leader", target=target)
    assert out.data == {"from": current, "to": target}
    obs = await until(subject, lambda o: o.details.get("leader") == target, 5.0, "the new leader observed")
    assert obs.details["leader_changes"][-1]["requested"] is True  # the operator's own move is not churn
    verdict = await action(subject, "move_leader").reconcile(obs, action(subject, "move_leader").params(target=target))
    assert verdict.took_effect is True


async def test_restart_member_starts_a_dead_member_and_refuses_a_live_one(lab, subject) -> None:
    assert "runs and answers; restart it only with force=true" in (await problems(subject, "restart_member",
                                                                                   member="m3"))[0]
    await asyncio.to_thread(lab.kill_member, "m3")
    await fires(subject, "member_reachable", "member:m3")
    out = await run(subject, "restart_member", member="m3")
    assert "started" in out.detail and "entries behind" in out.detail
    before = lab.process("m3").pid
    out = await run(subject, "restart_member", member="m3", force=True)  # a live follower, quorum to spare
    assert lab.process("m3").pid != before and "entries behind" in out.detail


async def test_a_member_killed_just_now_starts_again_at_once(lab, subject) -> None:
    """Its listeners close a few ms after it is reaped (a young member's at least): starting it at once
    found its ports busy."""
    def kill_then_start() -> str:  # back to back, as a script would; twice, the second on a young member
        lab.kill_member("m3")
        lab.start_member("m3")
        lab.kill_member("m3")
        return lab.start_member("m3")

    assert await asyncio.to_thread(kill_then_start) == "started"


async def test_resume_member_continues_a_stopped_member_only(lab, subject) -> None:
    assert (await problems(subject, "resume_member", member="m2")) == ["m2's process is alive, not stopped (SIGSTOP)"]
    await asyncio.to_thread(lab.signal_member, "m2", signal.SIGSTOP)
    try:
        await fires(subject, "member_reachable", "member:m2")
        assert "resume_member continues it" in (await problems(subject, "restart_member", member="m2"))[0]
        out = await run(subject, "resume_member", member="m2")
        assert out.detail.startswith("m2 resumed (SIGCONT); follows")
    finally:
        await asyncio.to_thread(lab.signal_member, "m2", signal.SIGCONT)


async def test_snapshot_backup_writes_a_backup_etcdctl_accepts(lab, subject, client) -> None:
    await client.put(lab.client_urls()["m1"], "/test/backup", "kept")
    out = await run(subject, "snapshot_backup")
    path = Path(out.data["path"])
    assert path.is_file() and path.stat().st_size == out.data["bytes"] > 0 and path.parent.name == "backups"
    status = json.loads(subprocess.run(["etcdctl", "snapshot", "status", str(path), "-w", "json"],
                                       capture_output=True, text=True, check=True,
                                       env={"ETCDCTL_API": "3"}).stdout)
    assert status["revision"] >= 2 and status["totalKey"] >= 1
    assert (await problems(subject, "snapshot_backup", member="m9")) == ["no member m9"]


async def test_compact_then_defragment_gives_the_space_back(lab, subject, client) -> None:
    url = lab.client_urls()["m1"]
    for _ in range(8):
        revision = await client.put(url, "/test/bulky", b"z" * 512 * 1024)
    out = await run(subject, "compact")
    assert out.data["revision"] >= revision
    with pytest.raises(EtcdError, match="compacted"):
        await client.post(url, "/v3/kv/range", {"key": "AA==", "revision": str(revision - 1)})
    assert (await problems(subject, "compact"))[0].startswith("nothing to compact")
    obs = await subject.observe()
    current = leader(obs)
    assert "is the leader: defragmenting blocks it" in (await problems(subject, "defragment", member=current))[0]
    follower = next(n.id for n in obs.nodes if n.id != current)
    before = obs.node(follower, "member").metrics["db_size"]
    out = await run(subject, "defragment", member=follower)
    assert out.data["after"] < before and out.data["after"] < 2 * 1024 * 1024
    await client.delete_prefix(url, "/test/bulky")


async def test_remove_add_and_promote_change_the_membership(lab, subject) -> None:
    assert "runs and answers" in (await problems(subject, "remove_member", member="m3"))[0]
    await asyncio.to_thread(lab.kill_member, "m3")
    obs = await until(subject, lambda o: o.node("m3", "member").state.value == "down", 10.0, "m3 down")
    assert "down only" in (await problems(subject, "remove_member", member="m3"))[0]
    await until(subject, lambda o: o.node("m3", "member").metrics.get("down_for_s", 0) >= 5, 15.0, "m3 down 5 s")
    out = await run(subject, "remove_member", member="m3")
    assert out.detail.startswith("removed m3")
    obs = await subject.observe()
    assert obs.node("m3", "member").state.value == "removed" and obs.details["voters"] == 2
    v = await fires(subject, "membership_consistent")
    assert v.evidence["missing"] == ["m3"]
    assert (await problems(subject, "add_member", member="m1")) == ["m1 is already a member"]
    out = await run(subject, "add_member", member="m3")
    assert "as learner" in out.detail
    obs = await until(subject, lambda o: o.node("m3", "member").role == "learner", 10.0, "m3 a learner")
    assert (await problems(subject, "promote_learner", member="m1")) == ["m1 is not a learner"]
    await run(subject, "promote_learner", member="m3")
    await clears(subject, "membership_consistent")
    obs = await subject.observe()
    assert obs.details["voters"] == 3 and obs.node("m3", "member").labels["learner"] == "false"


async def test_replace_member_rebuilds_it_from_the_others(lab, subject) -> None:
    before = (await subject.observe()).node("m2", "member").labels["member_id"]
    assert (await problems(subject, "replace_member", member="m9")) == ["no member m9 in the lab"]
    out = await run(subject, "replace_member", member="m2")
    assert out.data["new_id"] != before and Path(out.data["backup"]).is_file() and Path(out.data["old_data"]).is_dir()
    obs = await healthy(subject)
    assert obs.node("m2", "member").labels["member_id"] == out.data["new_id"] and obs.details["voters"] == 3
    assert action(subject, "replace_member").risk == "destructive"


async def test_without_a_lab_only_the_gateway_actions_are_offered(lab) -> None:
    s = await build({"endpoints": list(lab.client_urls().values())[:1], "lab_dir": None})
    try:
        names = {a.name for a in s.actions()}
        assert {"move_leader", "compact", "defragment", "disarm_alarm", "snapshot_backup", "remove_member",
                "add_member", "promote_learner"} <= names
        assert not names & {"restart_member", "resume_member", "replace_member"}
        obs = await healthy(s)
        assert len(obs.nodes) == 3  # the other members were found through the member list
        assert s.thresholds.profile == "production"
        a = next(a for a in s.actions() if a.name == "snapshot_backup")
        assert await a.precheck(obs, a.params()) == ["give a path: without a lab there is no default backups folder"]
    finally:
        await s.aclose()


async def test_the_lab_tells_its_cluster_identity(lab, subject) -> None:
    """Runs and actions carry it (issue 10, defect 7): etcd's own cluster id; a lab is not a real
    cluster, so the approval default stays as it is there."""
    identity = await subject.cluster_identity()
    assert identity is not None and identity.id.startswith("etcd-lab:") and identity.real is False
    status = json.loads(subprocess.run(["etcdctl", "--endpoints", next(iter(lab.client_urls().values())),
                                        "endpoint", "status", "-w", "json"], capture_output=True, text=True,
                                       timeout=30).stdout)
    assert identity.id.endswith(f":{status[0]['Status']['header']['cluster_id']}")
