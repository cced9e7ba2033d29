"""Every fault on the live lab: it injects, takes effect, the invariants that should see it fire, the
revert undoes it (twice is harmless) and leaves nothing behind; the invariants clear again.

One lab under load serves the module; every test leaves it healthy (checked before and after)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from etcd_support import (
    clears,
    fires,
    healthy,
    inject,
    leader,
    module_lab,
    revert,
    subject_for,
    until,
    violations,
)

from subjects import processes
from subjects.etcd.client import EtcdClient

pytestmark = pytest.mark.slow

lab = module_lab("etcd-faults", load=True)


def chains() -> list[str]:
    return [line for line in subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout.splitlines()
            if "OPETCD" in line]


async def test_a_healthy_cluster_shows_every_member_with_its_role_and_nothing_fires(lab, subject) -> None:
    obs = await subject.observe()
    assert obs.reachable and [n.id for n in obs.nodes] == ["m1", "m2", "m3"]
    assert sorted(n.role for n in obs.nodes) == ["follower", "follower", "leader"]
    for n in obs.nodes:
        assert n.kind == "member" and n.entity == f"member:{n.id}" and n.state.value == "up"
        assert int(n.labels["member_id"], 16) > 0  # decimal IDs from the gateway, shown in hex as in metrics
        assert n.metrics["quota_bytes"] == 16 * 1024 * 1024 and n.metrics["db_size"] > 0
        assert n.metrics["raft_term"] >= 2 and n.metrics["applied"] > 0 and n.metrics["disk_free_bytes"] > 0
        assert n.labels["leader"] == leader(obs) and n.metrics["active_peers"] == 2
    assert obs.details["quorum"] == 2 and obs.details["healthy_voters"] == 3
    loaded = await until(subject, lambda o: (o.workload.qps or 0) > 5, 10.0, "the load generator's figures")
    assert loaded.workload.error_rate == 0.0 and loaded.workload.p99_ms is not None
    fired = {v.invariant for inv in subject.invariants() for v in inv.evaluate(obs, []).violations}
    assert fired == set()


async def test_kill_member_is_seen_down_and_restarted_by_revert(lab, subject) -> None:
    record = await inject(lab, "kill_member")
    member = record.target
    try:
        assert record.undo["lab_record"]["target_chosen"].startswith("default: first running follower")
        assert lab.process_state(member) in ("stopped", "zombie")
        v = await fires(subject, "member_reachable", f"member:{member}")
        assert v.evidence["error_kind"] == "refused" and v.evidence["process"] in ("stopped", "zombie")
        ft = await fires(subject, "fault_tolerance")
        assert ft.evidence["tolerates"] == 0 and ft.evidence["unhealthy"] == [member]
    finally:
        text = await revert(lab, record)
    assert "started" in text
    assert "already running" in await revert(lab, record)  # idempotent
    await clears(subject, "member_reachable")
    await clears(subject, "fault_tolerance")


async def test_stop_and_restart_member_run_it_again_on_its_data(lab, subject) -> None:
    before = lab.process("m3")
    record = await inject(lab, "stop_member", "m3")
    try:
        assert record.undo["lab_record"]["effect"]["process"] == "stopped" and lab.process_state("m3") == "stopped"
        await fires(subject, "member_reachable", "member:m3")
    finally:
        assert "started m3" in await revert(lab, record)
    record = await inject(lab, "restart_member", "m3")
    after = lab.process("m3")
    assert record.undo["lab_record"]["effect"]["process"] == "alive" and after.pid != before.pid
    assert "already running" in await revert(lab, record)
    await clears(subject, "member_reachable")


async def test_killing_the_leader_names_it_in_the_record_and_another_is_elected(lab, subject) -> None:
    before = leader(await subject.observe())
    t0 = time.monotonic()
    record = await inject(lab, "kill_member", "leader")
    try:
        assert record.target == before and "leader -> " + before in record.detail
        obs = await until(subject, lambda o: o.details.get("leader") not in (None, before), 10.0, "a new leader")
        elected = time.monotonic() - t0
        assert elected < 5.0, f"election took {elected:.2f} s"  # lab: 500 ms election timeout, pre-vote
        assert obs.details["leader_changes"][-1]["from"] == before
    finally:
        await revert(lab, record)


async def test_pause_member_hangs_it_until_revert_continues_it(lab, subject) -> None:
    record = await inject(lab, "pause_member", "m2")
    try:
        assert lab.process_state("m2") == "paused"
        v = await fires(subject, "member_reachable", "member:m2")
        assert v.evidence["error_kind"] == "timeout" and v.evidence["process"] == "paused"
    finally:
        text = await revert(lab, record)
    assert "SIGCONT" in text
    assert "is not stopped" in await revert(lab, record)
    await clears(subject, "member_reachable")


async def test_partitioning_the_leader_cuts_it_off_and_the_majority_moves_on(lab, subject) -> None:
    old = leader(await subject.observe())
    record = await inject(lab, "partition_member", "leader")
    try:
        assert record.target == old and record.undo["lab_record"]["effect"]["member_lost_leader"] is True
        chain = record.undo["lab_record"]["effect"]["chain"]
        assert any(chain in line for line in chains()) and chain in lab.state.chains
        v = await fires(subject, "member_has_leader", f"member:{old}")
        assert v.evidence["process"] == "alive"
        # The majority elects another leader within an election timeout or two (longer on a busy machine).
        await until(subject, lambda o: leader(o) != old, 15.0, "another member leading")
        # Its transport notices the silence later (a read timeout): then it shows no active peer.
        await until(subject, lambda o: o.node(old, "member").metrics.get("active_peers") == 0, 20.0,
                    "the isolated member's peers inactive")
    finally:
        text = await revert(lab, record)
    assert "deleted iptables chain" in text
    assert "already gone" in await revert(lab, record)
    assert chains() == [] and chain not in lab.state.chains
    await clears(subject, "member_has_leader")


async def test_a_stale_leader_disagrees_on_the_term_until_it_steps_down(lab, subject) -> None:
    # A leader frozen (SIGSTOP: a GC or VM stall) and cut off while the majority elects another wakes up
    # believing it still leads at its old term, until its quorum check fails (one election timeout).
    old = leader(await subject.observe())
    pause = await inject(lab, "pause_member", old)
    partition = await inject(lab, "partition_member", old)
    seen: list[dict] = []
    try:
        await until(subject, lambda o: o.details.get("leader") not in (None, old), 10.0, "a new leader")
        await revert(lab, pause)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not seen:
            seen = [v.evidence for v in violations(subject, await subject.observe(), "leader_agreement")]
    finally:
        await revert(lab, pause)
        await revert(lab, partition)
    assert seen, "leader_agreement never saw the stale leader's term"
    terms = {view["term"] for view in seen[0]["views"].values()}
    assert len(terms) == 2 and seen[0]["views"][old]["term"] == min(terms)
    await clears(subject, "leader_agreement")


async def test_losing_a_majority_loses_quorum_and_losing_all_is_unreachable(lab, subject) -> None:
    first = await inject(lab, "kill_member")
    second = await inject(lab, "kill_member")
    records = [first, second]
    try:
        v = await fires(subject, "quorum_available", "cluster")
        assert sorted(v.evidence["down"]) == sorted([first.target, second.target])
        obs = await subject.observe()
        assert not violations(subject, obs, "member_has_leader")  # the survivor's problem is quorum itself
        records.append(await inject(lab, "kill_member", next(n for n in ("m1", "m2", "m3")
                                                             if n not in (first.target, second.target))))
        obs = await until(subject, lambda o: not o.reachable, 10.0, "nothing answering")
        assert "none of 3 etcd member(s) answers" in (obs.error or "")
        assert [n.state.value for n in obs.nodes] == ["unknown"] * 3  # the last known members, not dropped
        [v] = violations(subject, obs, "quorum_available")
        assert v.summary.startswith("no etcd member answers")
    finally:
        for record in records:
            await revert(lab, record)
    await clears(subject, "quorum_available", timeout=30.0)


async def test_quota_fill_raises_nospace_and_revert_recovers_the_space(lab, subject) -> None:
    record = await inject(lab, "quota_fill")
    try:
        assert "database space exceeded" in record.detail
        v = await fires(subject, "no_alarms", "cluster")
        assert v.evidence["kinds"] == ["NOSPACE"] and v.evidence["raised_by"]
        obs = await until(subject, lambda o: violations(subject, o, "db_quota_headroom"), 10.0, "quota headroom")
        worst = max(violations(subject, obs, "db_quota_headroom"), key=lambda v: v.evidence["ratio"])
        assert worst.severity == "critical" and worst.evidence["ratio"] > 0.95
    finally:
        text = await revert(lab, record)
    assert "deleted 1 key(s)" in text and "disarmed" in text
    assert "already undone" in await revert(lab, record)
    await clears(subject, "no_alarms")
    await clears(subject, "db_quota_headroom")
    obs = await subject.observe()
    assert max(n.metrics["db_size"] for n in obs.nodes) < 0.5 * 16 * 1024 * 1024


async def test_disk_full_makes_the_member_exit_and_revert_frees_and_starts_it(lab, subject) -> None:
    record = await inject(lab, "disk_full", "m3")
    effect = record.undo["lab_record"]["effect"]
    try:
        assert effect["member_exited"] is True and Path(effect["filler"]).exists()
        await fires(subject, "member_reachable", "member:m3")
        # (the very first failure can be a reset of the connection the member dropped as it died)
        obs = await until(subject, lambda o: o.node("m3", "member").labels.get("error_kind") == "refused", 10.0,
                          "m3 refusing connections")
        assert obs.node("m3", "member").metrics["disk_free_bytes"] < 1024 * 1024
        assert "no space left on device" in Path(lab.member("m3").log).read_text()
    finally:
        text = await revert(lab, record)
    assert "removed" in text and "started m3" in text and not Path(effect["filler"]).exists()
    assert "already" in await revert(lab, record)
    await clears(subject, "member_reachable")


async def test_slow_disk_shows_in_fsync_and_commit_latency_and_apply_lag(lab) -> None:
    # strace stops the member at every system call it makes, not only fsyncs (a member attached with -p
    # cannot use seccomp filters), so on a busy machine its answers take longer than the usual 1 s probe.
    s = await subject_for(lab, {"latency_window_s": 6.0, "latency_min_samples": 3, "probe_timeout": 4.0},
                          apply_lag_entries=3)
    try:
        await healthy(s)
        follower = next(n.id for n in (await s.observe()).nodes if n.role == "follower")
        record = await inject(lab, "slow_disk", follower, delay_ms=600)
        tracer = record.undo["lab_record"]["effect"]["tracer_pid"]
        try:
            fsync = await fires(s, "wal_fsync_latency", f"member:{follower}", timeout=30)
            assert fsync.evidence["p99_s"] > 0.5 and fsync.evidence["is_leader"] is False
            await fires(s, "backend_commit_latency", f"member:{follower}", timeout=30)
            await fires(s, "apply_lag", f"member:{follower}", timeout=30)
        finally:
            text = await revert(lab, record)
        assert "detached" in text
        assert "already stopped" in await revert(lab, record)
        assert not processes.is_live(processes.ProcessRecord(name="strace", pid=tracer, starttime=record.undo[
            "lab_record"]["undo"][0]["starttime"], argv=[], log=""))
        assert lab.process_state(follower) == "alive"
        await clears(s, "wal_fsync_latency", timeout=30)
        await clears(s, "backend_commit_latency", timeout=30)
        await clears(s, "apply_lag", timeout=30)
    finally:
        await s.aclose()


async def test_fragmentation_fires_after_compaction_and_clears_after_defragmentation(lab, subject) -> None:
    client = EtcdClient(timeout=10.0)
    urls = lab.client_urls()
    try:
        for _ in range(8):  # ~4 MiB of history on one key, then compacted away: free pages in every file
            revision = await client.put(urls["m1"], "/test/fragment", b"y" * 512 * 1024)
        await client.delete_prefix(urls["m1"], "/test/fragment")
        await client.compact(urls["m1"], revision + 1)
        v = await fires(subject, "db_fragmentation")
        assert v.evidence["ratio"] < 0.5 and v.evidence["db_size"] > 1024 * 1024
        for url in urls.values():
            await client.defragment(url)
        await clears(subject, "db_fragmentation")
    finally:
        await client.aclose()


async def test_leader_churn_breaks_leader_stability_until_the_window_passes(lab) -> None:
    s = await subject_for(lab, leader_window_s=6.0)
    client = EtcdClient(timeout=5.0)
    try:
        obs = await healthy(s)
        ids = {n.id: str(int(n.labels["member_id"], 16)) for n in obs.nodes}
        for _ in range(4):  # moves nobody announced to the observer count as churn
            current = leader(obs)
            target = next(n for n in ids if n != current)
            await client.transfer_leadership(lab.client_urls()[current], ids[target])
            obs = await until(s, lambda o, t=target: o.details.get("leader") == t, 10.0, f"{target} leading")
        v = await fires(s, "leader_stability", "cluster")
        assert len(v.evidence["changes"]) >= 4
        await clears(s, "leader_stability", timeout=20)
    finally:
        await client.aclose()
        await s.aclose()


async def test_chaos_refuses_what_it_cannot_do_in_one_line(lab) -> None:
    from subjects.etcd.chaos import ChaosError

    for kind, target, params, message in (
        ("melt_member", None, {}, "unknown fault 'melt_member'"),
        ("kill_member", "m9", {}, "unknown target 'm9'"),
        ("slow_disk", "m1", {"delay_ms": 0}, "bad parameter delay_ms"),
        ("pause_member", "m1", {"extra": 1}, "bad parameter extra"),
    ):
        with pytest.raises(ChaosError, match=message) as info:
            await inject(lab, kind, target, **params)
        assert "\n" not in str(info.value)
