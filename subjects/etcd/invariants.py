"""What must hold in an etcd cluster, each check over one observation (plus recent history).

Entities: ``member:<name>`` for a member (its name, or its hex ID while it has none), ``cluster``
for what only the whole shows. One fault should give one clear ticket, so the symptoms of a
member's fault are inhibited while the fault itself fires: a dead member takes the cluster's
fault tolerance with it (``fault_tolerance`` waits while ``member_reachable`` fires), an alarm
explains a full quota (``db_quota_headroom`` waits for ``no_alarms``), lost quorum explains
members without a leader.

Missing data is never "all clear": a member that answers but whose metrics page could not be read,
or lacks the family a check needs, is not evaluated by that check (`NotEvaluated` on source
``metrics:member:<name>``), so its tickets neither open nor resolve, and data that stays missing is
a ticket of its own. A member that does not answer is not evaluated by them either (a fsync or
quota ticket of a member that died must not resolve as if it had healed); its `member_reachable`
ticket covers the gap, so no `metrics_missing` opens for it. The checks that read only the status
call (quorum, leader, alarms, apply lag, fragmentation, membership) judge without metrics.

Graces come in two profiles: ``lab`` (short: faults in the local lab are seconds long) and
``production`` (the reference's longer ones); each can be set per invariant (`graces`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from subjects.base import (
    CheckResult,
    History,
    Invariant,
    Node,
    NodeState,
    NotEvaluated,
    Observation,
    Severity,
    Violation,
)
from subjects.etcd.observe import COMMIT, FSYNC, QUOTA

GRACES: dict[str, dict[str, float]] = {
    # member_reachable: a refused or unanswered status call on two ticks in a row; 0.5 s in the lab
    # so a leader kill has its ticket within 3 s (the reference's 3 s would make it 4-5 s).
    "lab": {"quorum_available": 3, "member_reachable": 0.5, "fault_tolerance": 10, "member_has_leader": 3,
            "leader_agreement": 3, "no_alarms": 0, "db_quota_headroom": 10, "db_fragmentation": 30,
            "apply_lag": 10, "leader_stability": 0, "wal_fsync_latency": 30, "backend_commit_latency": 30,
            "membership_consistent": 30},
    "production": {"quorum_available": 10, "member_reachable": 30, "fault_tolerance": 60, "member_has_leader": 10,
                   "leader_agreement": 10, "no_alarms": 0, "db_quota_headroom": 300, "db_fragmentation": 3600,
                   "apply_lag": 60, "leader_stability": 0, "wal_fsync_latency": 600, "backend_commit_latency": 600,
                   "membership_consistent": 300},
}
NAMES = tuple(GRACES["lab"])


class Thresholds(BaseModel):
    profile: Literal["lab", "production"] = "production"
    quota_warning: float = Field(0.8, gt=0, le=1)  # dbSize / quota
    quota_critical: float = Field(0.95, gt=0, le=1)
    fragmentation_ratio: float = Field(0.5, gt=0, le=1)  # in use / size below this is fragmented
    fragmentation_floor_bytes: int | None = Field(None, ge=0)  # None: 1 MiB (lab), 100 MiB (production)
    apply_lag_entries: int = Field(1000, ge=1)
    leader_changes_max: int = Field(3, ge=0)
    leader_window_s: float | None = Field(None, gt=0)  # None: 5 min (lab), 15 min (production)
    wal_fsync_p99_s: float = Field(0.5, gt=0)
    backend_commit_p99_s: float = Field(0.25, gt=0)
    graces: dict[str, float] = Field(default_factory=dict)

    def grace(self, name: str) -> float:
        return self.graces.get(name, GRACES[self.profile][name])

    def fragmentation_floor(self) -> int:
        if self.fragmentation_floor_bytes is not None:
            return self.fragmentation_floor_bytes
        return (1 if self.profile == "lab" else 100) * 1024 * 1024

    def leader_window(self) -> float:
        return self.leader_window_s or (300.0 if self.profile == "lab" else 900.0)


# -- reading an observation ----------------------------------------------------------------------

def members(obs: Observation) -> list[Node]:
    return [n for n in obs.nodes if n.kind == "member"]


def answering(n: Node) -> bool:
    return n.metrics.get("probe_ok") == 1.0


def is_voter(n: Node) -> bool:
    return n.labels.get("learner") != "true" and n.state != NodeState.removed and n.labels.get("started") != "false"


def leader_name(obs: Observation) -> str | None:
    """The leader a majority of voting members agrees on (None: no quorum behind one)."""
    return obs.details.get("leader")


def leader_node(obs: Observation) -> Node | None:
    name = leader_name(obs)
    return obs.node(name, "member") if name else None


def member_name(entity: str) -> str | None:
    return entity.split(":", 1)[1] if entity.startswith("member:") else None


def recent_leader_changes(obs: Observation, window_s: float, include_requested: bool = False) -> list[dict[str, Any]]:
    newest = obs.monotonic or max((c["monotonic"] for c in obs.details.get("leader_changes") or []), default=0.0)
    return [c for c in obs.details.get("leader_changes") or []
            if c["monotonic"] >= newest - window_s and (include_requested or not c.get("requested"))]


def was_leader(history: History, name: str) -> bool:
    """Whether the member led when it last answered."""
    for past in reversed(history):
        n = past.node(name, "member")
        if n is not None and answering(n):
            return n.role == "leader"
    return False


def unread(n: Node, family: str) -> NotEvaluated | None:
    """Why member `n`'s metric `family` is unknown this tick (None: it was read, or the member is not
    expected to serve yet). A member that does not answer has no metrics: not "all clear" either."""
    source = f"metrics:member:{n.id}"
    if n.state == NodeState.down:
        return NotEvaluated(reason=f"member {n.id} does not answer", entity=n.entity, source=source,
                            explained_by="member_reachable")
    error = n.labels.get("metrics_error")
    if not answering(n) or (not error and family not in n.labels.get("metrics_absent", "").split(",")):
        return None
    why = f"its metrics could not be read: {error}" if error else f"its /metrics has no {family}"
    return NotEvaluated(reason=f"member {n.id}: {why}", entity=n.entity, source=source)


def judged(found: list[Violation], missing: list[NotEvaluated]) -> list[Violation] | CheckResult:
    return CheckResult(violations=found, not_evaluated=missing) if missing else found


def _member_facts(n: Node) -> dict[str, Any]:
    return {"member": n.id, "member_id": n.labels.get("member_id"), "client_url": n.labels.get("client_url"),
            "process": n.labels.get("process"), "role": n.role}


# -- checks ------------------------------------------------------------------------------------------

def check_quorum(obs: Observation, _h: History) -> list[Violation]:
    if not obs.reachable:
        return [Violation(invariant="quorum_available", entity="cluster", severity=Severity.critical,
                          summary=f"no etcd member answers: {obs.error}",
                          evidence={"answering": 0, "error": obs.error, "errors": obs.details.get("errors") or {},
                                    "processes": {n.id: n.labels.get("process") for n in obs.nodes}})]
    if leader_name(obs):
        return []
    voters = [n for n in members(obs) if is_voter(n)]
    down = [n.id for n in voters if not answering(n)]
    leaderless = [n.id for n in voters if answering(n) and n.metrics.get("has_leader") != 1.0]
    d = obs.details
    return [Violation(
        invariant="quorum_available", entity="cluster", severity=Severity.critical,
        summary=f"no majority of the {len(voters)} voting members agrees on a leader ({len(down)} down, "
                f"{len(leaderless)} without a leader): writes and linearizable reads fail",
        evidence={"voters": len(voters), "quorum": d.get("quorum"), "down": down, "without_leader": leaderless,
                  "leaders_seen": d.get("leaders_seen"), "processes": {n.id: n.labels.get("process") for n in voters},
                  "errors": {n.id: n.labels.get("errors") or n.state_detail for n in voters}})]


def check_member_reachable(obs: Observation, history: History) -> list[Violation]:
    out = []
    for n in members(obs):
        if n.state != NodeState.down:
            continue
        out.append(Violation(
            invariant="member_reachable", entity=n.entity, severity=Severity.critical,
            summary=f"member {n.id} does not answer: {n.state_detail.removeprefix('not answering: ')}",
            evidence={**_member_facts(n), "detail": n.state_detail, "error_kind": n.labels.get("error_kind"),
                      "was_leader": was_leader(history, n.id), "leader_now": leader_name(obs),
                      "peer_url": n.labels.get("peer_url")}))
    return out


def check_fault_tolerance(obs: Observation, _h: History) -> list[Violation]:
    d = obs.details
    voters, quorum, healthy = d.get("voters"), d.get("quorum"), d.get("healthy_voters")
    if not voters or quorum is None or healthy is None or healthy - quorum >= 1:
        return []
    unhealthy = [n.id for n in members(obs) if is_voter(n) and not (answering(n) and n.metrics.get("has_leader") == 1)]
    return [Violation(
        invariant="fault_tolerance", entity="cluster", severity=Severity.critical,
        summary=f"{healthy} of {voters} voting members are healthy and {quorum} are needed: the cluster survives no "
                "further failure",
        evidence={"voters": voters, "quorum": quorum, "healthy_voters": healthy, "unhealthy": unhealthy,
                  "tolerates": healthy - quorum, "learners": [n.id for n in members(obs)
                                                              if n.labels.get("learner") == "true"]})]


def check_member_has_leader(obs: Observation, _h: History) -> list[Violation]:
    agreed = leader_name(obs)
    if not agreed:
        return []  # quorum_available speaks for the whole cluster then
    out = []
    for n in members(obs):
        if not answering(n) or n.metrics.get("has_leader") == 1.0:
            continue
        out.append(Violation(
            invariant="member_has_leader", entity=n.entity, severity=Severity.critical,
            summary=f"member {n.id} has no leader while the majority follows {agreed}: it is cut off from its peers",
            evidence={**_member_facts(n), "errors": n.labels.get("errors"), "leader_now": agreed,
                      "active_peers": n.metrics.get("active_peers"), "peers": n.metrics.get("peers"),
                      "inactive_peers": n.labels.get("inactive_peers"), "raft_term": n.metrics.get("raft_term")}))
    return out


def check_leader_agreement(obs: Observation, _h: History) -> list[Violation]:
    views = {n.id: (n.labels.get("leader"), n.metrics.get("raft_term")) for n in members(obs)
             if answering(n) and n.metrics.get("has_leader") == 1.0}
    leaders = {v[0] for v in views.values()}
    terms = {v[1] for v in views.values()}
    if len(leaders) <= 1 and len(terms) <= 1:
        return []
    return [Violation(
        invariant="leader_agreement", entity="cluster", severity=Severity.warning,
        summary="members disagree on the " + " and ".join(
            w for w, bad in (("leader", len(leaders) > 1), ("term", len(terms) > 1)) if bad) + ": "
        + ", ".join(f"{m} -> {lead} (term {t:.0f})" for m, (lead, t) in sorted(views.items())),
        evidence={"views": {m: {"leader": lead, "term": t} for m, (lead, t) in views.items()},
                  "majority_leader": leader_name(obs)})]


def check_no_alarms(obs: Observation, _h: History) -> list[Violation]:
    alarms = obs.details.get("alarms") or []
    if not alarms:
        return []
    kinds = sorted({a["alarm"] for a in alarms})
    raised_by = sorted({a["member"] for a in alarms})
    sizes = {n.id: {"db_size": n.metrics.get("db_size"), "db_in_use": n.metrics.get("db_in_use"),
                    "quota": n.metrics.get("quota_bytes")} for n in members(obs) if answering(n)}
    what = {"NOSPACE": "the cluster refuses every write until it is disarmed",
            "CORRUPT": "a member's data disagrees with the others"}
    return [Violation(
        invariant="no_alarms", entity="cluster", severity=Severity.critical,
        summary=f"alarm {', '.join(kinds)} raised by {', '.join(raised_by)}: "
                + "; ".join(what.get(k, "the cluster is degraded") for k in kinds),
        evidence={"alarms": alarms, "kinds": kinds, "raised_by": raised_by, "sizes": sizes,
                  "revision": max((n.metrics.get("revision", 0) for n in members(obs)), default=0),
                  "compact_revision": max((n.metrics.get("compact_revision", -1) for n in members(obs)),
                                          default=-1)})]


def check_quota(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation] | CheckResult:
        out: list[Violation] = []
        missing = [m for n in members(obs) if (m := unread(n, QUOTA))]
        for n in members(obs):
            quota, size = n.metrics.get("quota_bytes"), n.metrics.get("db_size")
            if not answering(n) or not quota or size is None:
                continue
            ratio = size / quota
            if ratio <= t.quota_warning:
                continue
            sev = Severity.critical if ratio > t.quota_critical else Severity.warning
            out.append(Violation(
                invariant="db_quota_headroom", entity=n.entity, severity=sev,
                summary=f"member {n.id}'s database is {ratio:.0%} of its {quota / 1048576:.0f} MiB quota "
                        f"(in use {n.metrics.get('db_in_use', 0) / 1048576:.1f} MiB): NOSPACE at 100%",
                evidence={**_member_facts(n), "db_size": size, "db_in_use": n.metrics.get("db_in_use"),
                          "quota": quota, "ratio": round(ratio, 3), "revision": n.metrics.get("revision"),
                          "compact_revision": n.metrics.get("compact_revision"),
                          "keys": n.metrics.get("keys_total")}))
        return judged(out, missing)
    return check


def check_fragmentation(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        out = []
        floor = t.fragmentation_floor()
        for n in members(obs):
            size, used = n.metrics.get("db_size"), n.metrics.get("db_in_use")
            if not answering(n) or not size or used is None or size <= floor or used / size >= t.fragmentation_ratio:
                continue
            out.append(Violation(
                invariant="db_fragmentation", entity=n.entity, severity=Severity.info,
                summary=f"member {n.id}'s database file is {size / 1048576:.1f} MiB but only "
                        f"{used / 1048576:.1f} MiB ({used / size:.0%}) is in use",
                evidence={**_member_facts(n), "db_size": size, "db_in_use": used, "ratio": round(used / size, 3),
                          "is_leader": n.role == "leader"}))
        return out
    return check


def check_apply_lag(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        lead = leader_node(obs)
        if lead is None or not answering(lead):
            return []
        out = []
        for n in members(obs):
            if n is lead or not answering(n):
                continue
            lag = lead.metrics.get("raft_index", 0) - n.metrics.get("applied", 0)
            if lag <= t.apply_lag_entries:
                continue
            out.append(Violation(
                invariant="apply_lag", entity=n.entity, severity=Severity.warning,
                summary=f"member {n.id} has applied {lag:.0f} entries fewer than leader {lead.id} has",
                evidence={**_member_facts(n), "lag": lag, "leader": lead.id, "wal_fsync_p99_s":
                          n.metrics.get("wal_fsync_p99_s"), "snapshot_apply_in_progress":
                          n.metrics.get("snapshot_apply_in_progress"), "slow_apply_total":
                          n.metrics.get("slow_apply_total")}))
        return out
    return check


def check_leader_stability(t: Thresholds):
    def check(obs: Observation, _h: History) -> list[Violation]:
        window = t.leader_window()
        changes = recent_leader_changes(obs, window)
        if len(changes) <= t.leader_changes_max:
            return []
        slow = {n.id: n.metrics["wal_fsync_p99_s"] for n in members(obs) if "wal_fsync_p99_s" in n.metrics}
        return [Violation(
            invariant="leader_stability", entity="cluster", severity=Severity.warning,
            summary=f"{len(changes)} leader changes in the last {window / 60:.0f} min (at most "
                    f"{t.leader_changes_max}): " + ", ".join(f"{c['from']}->{c['to']}" for c in changes[-5:]),
            evidence={"changes": [{k: v for k, v in c.items() if k != "monotonic"} for c in changes],
                      "window_s": window, "wal_fsync_p99_s": slow, "leader": leader_name(obs)})]
    return check


def check_latency(name: str, metric: str, family: str, what: str, threshold: float):
    def check(obs: Observation, _h: History) -> list[Violation] | CheckResult:
        out: list[Violation] = []
        # Too few fsyncs/commits in the window for a p99 is a quiet member (evaluated, nothing slow);
        # a histogram that could not be read is unknown.
        missing = [m for n in members(obs) if (m := unread(n, family))]
        for n in members(obs):
            p99 = n.metrics.get(metric)
            if not answering(n) or p99 is None or p99 <= threshold:
                continue
            out.append(Violation(
                invariant=name, entity=n.entity, severity=Severity.warning,
                summary=f"member {n.id}'s {what} p99 is {p99 * 1000:.0f} ms (limit {threshold * 1000:.0f} ms)",
                evidence={**_member_facts(n), "p99_s": p99, "threshold_s": threshold, "is_leader": n.role == "leader",
                          "samples": n.metrics.get(metric.replace("p99_s", "count")),
                          "others": {x.id: x.metrics.get(metric) for x in members(obs) if x is not n},
                          "heartbeat_send_failures_total": n.metrics.get("heartbeat_send_failures_total"),
                          "slow_apply_total": n.metrics.get("slow_apply_total")}))
        return judged(out, missing)
    return check


def check_membership(obs: Observation, _h: History) -> list[Violation]:
    d = obs.details
    listed = d.get("members") or []
    problems: list[str] = []
    unstarted = [m["id"] for m in listed if not m["started"]]
    learners = [m["name"] or m["id"] for m in listed if m["learner"] and m["started"]]
    names = {m["name"] for m in listed if m["name"]}
    expected = d.get("expected_members")
    missing = sorted(set(expected) - names) if expected else []
    extra = sorted(names - set(expected)) if expected else []
    views = d.get("membership_views") or {}
    differing = len({tuple(v) for v in views.values()}) > 1
    if unstarted:
        problems.append(f"added but never started: {', '.join(unstarted)}")
    if learners:
        problems.append(f"learner not promoted: {', '.join(learners)}")
    if missing:
        problems.append(f"expected but not members: {', '.join(missing)}")
    if extra:
        problems.append(f"members nobody expects: {', '.join(extra)}")
    if differing:
        problems.append("members list different members: " + "; ".join(f"{k}: {v}" for k, v in sorted(views.items())))
    if not problems:
        return []
    return [Violation(
        invariant="membership_consistent", entity="cluster", severity=Severity.warning,
        summary="membership is not as expected: " + "; ".join(problems),
        evidence={"unstarted": unstarted, "learners": learners, "missing": missing, "extra": extra,
                  "views_differ": differing, "views": views, "members": listed, "expected": expected})]


def build_invariants(t: Thresholds) -> list[Invariant]:
    g = t.grace
    return [
        Invariant("quorum_available", "a majority of the voting members agrees on one leader", Severity.critical,
                  "cluster", check_quorum, g("quorum_available"), on_unreachable=True),
        Invariant("member_reachable", "every member answers its status call within the probe timeout",
                  Severity.critical, "member", check_member_reachable, g("member_reachable")),
        Invariant("fault_tolerance", "the cluster can lose one more voting member and keep quorum",
                  Severity.critical, "cluster", check_fault_tolerance, g("fault_tolerance"),
                  inhibited_by_any=("member_reachable", "member_has_leader", "quorum_available")),
        Invariant("member_has_leader", "every answering member follows the leader the majority follows",
                  Severity.critical, "member", check_member_has_leader, g("member_has_leader"),
                  inhibited_by_any=("quorum_available",)),
        Invariant("leader_agreement", "members that have a leader agree on it and on the term", Severity.warning,
                  "cluster", check_leader_agreement, g("leader_agreement"),
                  inhibited_by_any=("quorum_available", "member_has_leader")),
        Invariant("no_alarms", "no alarm (NOSPACE, CORRUPT) is raised", Severity.critical, "cluster",
                  check_no_alarms, g("no_alarms")),
        Invariant("db_quota_headroom", f"every member's database stays under {t.quota_warning:.0%} of its quota",
                  Severity.warning, "member", check_quota(t), g("db_quota_headroom"), inhibited_by_any=("no_alarms",)),
        Invariant("db_fragmentation", f"database files hold at least {t.fragmentation_ratio:.0%} live data",
                  Severity.info, "member", check_fragmentation(t), g("db_fragmentation"),
                  inhibited_by_any=("no_alarms", "db_quota_headroom")),
        Invariant("apply_lag", f"every member has applied within {t.apply_lag_entries} entries of the leader's log",
                  Severity.warning, "member", check_apply_lag(t), g("apply_lag"),
                  inhibited_by=("member_has_leader",), inhibited_by_any=("quorum_available",)),
        Invariant("leader_stability", f"at most {t.leader_changes_max} leader changes in "
                  f"{t.leader_window() / 60:.0f} min", Severity.warning, "cluster", check_leader_stability(t),
                  g("leader_stability")),
        Invariant("wal_fsync_latency", f"WAL fsync p99 stays under {t.wal_fsync_p99_s * 1000:.0f} ms",
                  Severity.warning, "member",
                  check_latency("wal_fsync_latency", "wal_fsync_p99_s", FSYNC, "WAL fsync", t.wal_fsync_p99_s),
                  g("wal_fsync_latency")),
        Invariant("backend_commit_latency", f"backend commit p99 stays under {t.backend_commit_p99_s * 1000:.0f} ms",
                  Severity.warning, "member",
                  check_latency("backend_commit_latency", "backend_commit_p99_s", COMMIT, "backend commit",
                                t.backend_commit_p99_s), g("backend_commit_latency")),
        Invariant("membership_consistent", "the members are the expected ones, all started, none left a learner, "
                  "and they all list the same members", Severity.warning, "cluster", check_membership,
                  g("membership_consistent")),
    ]
