"""The rate limiter subject's observation and every invariant, on the live lab under load: each one
fires on its fault, for the right entity, and clears once the fault is reverted."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from rl_subject_support import (
    assert_clean,
    clear,
    firing,
    inject,
    make_loaded_lab,
    observe_until,
    restore,
    revert,
    subject_for,
    violations,
)
from rl_support import free_port, teardown_lab, wait_until

from operator_tui.agent.embedded import score_cause
from operator_tui.monitor import Monitor
from subjects import processes
from subjects.base import NodeState, RunbookContext
from subjects.ratelimiter.lab import RateLimiterLab
from subjects.ratelimiter.service import schema
from subjects.ratelimiter.subject import build

pytestmark = pytest.mark.slow
COUNTER_INVARIANTS = ("node_down", "redis_unreachable", "over_admission", "counter_drift", "fail_open_node",
                      "node_isolated")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[RateLimiterLab]:
    lab = make_loaded_lab(tmp_path_factory.mktemp("invariants-lab"))
    try:
        yield lab
    finally:
        teardown_lab(lab)


@pytest.fixture(autouse=True)
def clean(lab) -> Iterator[None]:
    assert_clean(lab)
    yield
    restore(lab)
    assert_clean(lab)


async def test_every_node_redis_and_the_counters_are_observed(lab) -> None:
    subject = await subject_for(lab)
    try:
        def complete(obs):
            keys = obs.details.get("keys") or {}
            return obs if obs.workload.qps and "hot:steady" in keys and keys["hot:steady"].get("exact") else None

        obs = await observe_until(subject, complete, what="a full observation")
        nodes = {n.entity: n for n in obs.nodes}
        assert {"node:n1", "node:n2", "node:n3", "redis:redis"} <= set(nodes)
        for nid in ("n1", "n2", "n3"):
            n = nodes[f"node:{nid}"]
            assert n.state == NodeState.up and n.metrics["probe_ok"] == 1.0 and n.metrics["redis_ok"] == 1.0
            assert n.labels["fail_mode"] == "closed" and n.labels["cache"] == "off"
            assert n.labels["registry"] == "up"
        redis = nodes["redis:redis"]
        assert redis.state == NodeState.up
        for metric in ("ping_ms", "used_memory_bytes", "connected_clients", "script_ms"):
            assert metric in redis.metrics, metric
        assert obs.workload.qps > 10 and obs.workload.error_rate == 0.0
        hot = obs.details["keys"]["hot:steady"]
        # Every admission went through Redis: the nodes' sum is Redis's count, exactly, on one instant.
        assert hot["limit"] == 20 and hot["attributed"]
        assert hot["admitted"] == hot["redis_count"] <= 20
        assert all(item["unrecorded"] == 0 for item in hot["nodes"].values())
        assert set(hot["nodes"]) == {"n1", "n2", "n3"}
        for _ in range(3):
            obs = await subject.observe()
            for name in COUNTER_INVARIANTS:
                assert violations(subject, obs, name) == [], name
            await asyncio.sleep(0.5)
    finally:
        await subject.aclose()


async def grace_left(subject, store, key: str) -> float:
    """How long the monitor waits before it opens the ticket, from the first tick that sees it."""
    monitor = Monitor(subject, store, await store.start_run("test", "ratelimiter"), clock=lambda: 0.0)
    return (await monitor.tick()).pending[key]


async def test_node_down_for_a_killed_node_that_stays_listed(lab, store) -> None:
    subject = await subject_for(lab)
    try:
        record = await inject(lab, "node_kill", "n2")
        v = await observe_until(subject, firing(subject, "node_down", "node:n2"), what="node_down on n2")
        assert v.evidence["refused"] is True
        assert await grace_left(subject, store, "node_down@node:n2") == 1.0  # refused twice is enough
        obs = subject.observer.latest
        n2 = obs.node("n2", "node")
        assert n2 is not None and n2.state == NodeState.down and "refused" in n2.state_detail
        assert obs.node("n1", "node").state == NodeState.up  # the others are still watched
        await revert(lab, record)
        await observe_until(subject, clear(subject, "node_down"), what="node_down to clear")
    finally:
        await subject.aclose()


async def test_node_down_for_a_paused_node(lab, store) -> None:
    subject = await subject_for(lab)
    try:
        record = await inject(lab, "node_pause", "n1")
        v = await observe_until(subject, firing(subject, "node_down", "node:n1"), what="node_down on n1")
        assert v.evidence["timed_out"] is True and "hung or paused" in v.summary
        assert await grace_left(subject, store, "node_down@node:n1") == 2.0  # a hung node may only be busy
        await revert(lab, record)
        await observe_until(subject, clear(subject, "node_down"), what="node_down to clear")
    finally:
        await subject.aclose()


async def test_redis_unreachable_when_redis_is_stopped_while_nodes_answer(lab) -> None:
    subject = await subject_for(lab)
    try:
        record = await inject(lab, "redis_pause", None, mode="sigstop")
        v = await observe_until(subject, firing(subject, "redis_unreachable", "redis"), what="redis_unreachable")
        assert v.evidence["observer_reaches_redis"] is False
        obs = subject.observer.latest
        assert obs.reachable  # the nodes answer: this is Redis's ticket, not "everything is gone"
        assert obs.node("redis", "redis").state == NodeState.down

        def nodes_see_it(o):
            return all(n.metrics.get("redis_ok") == 0.0 for n in o.nodes if n.kind == "node")

        await observe_until(subject, nodes_see_it, what="every node to fail its Redis round trips")
        await revert(lab, record)
        await observe_until(subject, clear(subject, "redis_unreachable"), what="redis_unreachable to clear")
    finally:
        await subject.aclose()


async def test_redis_unreachable_when_redis_pauses_writes(lab) -> None:
    subject = await subject_for(lab)
    try:
        record = await inject(lab, "redis_pause", None, duration_ms=60_000)
        v = await observe_until(subject, firing(subject, "redis_unreachable", "redis"), what="redis_unreachable")
        assert v.evidence["observer_reaches_redis"] is True and v.evidence["writes"] == "stalled"
        assert "pausing writes" in v.summary
        await revert(lab, record)
        await observe_until(subject, clear(subject, "redis_unreachable"), what="redis_unreachable to clear")
    finally:
        await subject.aclose()


async def test_counter_drift_and_over_admission_from_a_stale_cache(lab) -> None:
    subject = await subject_for(lab)
    try:
        await observe_until(subject, lambda o: "hot:steady" in (o.details.get("keys") or {}), what="keys seen")
        record = await inject(lab, "counter_drift", "n1")
        drift = await observe_until(subject, firing(subject, "counter_drift", "node:n1"), what="counter_drift on n1")
        assert drift.evidence["cache_ttl_ms"] == 60_000 and drift.evidence["unrecorded_total"] >= 2
        over = await observe_until(subject, firing(subject, "over_admission", "key:hot:steady"),
                                   what="over_admission on hot:steady")
        assert over.evidence["admitted"] > over.evidence["limit"] == 20
        assert over.evidence["admitted_by_node"]["n1"] > 0
        obs = subject.observer.latest
        assert not [v for v in violations(subject, obs, "counter_drift") if v.entity != "node:n1"]
        await revert(lab, record)
        await observe_until(subject, clear(subject, "counter_drift"), what="counter_drift to clear")
        await observe_until(subject, clear(subject, "over_admission"), what="over_admission to clear")
    finally:
        await subject.aclose()


async def test_fail_open_node(lab) -> None:
    subject = await subject_for(lab)
    try:
        record = await inject(lab, "fail_open", "n3")
        v = await observe_until(subject, firing(subject, "fail_open_node", "node:n3"), what="fail_open_node on n3")
        assert v.evidence["fail_mode"] == "open" and v.evidence["observer_reaches_redis"] is True
        # Its unrecorded admissions are drift too, and node_isolated holds for it: both are inhibited
        # by fail_open_node on the same node (checked in the agent scenario); here they are raw facts.
        obs = subject.observer.latest
        assert obs.node("n3", "node").state == NodeState.degraded
        await revert(lab, record)
        await observe_until(subject, clear(subject, "fail_open_node"), what="fail_open_node to clear")
        await observe_until(subject, clear(subject, "counter_drift"), what="its drift to clear")
    finally:
        await subject.aclose()


def best_cause(subject, history: list, node: str, previous: list | None = None):
    """The embedded diagnoser's choice for node_isolated on `node`, and the remedy it binds."""
    v = firing(subject, "node_isolated", f"node:{node}")(history[-1])
    ctx = RunbookContext(violation=v, observation=history[-1], history=history[:-1],
                         available_actions=frozenset(a.name for a in subject.actions()) | {"wait"},
                         previous_actions=previous or [])
    causes = subject.runbooks()["node_isolated"].causes
    best = max(causes, key=lambda c: score_cause(c, ctx)[0])
    return best, [(a.name, a.params) for a in best.remedy(ctx)]


async def test_node_isolated_when_one_link_is_cut(lab) -> None:
    subject = await subject_for(lab)
    try:
        await asyncio.to_thread(lab.set_link, "n2", "reset")
        v = await observe_until(subject, firing(subject, "node_isolated", "node:n2"), what="node_isolated on n2")
        assert v.evidence["fail_mode"] == "closed" and set(v.evidence["other_nodes_reaching_redis"]) == {"n1", "n3"}
        obs = subject.observer.latest
        assert violations(subject, obs, "redis_unreachable") == []  # one node's path, not Redis
        # Its connections are reset, not slow: a broken path a restart would not mend. The node is
        # taken out of rotation, then (the drain tried) the path goes to a human.
        history = []
        for _ in range(4):
            history.append(await subject.observe())
            await asyncio.sleep(0.3)
        best, remedy = best_cause(subject, history, "n2")
        assert best.name == "path_broken" and remedy == [("drain_node", {"node_id": "n2"})]
        drained = [{"name": "drain_node", "params": {"node_id": "n2"}, "state": "succeeded"}]
        assert best_cause(subject, history, "n2", drained) == (best, [])
        await asyncio.to_thread(lab.set_link, "n2", "pass")
        await observe_until(subject, clear(subject, "node_isolated"), what="node_isolated to clear")
    finally:
        await subject.aclose()


async def test_a_partition_from_redis_is_a_cut_path_not_a_stuck_process(lab) -> None:
    """iptables drops what n3 sends to Redis: its connects time out (no handshake ever completes)
    while it answers its clients. That is the network, not the process: drain it, never restart it."""
    subject = await subject_for(lab)
    try:
        record = await inject(lab, "partition", "n3")
        try:
            await observe_until(subject, firing(subject, "node_isolated", "node:n3"), what="node_isolated on n3")
            # Round trips on the connections it had open time out first; then its connects do, which
            # no slow or silent peer would make them do.
            history: list = []
            deadline = time.monotonic() + 15
            while not any("Timeout connecting" in o.node("n3", "node").state_detail for o in history):
                assert time.monotonic() < deadline, [o.node("n3", "node").state_detail for o in history]
                history = [*history, await subject.observe()][-10:]
                await asyncio.sleep(0.3)
            best, remedy = best_cause(subject, history, "n3")
            assert best.name == "path_broken" and remedy == [("drain_node", {"node_id": "n3"})]
        finally:
            await revert(lab, record)  # the chain goes whatever happened
        await observe_until(subject, clear(subject, "node_isolated"), what="node_isolated to clear")
        # Its checks that waited out Redis timeouts leave its latency window before the next test.
        await observe_until(subject, lambda o: o.node("n3", "node").metrics.get("p99_ms", 1e9) < 50,
                            what="n3's latency back", timeout=30)
    finally:
        await subject.aclose()


async def test_high_latency_on_one_node_then_everywhere(lab) -> None:
    subject = await subject_for(lab, thresholds={"slo_p99_ms": 100.0})
    try:
        record = await inject(lab, "redis_latency", "n1", delay_ms=250)
        v = await observe_until(subject, firing(subject, "high_latency", "node:n1"), what="high_latency on n1")
        assert v.evidence["p99_ms"] > 100 and v.evidence["nodes_slow"] == ["n1"]
        await revert(lab, record)
        await observe_until(subject, clear(subject, "high_latency"), timeout=40, what="high_latency to clear")
        record = await inject(lab, "redis_latency", "*", delay_ms=250)
        v = await observe_until(subject, firing(subject, "high_latency", "cluster"), what="cluster high_latency")
        assert v.evidence["nodes_slow"] == ["n1", "n2", "n3"]
        assert subject.observer.latest.workload.p99_ms > 100
        await revert(lab, record)
        await observe_until(subject, clear(subject, "high_latency"), timeout=40, what="high_latency to clear")
    finally:
        await subject.aclose()


async def test_a_node_known_only_from_the_registry_is_watched_and_shows_down(lab, tmp_path) -> None:
    """Never only the configured endpoints: a node that registered in Redis is watched too, and a dead
    one stays listed as down; one that stopped cleanly and nobody expects is removed."""
    port = free_port()
    argv = [sys.executable, "-m", "subjects.ratelimiter.service", "--node-id", "extra1", "--port", str(port),
            "--redis", lab.redis_url(), "--heartbeat-ms", "200", "--node-ttl-ms", "1500"]
    rec = processes.spawn("extra1", argv, tmp_path / "extra1.log", env=processes.child_env(), port=port)
    subject = await subject_for(lab)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200, 30,
                   what="extra node up")

        def extra_is(state):
            def probe(obs):
                n = obs.node("extra1", "node")
                return n if n is not None and n.state == state else None
            return probe

        n = await observe_until(subject, extra_is(NodeState.up), what="the extra node observed")
        assert n.labels["registry"] == "up"
        processes.send(rec, signal.SIGKILL)
        processes.wait_dead(rec, 5)
        processes.reap(rec.pid)
        await observe_until(subject, firing(subject, "node_down", "node:extra1"), what="node_down on extra1")
    finally:
        await subject.aclose()
        processes.stop(rec)
        client = lab.redis()
        try:  # the registry never forgets a node: take ours out so the lab stays as it was
            client.hdel(schema.NODES_KEY, "extra1")
            client.hdel(schema.HEARTBEATS_KEY, "extra1")
        finally:
            client.close()


async def test_a_cleanly_stopped_unexpected_node_is_removed_not_down(lab, tmp_path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "subjects.ratelimiter.service", "--node-id", "extra2", "--port", str(port),
            "--redis", lab.redis_url()]
    rec = processes.spawn("extra2", argv, tmp_path / "extra2.log", env=processes.child_env(), port=port)
    subject = await subject_for(lab)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200, 30,
                   what="extra node up")
        await observe_until(subject, lambda o: o.node("extra2", "node"), what="the extra node observed")
        assert processes.stop(rec) == "terminated"

        def removed(obs):
            n = obs.node("extra2", "node")
            return n is not None and n.state == NodeState.removed

        await observe_until(subject, removed, what="extra2 removed")
        assert violations(subject, subject.observer.latest, "node_down") == []
    finally:
        await subject.aclose()
        processes.stop(rec)
        client = lab.redis()
        try:
            client.hdel(schema.NODES_KEY, "extra2")
            client.hdel(schema.HEARTBEATS_KEY, "extra2")
        finally:
            client.close()


async def test_nothing_answers_is_an_unreachable_observation_not_an_error() -> None:
    subject = await build({"nodes": [f"http://127.0.0.1:{free_port()}"], "redis": f"redis://127.0.0.1:{free_port()}/0",
                           "probe_timeout": 0.5})
    try:
        obs = await subject.observe()
        assert obs.reachable is False
        assert "Redis" in obs.error and "none of 1 known node answers" in obs.error
        [v] = violations(subject, obs, "redis_unreachable")
        assert v.entity == "redis" and v.severity == "critical"
        for name in ("node_down", "over_admission", "counter_drift"):
            inv = next(i for i in subject.invariants() if i.name == name)
            assert not inv.on_unreachable  # the monitor does not evaluate them: unreachable is not "all clear"
    finally:
        await subject.aclose()


async def test_build_without_anything_to_watch_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="no rate limiter to watch"):
        await build({"nodes": [], "redis": None, "lab_dir": str(tmp_path / "nothing")})
    with pytest.raises(ValueError, match="Redis URL is needed"):
        await build({"nodes": ["http://127.0.0.1:1"]})


async def test_operator_cut_off_from_redis_while_the_nodes_serve(lab) -> None:
    """A wrong Redis URL (or the operator's own network) is told apart from Redis being down."""
    subject = await subject_for(lab, redis=f"redis://127.0.0.1:{free_port()}/0")
    try:
        v = await observe_until(subject, firing(subject, "redis_unreachable", "redis"), what="redis_unreachable")
        obs = subject.observer.latest
        assert obs.reachable and v.evidence["nodes_failing"] == {} and v.evidence["observer_reaches_redis"] is False
        ctx = RunbookContext(violation=v, observation=obs, history=[],
                             available_actions=frozenset(a.name for a in subject.actions()))
        causes = subject.runbooks()["redis_unreachable"].causes
        best = max(causes, key=lambda c: score_cause(c, ctx)[0])
        assert best.name == "operator_to_redis_path" and best.remedy(ctx) == []
    finally:
        await subject.aclose()
