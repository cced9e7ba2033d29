"""Missing metrics are "not evaluated", never healthy (issue 10, item 3, for etcd).

A member that answers its status call but whose /metrics cannot be read (or lacks a family a check
needs) is not judged by the checks that read metrics: its tickets neither open nor resolve, and
data that stays missing is a `metrics_missing` ticket of its own. The checks that read only the
status call judge without metrics.

The live test puts m2's metrics behind a listener of their own (as `--listen-metrics-urls` does in
production): a TCP hop on its own loopback address that forwards to m2's real client port, so the
scrape reads m2's real page, and an iptables chain (subjects.netfault) that drops that port alone
cuts the scrape off while m2's status call still answers."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from etcd_support import healthy, module_lab, subject_for

from operator_tui.monitor import Monitor, TickReport
from operator_tui.store import Store
from subjects import netfault
from subjects.base import Node, NodeState, Observation
from subjects.etcd.client import decode
from subjects.etcd.invariants import Thresholds, build_invariants
from subjects.etcd.lab import EtcdLab, address_free
from subjects.etcd.observe import COMMIT, FSYNC, QUOTA, EtcdObserver, Reply
from subjects.etcd.subject import build

MiB = 1024 * 1024
METRIC_CHECKS = {"db_quota_headroom", "wal_fsync_latency", "backend_commit_latency"}

lab = module_lab("etcd-missing-metrics")


# -- the checks on hand-built observations ---------------------------------------------------------

def member(name: str, role: str = "follower", **labels: str) -> Node:
    return Node(id=name, kind="member", name=name, state=NodeState.up, role=role,
                labels={"leader": "m1", "learner": "false", "started": "true", **labels},
                metrics={"probe_ok": 1.0, "has_leader": 1.0, "raft_term": 2.0, "db_size": 15 * MiB,
                         "db_in_use": 2 * MiB, "raft_index": 5000.0, "applied": 5000.0, "quota_bytes": 16 * MiB,
                         "wal_fsync_p99_s": 0.9, "backend_commit_p99_s": 0.9})


def cluster(*nodes: Node) -> Observation:
    return Observation(subject="etcd", nodes=list(nodes),
                       details={"leader": "m1", "voters": 3, "quorum": 2, "healthy_voters": 3, "alarms": [],
                                "members": [], "expected_members": None})


def unreadable() -> Node:
    broken = member("m2", metrics_error="GET http://127.0.0.1:9/metrics: connection refused")
    for key in ("quota_bytes", "wal_fsync_p99_s", "backend_commit_p99_s"):
        del broken.metrics[key]  # what observe leaves when the scrape fails
    return broken


def dead() -> Node:
    return Node(id="m2", kind="member", name="m2", state=NodeState.down, state_detail="not answering: refused",
                labels={"learner": "false", "started": "true"}, metrics={"probe_ok": 0.0})


# A dead member's fsync or quota ticket resolved as if it had healed: the checks skipped it. Its gap
# is its member_reachable ticket's, so no metrics_missing ticket opens for it.
@pytest.mark.parametrize(("m2", "explained_by", "why"), [(unreadable, None, "connection refused"),
                                                         (dead, "member_reachable", "m2 does not answer")])
def test_a_member_without_metrics_is_not_evaluated_by_the_checks_that_read_them(m2, explained_by, why) -> None:
    obs = cluster(member("m1", "leader"), m2(), member("m3"))
    invariants = {i.name: i for i in build_invariants(Thresholds(profile="lab"))}
    for name in METRIC_CHECKS:
        result = invariants[name].evaluate(obs, [])
        assert sorted(v.entity for v in result.violations) == ["member:m1", "member:m3"], name
        [missing] = result.not_evaluated
        assert (missing.entity, missing.source, missing.explained_by) == ("member:m2", "metrics:member:m2",
                                                                          explained_by)
        assert why in missing.reason and not result.evaluated("member:m2")
    for name in set(invariants) - METRIC_CHECKS:  # status-only checks: judged as before
        assert invariants[name].evaluate(obs, []).not_evaluated == [], name


def test_a_page_without_a_family_starves_only_the_checks_that_read_it() -> None:
    status = decode(200, '{"header":{"member_id":"2749418553129937219","revision":"9","raft_term":"2"},'
                         '"version":"3.4.23","dbSize":"20480","leader":"2749418553129937219","raftIndex":"12",'
                         '"raftTerm":"2","raftAppliedIndex":"12","dbSizeInUse":"16384"}', "http://a")
    buckets = "".join(f'{FSYNC}_bucket{{le="{le}"}} 3\n' for le in ("0.001", "0.002", "+Inf"))
    page = f"# TYPE {FSYNC} histogram\n{buckets}etcd_server_leader_changes_seen_total 1\n"
    observer = EtcdObserver(endpoints=["http://a"])
    reply = Reply(url="http://a", lab_name="m1", status=status, metrics=page, metrics_url="http://a")
    node = observer._member_up("2749418553129937219", "m1", {}, reply, {}, time.monotonic(), "running")
    assert node.labels["metrics_absent"] == f"{QUOTA},{COMMIT}" and "metrics_error" not in node.labels
    invariants = {i.name: i for i in build_invariants(Thresholds(profile="lab"))}
    obs = cluster(node)
    assert invariants["wal_fsync_latency"].evaluate(obs, []).evaluated("member:m1")  # its histogram was there
    for name in ("db_quota_headroom", "backend_commit_latency"):
        [missing] = invariants[name].evaluate(obs, []).not_evaluated
        assert missing.source == "metrics:member:m1" and "has no etcd_" in missing.reason


async def test_a_metrics_url_that_is_not_http_is_refused_with_its_name(monkeypatch) -> None:
    from operator_tui.config import load_settings
    from operator_tui.errors import UserError

    monkeypatch.setenv("OPERATOR_TUI_ETCD__METRICS_URLS", '{"m2": "127.0.0.1:2381"}')
    with pytest.raises(UserError, match=re.escape("etcd.metrics_urls: Value error, metrics URLs must start with "
                                                  "http:// or https://: m2='127.0.0.1:2381'")):
        load_settings(subject="etcd")
    with pytest.raises(ValueError, match=re.escape("m2='ftp://x'")):  # options built without settings, too
        await build({"endpoints": ["http://127.0.0.1:9"], "metrics_urls": {"m2": "ftp://x"}})


# -- on the live lab ---------------------------------------------------------------------------------

class Hop:
    """A TCP forwarder on an address of its own to one member's client port: that member's metrics
    listener for this test. It carries the member's real bytes; only its port can be cut off."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task] = set()
        self.host, self.port = "", 0

    async def start(self, host: str) -> str:
        for _ in range(50):
            port = random.randrange(20_000, 32_000)
            if address_free(host, port):
                self.server = await asyncio.start_server(self._serve, host, port)
                self.host, self.port = host, port
                return f"http://{host}:{port}"
        raise RuntimeError(f"no free port on {host}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(self._copy(reader, up_writer), self._copy(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)  # type: ignore[arg-type]

    @staticmethod
    async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


@pytest.fixture
async def m2_metrics_hop(lab: EtcdLab) -> AsyncIterator[Hop]:
    spec = next(m for m in lab.state.members if m.name == "m2")
    hop = Hop(spec.address, lab.state.client_port)
    await hop.start(f"{lab.state.block}.9")
    try:
        yield hop
    finally:
        await hop.close()


async def tick_until(monitor: Monitor, done, what: str, timeout: float = 30.0) -> list[TickReport]:
    """Every tick's report until `done(report)`; fail naming what the last tick saw."""
    reports: list[TickReport] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reports.append(await monitor.tick())
        if done(reports[-1]):
            return reports
        await asyncio.sleep(0.1)
    last = reports[-1]
    raise AssertionError(f"{what} not reached in {timeout} s: active {[(t.invariant, t.entity) for t in last.active]}"
                         f", not evaluated {[(i, n.entity) for i, n in last.not_evaluated]}")


def active(report: TickReport, invariant: str, entity: str) -> bool:
    return any(t.invariant == invariant and t.entity == entity for t in report.active)


@pytest.mark.slow
async def test_a_member_whose_metrics_are_cut_off_keeps_its_ticket_and_gets_a_data_ticket(
        lab: EtcdLab, m2_metrics_hop: Hop, store: Store) -> None:
    # quota_warning far below any real database: every member's headroom ticket opens on real figures.
    subject = await subject_for(lab, {"metrics_urls": {"m2": f"http://{m2_metrics_hop.host}:{m2_metrics_hop.port}"}},
                                quota_warning=0.0001, graces={"db_quota_headroom": 0})
    chain = netfault.Chain(f"OPNOTEVAL{uuid.uuid4().hex[:8]}")
    try:
        await healthy(subject)
        monitor = Monitor(subject, store, await store.start_run("test", "etcd"), interval=0.2, clear_after=2,
                          missing_grace_s=2.0)
        first = (await tick_until(monitor, lambda r: active(r, "db_quota_headroom", "member:m2"), "m2's ticket"))[-1]
        m2 = first.observation.node("m2", "member")
        assert m2.metrics["quota_bytes"] == 16 * MiB and first.not_evaluated == []  # read through its listener
        ticket = next(t for t in first.active if t.entity == "member:m2")

        chain.create()
        chain.drop(dst=m2_metrics_hop.host, dport=m2_metrics_hop.port)
        reports = await tick_until(monitor, lambda r: active(r, "metrics_missing", "metrics:member:m2"),
                                   "the metrics_missing ticket")
        assert chain.packets() > 0
        assert len(reports) > monitor.clear_after  # enough ticks that a "healthy" reading would have resolved it
        for report in reports:
            obs = report.observation
            m2 = obs.node("m2", "member")
            assert m2.state == NodeState.up and "within 1 s" in m2.labels["metrics_error"]  # it answers; its scrape not
            assert "quota_bytes" not in m2.metrics and "within 1 s" in obs.details["metrics_missing"]["m2"]
            starved = {(inv, n.entity, n.source) for inv, n in report.not_evaluated}
            assert starved == {(inv, "member:m2", "metrics:member:m2") for inv in METRIC_CHECKS}
            assert report.resolved == [] and active(report, "db_quota_headroom", "member:m2")
            assert {"member:m1", "member:m3"} <= {v.entity for v in report.violations}  # still judged
        assert (await store.get_ticket(ticket.id)).status == "open"
        missing = next(t for t in reports[-1].active if t.invariant == "metrics_missing")
        assert missing.evidence["not_evaluated"] == sorted(f"{inv}@member:m2" for inv in METRIC_CHECKS)
        assert "m2: its metrics could not be read" in missing.summary
        # What the agent's verification asks: not evaluated is no pass.
        headroom = next(i for i in subject.invariants() if i.name == "db_quota_headroom")
        assert not headroom.evaluate(reports[-1].observation, []).evaluated("member:m2")

        chain.delete()
        back = await tick_until(monitor, lambda r: not active(r, "metrics_missing", "metrics:member:m2"),
                                "the metrics_missing ticket resolved")
        assert [t.invariant for t in back[-1].resolved] == ["metrics_missing"]
        assert active(back[-1], "db_quota_headroom", "member:m2")  # judged again, still over the (tiny) limit
    finally:
        chain.delete()
        with contextlib.suppress(Exception):
            await subject.aclose()
    assert chain.gone()
