"""Every rate limiter action against the live lab: precheck on a fresh observation, the effect it
confirms, what it refuses, reconcile; and one pass through the action engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from rl_subject_support import assert_clean, firing, observe_until, restore, subject_for, violations
from rl_support import unique_key, wait_until

from operator_tui.actions.engine import ActionEngine
from operator_tui.agent.embedded import score_cause
from subjects.base import ActionContext, ActionDef, ActionFailed, ActionRequest, RiskTier, RunbookContext
from subjects.ratelimiter.lab import RateLimiterLab
from subjects.ratelimiter.service import schema
from subjects.ratelimiter.subject import RateLimiterSubject


@pytest.fixture(autouse=True)
def clean(lab) -> Iterator[None]:
    assert_clean(lab)
    yield
    restore(lab)
    assert_clean(lab)


@pytest.fixture
async def subject(lab) -> AsyncIterator[RateLimiterSubject]:
    s = await subject_for(lab)
    try:
        await s.observe()
        yield s
    finally:
        await s.aclose()


def action(subject: RateLimiterSubject, name: str) -> ActionDef:
    return next(a for a in subject.actions() if a.name == name)


async def run(subject: RateLimiterSubject, name: str, **params: Any) -> Any:
    """Precheck on a fresh observation, then execute, as the engine does."""
    a = action(subject, name)
    p = a.params.model_validate(params)
    problems = await a.precheck(await subject.observe(), p)
    assert problems == [], problems
    return await a.execute(p, ActionContext(timeout_s=60))


async def problems_of(subject: RateLimiterSubject, name: str, **params: Any) -> list[str]:
    a = action(subject, name)
    return await a.precheck(await subject.observe(), a.params.model_validate(params))


def config(lab: RateLimiterLab, node: str) -> dict:
    return httpx.get(f"{lab.node_urls()[node]}/admin/config", timeout=5).json()


def check(lab: RateLimiterLab, node: str, key: str, limit: int = 100, window_ms: int = 5000) -> httpx.Response:
    return httpx.post(f"{lab.node_urls()[node]}/check", json={"key": key, "limit": limit, "window_ms": window_ms},
                      timeout=5)


def redis_count(lab: RateLimiterLab, key: str) -> int:
    client = lab.redis()
    try:
        return int(client.zcard(schema.counter_key(key)))
    finally:
        client.close()


async def test_catalogue_and_risk_tiers(subject) -> None:
    tiers = {a.name: a.risk for a in subject.actions()}
    assert tiers == {
        "reset_counter": RiskTier.low, "update_limit": RiskTier.high, "set_fail_mode": RiskTier.high,
        "flush_local_cache": RiskTier.low, "set_cache_ttl": RiskTier.high, "drain_node": RiskTier.high,
        "undrain_node": RiskTier.low, "restart_node": RiskTier.high,
    }
    assert action(subject, "drain_node").undo == "undrain_node"
    for a in subject.actions():
        assert a.reconcile is not None, a.name
        assert a.schema()["properties"], a.name


async def test_no_lab_no_restart(lab) -> None:
    from subjects.ratelimiter.subject import build

    # Only one node's URL: the others are found in Redis's registry, and a dead one stays listed.
    s = await build({"nodes": [lab.node_urls()["n1"]], "redis": lab.redis_url()})
    try:
        assert "restart_node" not in {a.name for a in s.actions()}
        obs = await s.observe()
        assert {n.id for n in obs.nodes if n.kind == "node"} == {"n1", "n2", "n3"}
        lab.kill_node("n1")
        await observe_until(s, lambda o: o.node("n1", "node").state == "down", what="n1 down")
        obs = s.observer.latest
        assert {n.entity for n in obs.nodes} == {"node:n1", "node:n2", "node:n3", "redis:redis"}
    finally:
        await s.aclose()
        lab.start_node("n1")


async def test_reset_counter_empties_the_window_and_is_not_drift(lab, subject) -> None:
    key = unique_key("reset")
    for _ in range(6):
        assert check(lab, "n1", key).status_code == 200
    await observe_until(subject, lambda o: key in (o.details.get("keys") or {}), what="the key tracked")
    assert redis_count(lab, key) == 6
    out = await run(subject, "reset_counter", key=key)
    assert out.data["removed"] == 6 and redis_count(lab, key) == 0
    # n1 still remembers its 6 admissions for one window; our own reset must not read as drift.
    obs = await subject.observe()
    assert obs.details["keys"][key]["quiet"] is True
    assert not [v for v in violations(subject, obs, "counter_drift") if v.evidence.get("keys")
                and any(k["key"] == key for k in v.evidence["keys"])]


async def test_a_reset_by_someone_else_is_drift_diagnosed_as_a_reset(lab, subject) -> None:
    key = unique_key("foreign-reset")
    for _ in range(5):
        check(lab, "n2", key, window_ms=20_000)
    await observe_until(subject, lambda o: key in (o.details.get("keys") or {}), what="the key tracked")
    httpx.post(f"{lab.node_urls()['n3']}/api/counters/{key}/reset", timeout=5).raise_for_status()
    v = await observe_until(subject, firing(subject, "counter_drift", "node:n2"), what="drift on n2")
    assert v.evidence["keys"][0]["key"] == key and v.evidence["keys"][0]["unrecorded"] == 5
    ctx = RunbookContext(violation=v, observation=subject.observer.latest, history=[],
                         available_actions=frozenset(a.name for a in subject.actions()) | {"wait"})
    runbook = subject.runbooks()["counter_drift"]
    scored = sorted(((score_cause(c, ctx)[0], c) for c in runbook.causes), key=lambda x: -x[0])
    best = scored[0][1]
    assert best.name == "counter_reset"
    [step] = best.remedy(ctx)
    assert step.name == "wait" and step.params["seconds"] >= 20


async def test_update_limit_is_confirmed_by_another_node(lab, subject) -> None:
    key = unique_key("limit")
    out = await run(subject, "update_limit", key=key, limit=7, window_ms=2000)
    assert out.data["after"] == {"key": key, "limit": 7, "window_ms": 2000, "source": "configured"}
    assert out.data["before"]["source"] == "default"
    r = httpx.get(f"{lab.node_urls()['n3']}/api/limits/{key}", timeout=5).json()
    assert (r["limit"], r["window_ms"]) == (7, 2000)
    a = action(subject, "update_limit")
    verdict = await a.reconcile(await subject.observe(), a.params.model_validate({"key": key, "limit": 7}))
    assert verdict.took_effect is True
    with pytest.raises(ValueError):
        a.params.model_validate({"key": "bad\x01key", "limit": 1})


async def test_set_fail_mode(lab, subject) -> None:
    out = await run(subject, "set_fail_mode", node_id="n2", mode="open")
    assert out.data["before"] == {"fail_mode": "closed"} and out.data["after"] == {"fail_mode": "open"}
    assert config(lab, "n2")["fail_mode"] == "open"
    a = action(subject, "set_fail_mode")
    p = a.params.model_validate({"node_id": "n2", "mode": "open"})
    assert (await a.reconcile(await subject.observe(), p)).took_effect is True
    await run(subject, "set_fail_mode", node_id="n2", mode="closed")
    assert config(lab, "n2")["fail_mode"] == "closed"
    assert (await a.reconcile(await subject.observe(), p)).took_effect is False


async def test_cache_ttl_flush_and_disable(lab, subject) -> None:
    await run(subject, "set_cache_ttl", node_id="n1", ttl_ms=60_000)
    assert config(lab, "n1")["cache_ttl_ms"] == 60_000
    for i in range(3):
        check(lab, "n1", unique_key(f"cached{i}"))
    stats = httpx.get(f"{lab.node_urls()['n1']}/api/stats", timeout=5).json()
    assert stats["cache"]["entries"] == 3
    out = await run(subject, "flush_local_cache", node_id="n1")
    assert out.data["flushed"] == 3 and out.data["cache_ttl_ms"] == 60_000  # flushed, still on
    check(lab, "n1", unique_key("cached-again"))
    out = await run(subject, "flush_local_cache", node_id="n1", disable=True)
    assert out.data == {"flushed": 1, "cache_ttl_ms_before": 60_000, "cache_ttl_ms": 0}
    assert config(lab, "n1")["cache_ttl_ms"] == 0
    a = action(subject, "flush_local_cache")
    verdict = await a.reconcile(await subject.observe(), a.params.model_validate({"node_id": "n1", "disable": True}))
    assert verdict.took_effect is True


async def test_drain_and_undrain_follow_the_registry(lab, subject) -> None:
    out = await run(subject, "drain_node", node_id="n3")
    assert out.data["registry"] == "draining" and config(lab, "n3")["draining"] is True
    nodes = httpx.get(f"{lab.node_urls()['n1']}/api/nodes", timeout=5).json()["nodes"]
    assert {n["id"]: n["state"] for n in nodes}["n3"] == "draining"
    await run(subject, "drain_node", node_id="n2")
    # Draining the last serving node would leave nothing to route to.
    [problem] = await problems_of(subject, "drain_node", node_id="n1")
    assert "no other node serves" in problem
    for node in ("n2", "n3"):
        out = await run(subject, "undrain_node", node_id=node)
        assert out.data["registry"] == "up" and config(lab, node)["draining"] is False


async def test_restart_node_gives_a_new_process_with_its_start_config(lab, subject) -> None:
    await run(subject, "set_cache_ttl", node_id="n2", ttl_ms=5000)
    before = lab.node_process("n2")["pid"]
    out = await run(subject, "restart_node", node_id="n2")
    assert out.data["before_pid"] == before and out.data["pid"] == lab.node_process("n2")["pid"] != before
    assert config(lab, "n2")["cache_ttl_ms"] == 0  # runtime changes are lost, as the description says
    wait_until(lambda: httpx.get(f"{lab.node_urls()['n2']}/health", timeout=2).status_code == 200)
    a = action(subject, "restart_node")
    verdict = await a.reconcile(await subject.observe(), a.params.model_validate({"node_id": "n2"}))
    assert verdict.took_effect is True


async def test_prechecks_refuse_what_cannot_work(lab, subject) -> None:
    assert "does not exist" in (await problems_of(subject, "set_fail_mode", node_id="n9", mode="closed"))[0]
    assert "not a process of this lab" in (await problems_of(subject, "restart_node", node_id="n9"))[0]
    lab.kill_node("n1")
    try:
        await observe_until(subject, lambda o: o.node("n1", "node").metrics.get("probe_ok") == 0.0,
                            what="n1 seen down")
        [problem] = await problems_of(subject, "flush_local_cache", node_id="n1")
        assert "does not answer" in problem
        a = action(subject, "set_fail_mode")
        with pytest.raises(ActionFailed) as failed:
            await a.execute(a.params.model_validate({"node_id": "n1", "mode": "closed"}), ActionContext())
        assert failed.value.retryable and "refuses connections" in failed.value.reason
        assert await problems_of(subject, "restart_node", node_id="n1") == []  # the lab can bring it back
    finally:
        lab.start_node("n1")


async def test_through_the_engine(lab, store, subject) -> None:
    run_id = await store.start_run("test", "ratelimiter")
    engine = ActionEngine(store, subject, run_id, poll_interval=0.05)
    await engine.start()
    try:
        [rec] = await engine.submit([ActionRequest(name="set_fail_mode", params={"node_id": "n1", "mode": "open"})],
                                    actor="human:test")
        [done] = await engine.wait_for([rec.id], timeout=60)
        assert done.state == "succeeded", done.reason
        assert config(lab, "n1")["fail_mode"] == "open"
        [rec] = await engine.submit([ActionRequest(name="set_fail_mode", params={"node_id": "n7", "mode": "closed"})],
                                    actor="human:test")
        [done] = await engine.wait_for([rec.id], timeout=60)
        assert done.state == "failed" and "node n7 does not exist" in done.reason
    finally:
        await engine.stop()
    await asyncio.sleep(0)
