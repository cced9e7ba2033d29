"""One observation of an etcd cluster: every member, asked in parallel, with calls that need no quorum.

Per member and tick, concurrently and each within the probe timeout (a SIGSTOPped member accepts
connections and never answers, so every call has one): ``/v3/maintenance/status`` (the member's own
view: leader, term, index, DB size, alarms in ``errors``), ``/v3/cluster/member/list`` (its view of
the membership) and ``/metrics`` (on the client URL, or on the member's own metrics listener,
etcd's ``--listen-metrics-urls``, when `metrics_urls` names one). Nothing here goes through raft:
alarm GET, puts and linearizable reads block for 7 s without quorum and would make observation
fail exactly when it matters.

A member that answers but whose metrics cannot be read (scrape failed, page unreadable, or a
family the checks need is absent) says so: label ``metrics_error`` (the whole page) or
``metrics_absent`` (the families missing), and ``details["metrics_missing"]`` {member: why}. The
checks that need those figures report the member as not evaluated, never as healthy.

Members come from the lab, the configured endpoints and the member lists the members give (so a
member added later is watched too). A member that does not answer is a node in state ``down``,
never dropped; a member added but never started (no name, no client URL) is ``unknown``. When no
member answers at all the observation is ``reachable=False``.

Beside the members' own figures the observer keeps what only a series shows: the p99 of WAL
fsync and backend commit from histogram deltas over a window, and the leader changes it saw
(with those the operator asked for, through `expect_leader_change`, marked as such).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subjects import processes, promtext
from subjects.base import Node, NodeState, Observation, Workload, utcnow
from subjects.etcd.client import EtcdClient, EtcdError, as_int, hex_id

FSYNC = "etcd_disk_wal_fsync_duration_seconds"
COMMIT = "etcd_disk_backend_commit_duration_seconds"
WANTED = (
    "etcd_server_leader_changes_seen_total", "etcd_server_slow_apply_total",
    "etcd_server_heartbeat_send_failures_total", "etcd_server_proposals_failed_total",
    "etcd_server_proposals_pending", "etcd_server_quota_backend_bytes", "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_current_revision", "etcd_debugging_mvcc_keys_total", "etcd_disk_defrag_inflight",
    "etcd_network_active_peers", "etcd_server_snapshot_apply_in_progress_total", FSYNC, COMMIT,
)  # fmt: skip
SCALARS = {
    "etcd_server_leader_changes_seen_total": "leader_changes_seen",
    "etcd_server_slow_apply_total": "slow_apply_total",
    "etcd_server_heartbeat_send_failures_total": "heartbeat_send_failures_total",
    "etcd_server_proposals_failed_total": "proposals_failed_total",
    "etcd_server_proposals_pending": "proposals_pending", "etcd_server_quota_backend_bytes": "quota_bytes",
    "etcd_debugging_mvcc_compact_revision": "compact_revision",
    "etcd_debugging_mvcc_current_revision": "current_revision", "etcd_debugging_mvcc_keys_total": "keys_total",
    "etcd_disk_defrag_inflight": "defrag_inflight",
    "etcd_server_snapshot_apply_in_progress_total": "snapshot_apply_in_progress",
}
QUOTA = "etcd_server_quota_backend_bytes"
NEEDED = (QUOTA, FSYNC, COMMIT)  # the families checks read; the rest only adds evidence
ALARM = re.compile(r"memberID:(\d+)\s+alarm:([A-Z_]+)")
LOADGEN_FRESH_S = 5.0
LEADER_HISTORY_S = 3600.0


@dataclass
class Reply:
    """What one member URL said this tick."""

    url: str
    lab_name: str | None
    status: dict[str, Any] | None = None
    members: list[dict[str, Any]] | None = None
    metrics: str | None = None
    error: EtcdError | None = None
    metrics_url: str | None = None
    metrics_error: str | None = None
    probe_ms: float = 0.0

    @property
    def member_id(self) -> str | None:
        return (self.status or {}).get("header", {}).get("member_id")


@dataclass
class Series:
    """Histogram samples of one member over the latency window: (monotonic, {le: count}) each."""

    fsync: deque[tuple[float, dict[float, float]]] = field(default_factory=deque)
    commit: deque[tuple[float, dict[float, float]]] = field(default_factory=deque)


def parse_metrics(text: str) -> tuple[dict[str, float], dict[str, float], dict[float, float], dict[float, float],
                                      list[str]]:
    """(scalars by short name, active peers {remote hex: 0/1}, fsync buckets, commit buckets,
    the NEEDED families the page lacks)."""
    scalars: dict[str, float] = {}
    peers: dict[str, float] = {}
    fsync: dict[float, float] = {}
    commit: dict[float, float] = {}
    seen: set[str] = set()
    for name, labels, value in promtext.parse(text, WANTED):
        seen.add(name.removesuffix("_bucket"))
        if name in SCALARS:
            scalars[SCALARS[name]] = value
        elif name == "etcd_network_active_peers":
            peers[labels.get("Remote", "?")] = value
        elif name in (f"{FSYNC}_bucket", f"{COMMIT}_bucket"):
            le = labels.get("le", "")
            bound = float("inf") if le in ("+Inf", "Inf") else float(le)
            (fsync if name.startswith(FSYNC) else commit)[bound] = value
    return scalars, peers, fsync, commit, [f for f in NEEDED if f not in seen]


def alarm_list(errors: list[Any] | None) -> list[tuple[str, str]]:
    """(raising member's decimal ID, alarm) from status errors like "memberID:274... alarm:NOSPACE "."""
    out = []
    for e in errors or []:
        m = ALARM.search(str(e))
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def window_p99(samples: deque[tuple[float, dict[float, float]]], now: float, window_s: float,
               current: dict[float, float], min_count: float) -> tuple[float | None, float]:
    """p99 (seconds) of what was observed in the window, from the change of cumulative buckets,
    and how many observations that was. A counter that went down means the member restarted:
    its current buckets are the whole story then."""
    samples.append((now, current))
    while len(samples) > 1 and samples[0][0] < now - window_s:
        samples.popleft()
    then = samples[0][1]
    inf = float("inf")
    if current.get(inf, 0.0) < then.get(inf, 0.0):
        samples.clear()
        samples.append((now, current))
        delta = dict(current)
    else:
        delta = {b: c - then.get(b, 0.0) for b, c in current.items()}
    count = delta.get(inf, 0.0)
    if count < min_count:
        return None, count
    return promtext.histogram_quantile(0.99, delta), count


async def _unknown_metrics_url(url: str) -> str:
    raise EtcdError("its metrics listener is configured by member name, and which member answers here is not "
                    "known until a member list names it", kind="bad_response", url=url)


class EtcdObserver:
    def __init__(self, *, endpoints: list[str], lab: Any = None, probe_timeout: float = 1.0,
                 latency_window_s: float = 30.0, latency_min_samples: int = 5,
                 leader_window_s: float = 900.0, expected_members: list[str] | None = None,
                 metrics_urls: dict[str, str] | None = None):
        self.endpoints = [u.rstrip("/") for u in endpoints]
        self.metrics_urls = {name: u.rstrip("/") for name, u in (metrics_urls or {}).items()}
        self.lab = lab
        self.probe_timeout = probe_timeout
        self.latency_window_s = latency_window_s
        self.latency_min_samples = latency_min_samples
        self.leader_window_s = leader_window_s
        self.expected_members = expected_members
        self.client = EtcdClient(timeout=probe_timeout)
        self.latest: Observation | None = None
        self._learned: dict[str, str] = {}  # member name or hex ID -> client URL, from member lists
        self._series: dict[str, Series] = {}
        self._leader: str | None = None  # the leader a majority agreed on last time
        self._leader_changes: deque[dict[str, Any]] = deque()
        self._expected_moves: dict[str, float] = {}  # target name -> monotonic deadline
        self._last_nodes: list[Node] = []
        self._down_since: dict[str, float] = {}
        self._children: set[int] = set()  # member -> monotonic time it was first seen down

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- where members are -----------------------------------------------------------------------

    def lab_urls(self) -> dict[str, str]:
        if self.lab is None:
            return {}
        try:
            return self.lab.client_urls()
        except Exception:  # the lab went down meanwhile: it has no members then
            return {}

    def member_url(self, name: str) -> str | None:
        """A member's client URL, by its name (or hex ID) as the observation shows it."""
        return self.lab_urls().get(name) or self._learned.get(name)

    def member_urls(self) -> dict[str, str]:
        """Every member's client URL known: from the member lists, then the lab's (which win)."""
        return {**self._learned, **self.lab_urls()}

    def metrics_url(self, client_url: str, lab_name: str | None) -> str | None:
        """Where the member at `client_url` serves /metrics: its own listener when configured, else
        its client URL. None: listeners are configured by member name, and which member answers
        here is not known yet (names come from the member lists)."""
        if not self.metrics_urls:
            return client_url
        name = lab_name or next((n for n, u in self._learned.items() if u == client_url), None)
        return self.metrics_urls.get(name, client_url) if name is not None else None

    def expect_leader_change(self, target: str, seconds: float = 15.0) -> None:
        """The operator is moving leadership to `target`: that change is not churn."""
        self._expected_moves[target] = time.monotonic() + seconds

    def _targets(self) -> dict[str, str | None]:
        """Client URL -> lab member name (None when not from the lab)."""
        out: dict[str, str | None] = {u: None for u in self.endpoints}
        for url in self._learned.values():
            out.setdefault(url, None)
        for name, url in self.lab_urls().items():
            out[url] = name
        return out

    # -- asking ------------------------------------------------------------------------------------

    async def _ask(self, url: str, lab_name: str | None) -> Reply:
        reply = Reply(url=url, lab_name=lab_name, metrics_url=self.metrics_url(url, lab_name))
        t0 = time.monotonic()
        scrape = self.client.metrics(reply.metrics_url) if reply.metrics_url else _unknown_metrics_url(url)
        status, members, metrics = await asyncio.gather(
            self.client.status(url), self.client.member_list(url), scrape, return_exceptions=True)
        reply.probe_ms = (time.monotonic() - t0) * 1000
        if isinstance(status, BaseException):
            reply.error = status if isinstance(status, EtcdError) else EtcdError(
                f"{type(status).__name__}: {status}", kind="bad_response", url=url)
            return reply
        reply.status = status
        reply.members = None if isinstance(members, BaseException) else members
        if isinstance(metrics, BaseException):
            where = f"GET {reply.metrics_url}/metrics: " if reply.metrics_url else ""
            reply.metrics_error = f"{where}{metrics}"
        else:
            reply.metrics = metrics
        return reply

    async def observe(self) -> Observation:
        t0 = time.monotonic()
        at = utcnow()
        try:
            obs = await self._observe(t0)
        except Exception as e:  # a bug here must read as "cannot tell", never as "all clear"
            obs = self._unreachable(f"observation failed: {type(e).__name__}: {e}", {})
        obs.at, obs.monotonic = at, t0
        obs.duration_ms = (time.monotonic() - t0) * 1000
        if obs.reachable:
            self._last_nodes = obs.nodes
        self.latest = obs
        return obs

    def _unreachable(self, error: str, details: dict[str, Any]) -> Observation:
        nodes = [n.model_copy(update={"state": NodeState.unknown,
                                      "state_detail": "no member answers: cannot tell this one's state"})
                 for n in self._last_nodes]
        return Observation(subject="etcd", reachable=False, error=error, nodes=nodes, details=details)

    async def _observe(self, t0: float) -> Observation:
        # Members this process started (restart_member) are its children: collect the dead ones, also
        # after `lab down` removed the state that names them, so none lingers as a zombie.
        for pid in self._children:
            processes.reap(pid)
        targets = self._targets()
        if not targets:
            return self._unreachable("no etcd member to ask: no endpoints configured and no lab up",
                                     {"lab_dir": str(self.lab.run_dir) if self.lab is not None else None})
        replies = await asyncio.gather(*(self._ask(u, n) for u, n in targets.items()))
        answering = [r for r in replies if r.status is not None]
        details: dict[str, Any] = {"lab_dir": str(self.lab.run_dir) if self.lab is not None else None,
                                   "probe_timeout_s": self.probe_timeout}
        if not answering:
            first = replies[0]
            details["errors"] = {r.lab_name or r.url: r.error.message if r.error else "?" for r in replies}
            return self._unreachable(f"none of {len(replies)} etcd member(s) answers (e.g. {first.url}: "
                                     f"{first.error.message if first.error else '?'})", details)
        membership = self._membership(answering)
        by_id = {r.member_id: r for r in answering if r.member_id}
        names = {mid: (m.get("name") or hex_id(mid)) for mid, m in membership.items()}
        for mid, m in membership.items():
            if m.get("clientURLs"):
                self._learned[names[mid]] = m["clientURLs"][0].rstrip("/")

        now = time.monotonic()
        lab_procs = await asyncio.to_thread(self._lab_processes)  # a Docker lab asks its engine
        nodes: list[Node] = []
        seen_urls: set[str] = set()
        leaders: dict[str, str | None] = {}
        for mid, m in membership.items():
            name = names[mid]
            reply = by_id.get(mid)
            if reply is None:
                urls = [u.rstrip("/") for u in m.get("clientURLs") or []]
                reply = next((r for r in replies if r.url in urls or (r.lab_name and r.lab_name == m.get("name"))),
                             None)
            if reply is not None:
                seen_urls.add(reply.url)
            if reply is not None and reply.status is not None:
                node = self._member_up(mid, name, m, reply, names, now, lab_procs.get(name))
                leaders[name] = node.labels.get("leader") or None
                self._down_since.pop(name, None)
            else:
                node = self._member_down(mid, name, m, reply, lab_procs.get(name))
                node.metrics["down_for_s"] = round(now - self._down_since.setdefault(name, now), 2)
            free = self._disk_free(name)
            if free is not None:
                node.metrics["disk_free_bytes"] = free
            nodes.append(node)
        # Lab members outside the membership (removed, or never added) are shown, not dropped.
        for r in replies:
            if r.url in seen_urls or r.lab_name is None:
                continue
            nodes.append(Node(id=r.lab_name, kind="member", name=r.lab_name, address=r.url, state=NodeState.removed,
                              state_detail="not a member of the cluster (removed, or never added)",
                              role="none", labels={"process": lab_procs.get(r.lab_name, "unknown"),
                                                   "client_url": r.url}))

        nodes.sort(key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n.id)])
        voters = [n for n in nodes if n.labels.get("learner") != "true" and n.state != NodeState.removed
                  and n.labels.get("started") != "false"]
        quorum = len(voters) // 2 + 1
        votes: dict[str, int] = {}
        for n in voters:
            if leaders.get(n.id):
                votes[leaders[n.id] or ""] = votes.get(leaders[n.id] or "", 0) + 1
        agreed = next((leader for leader, count in votes.items() if count >= quorum), None)
        self._track_leader(agreed, nodes, now)
        healthy = [n for n in voters if n.state == NodeState.up or (n.state == NodeState.degraded
                                                                   and n.metrics.get("has_leader") == 1.0)]
        # Alarms are cluster-wide: every member reports each one, naming the member that raised it.
        alarms = sorted({(names.get(raiser, hex_id(raiser)), kind) for r in answering
                         for raiser, kind in alarm_list((r.status or {}).get("errors"))})
        details.update({
            "members": [{"id": hex_id(mid), "name": m.get("name", ""), "peer_urls": m.get("peerURLs") or [],
                         "client_urls": m.get("clientURLs") or [], "learner": bool(m.get("isLearner")),
                         "started": bool(m.get("name"))} for mid, m in membership.items()],
            "membership_views": self._views(answering, names),
            "leader": agreed, "leaders_seen": leaders, "voters": len(voters), "quorum": quorum,
            "healthy_voters": len(healthy),
            "alarms": [{"member": member, "alarm": kind} for member, kind in alarms],
            "leader_changes": list(self._leader_changes),
            "leader_window_s": self.leader_window_s,
            "expected_members": self.lab_member_names(),
            "latency_window_s": self.latency_window_s,
        })
        unread = {n.id: n.labels.get("metrics_error") or f"/metrics has no {n.labels['metrics_absent']}"
                  for n in nodes if n.state != NodeState.down and (n.labels.get("metrics_error")
                                                                  or n.labels.get("metrics_absent"))}
        if unread:
            details["metrics_missing"] = unread
        metrics = {"members": float(len(nodes)), "members_answering": float(len(answering)),
                   "voters": float(len(voters)), "quorum": float(quorum), "healthy_voters": float(len(healthy)),
                   "alarms": float(len(alarms))}
        workload = self._workload(details)
        return Observation(subject="etcd", nodes=nodes, metrics=metrics, workload=workload, details=details)

    def lab_member_names(self) -> list[str] | None:
        if self.expected_members is not None:
            return list(self.expected_members)
        if self.lab is None:
            return None
        try:
            return [m.name for m in self.lab.state.members]
        except Exception:
            return None

    def _disk_free(self, name: str) -> float | None:
        if self.lab is None:
            return None
        try:
            free = self.lab.free_bytes(name)
        except Exception:
            return None
        return float(free) if free is not None else None

    def _lab_processes(self) -> dict[str, str]:
        if self.lab is None:
            return {}
        try:
            state = self.lab.state
            self._children = {rec.pid for rec in state.processes.values()}
            return self.lab.process_states()
        except Exception:
            return {}

    @staticmethod
    def _membership(answering: list[Reply]) -> dict[str, dict[str, Any]]:
        """The member list as the leader sees it (it has the latest membership), else any answering
        member's, plus members only others list (an isolated member may know one more or less)."""
        def rank(r: Reply) -> tuple[int, int]:
            s = r.status or {}
            return (1 if s.get("leader") and s.get("leader") == r.member_id else 0, 1 if s.get("leader") else 0)

        out: dict[str, dict[str, Any]] = {}
        for r in sorted(answering, key=rank, reverse=True):
            for m in r.members or []:
                if m.get("ID"):
                    out.setdefault(str(m["ID"]), m)
            if r.member_id and r.member_id not in out:
                out[r.member_id] = {"ID": r.member_id, "clientURLs": [r.url]}
        return out

    @staticmethod
    def _views(answering: list[Reply], names: dict[str, str]) -> dict[str, list[str]]:
        views = {}
        for r in answering:
            if r.members is not None and r.member_id:
                views[names.get(r.member_id, hex_id(r.member_id))] = sorted(
                    names.get(str(m.get("ID")), hex_id(m["ID"])) for m in r.members if m.get("ID"))
        return views

    # -- nodes -------------------------------------------------------------------------------------

    def _member_up(self, mid: str, name: str, m: dict[str, Any], reply: Reply, names: dict[str, str], now: float,
                   process: str | None) -> Node:
        s = reply.status or {}
        errors = [str(e) for e in s.get("errors") or []]
        alarms = sorted({kind for _, kind in alarm_list(errors)})
        leader_id = s.get("leader")
        learner = bool(s.get("isLearner") or m.get("isLearner"))
        role = "learner" if learner else ("leader" if leader_id and leader_id == mid else "follower")
        values: dict[str, float] = {
            # The first two are what the console's member tile shows under the role.
            "raft_term": float(as_int(s.get("raftTerm"))),
            "db_size": float(as_int(s.get("dbSize"))),
            "applied": float(as_int(s.get("raftAppliedIndex"))),
            "raft_index": float(as_int(s.get("raftIndex"))),
            "db_in_use": float(as_int(s.get("dbSizeInUse"))),
            "revision": float(as_int((s.get("header") or {}).get("revision"))),
            "has_leader": 1.0 if leader_id and not any("no leader" in e for e in errors) else 0.0,
            "is_leader": 1.0 if role == "leader" else 0.0,
            "probe_ok": 1.0,
            "probe_ms": round(reply.probe_ms, 2),
        }
        labels = {"member_id": hex_id(mid), "version": str(s.get("version", "")), "client_url": reply.url,
                  "peer_url": ",".join(m.get("peerURLs") or []), "learner": "true" if learner else "false",
                  "leader": names.get(leader_id, hex_id(leader_id)) if leader_id else "",
                  "alarms": ",".join(alarms), "process": process or "unknown", "started": "true"}
        if errors:
            labels["errors"] = "; ".join(errors)
        series = self._series.setdefault(name, Series())
        if reply.metrics is not None:
            try:
                scalars, peers, fsync, commit, absent = parse_metrics(reply.metrics)
            except promtext.ParseError as e:
                labels["metrics_error"] = f"{reply.metrics_url}/metrics is unreadable: {e}"
            else:
                values.update(scalars)
                if absent:
                    labels["metrics_absent"] = ",".join(absent)
                if peers:
                    values["active_peers"] = float(sum(1 for v in peers.values() if v >= 1))
                    values["peers"] = float(len(peers))
                    inactive = [names.get(str(int(h, 16)), h) for h, v in peers.items() if v < 1]
                    labels["inactive_peers"] = ",".join(sorted(inactive))
                for key, samples, buckets in (("wal_fsync_p99_s", series.fsync, fsync),
                                              ("backend_commit_p99_s", series.commit, commit)):
                    if buckets:
                        p99, count = window_p99(samples, now, self.latency_window_s, buckets,
                                                self.latency_min_samples)
                        values[key.replace("p99_s", "count")] = count
                        if p99 is not None:
                            values[key] = round(p99, 4)
        else:
            labels["metrics_error"] = reply.metrics_error or "no metrics"
        state, detail = NodeState.up, f"{role}, term {values['raft_term']:.0f}"
        if values["has_leader"] == 0.0:
            state, detail = NodeState.degraded, "no leader: " + ("; ".join(errors) or "leader field absent")
        elif alarms:
            state, detail = NodeState.degraded, f"alarm {', '.join(alarms)} active"
        return Node(id=name, kind="member", name=name, address=reply.url, state=state, state_detail=detail, role=role,
                    labels=labels, metrics=values)

    def _member_down(self, mid: str, name: str, m: dict[str, Any], reply: Reply | None, process: str | None) -> Node:
        labels = {"member_id": hex_id(mid), "peer_url": ",".join(m.get("peerURLs") or []),
                  "learner": "true" if m.get("isLearner") else "false", "process": process or "unknown",
                  "started": "true" if m.get("name") else "false"}
        if not m.get("name"):
            return Node(id=name, kind="member", name=name, address=",".join(m.get("peerURLs") or []),
                        state=NodeState.unknown, role="learner" if m.get("isLearner") else "unstarted",
                        state_detail="added to the cluster but never started (no name, no client URL)",
                        labels=labels, metrics={"probe_ok": 0.0})
        url = reply.url if reply is not None else ",".join(m.get("clientURLs") or [])
        labels["client_url"] = url
        error = reply.error if reply is not None else None
        detail = f"not answering: {error.message}" if error else "no client URL known to ask it"
        if error is not None:
            labels["error_kind"] = error.kind
        if process == "paused":
            detail += " (its process is SIGSTOPped)"
        elif process in ("stopped", "zombie"):
            detail += " (its process is not running)"
        role = "learner" if m.get("isLearner") else "member"
        # down_for_s is set by the caller; it comes first so the console's tile shows it.
        return Node(id=name, kind="member", name=name, address=url, state=NodeState.down, state_detail=detail,
                    role=role, labels=labels, metrics={"down_for_s": 0.0, "probe_ok": 0.0})

    # -- series ------------------------------------------------------------------------------------

    def _track_leader(self, agreed: str | None, nodes: list[Node], now: float) -> None:
        wall = utcnow().isoformat(timespec="milliseconds")
        self._expected_moves = {t: d for t, d in self._expected_moves.items() if d > now}
        if agreed is not None and self._leader is not None and agreed != self._leader:
            term = next((n.metrics.get("raft_term") for n in nodes if n.id == agreed), None)
            requested = agreed in self._expected_moves
            self._expected_moves.pop(agreed, None)
            self._leader_changes.append({"at": wall, "monotonic": now, "from": self._leader, "to": agreed,
                                         "term": term, "requested": requested})
        if agreed is not None:
            self._leader = agreed
        while self._leader_changes and self._leader_changes[0]["monotonic"] < now - LEADER_HISTORY_S:
            self._leader_changes.popleft()

    def _workload(self, details: dict[str, Any]) -> Workload:
        if self.lab is None:
            return Workload()
        try:
            data = json.loads(Path(self.lab.loadgen_status_path).read_text())
        except (OSError, ValueError):
            return Workload()
        details["load"] = data
        if data.get("done") or time.time() - float(data.get("updated_at") or 0) > LOADGEN_FRESH_S:
            return Workload()
        return Workload(qps=data.get("qps"), error_rate=data.get("error_rate"), p99_ms=data.get("p99_ms"))
