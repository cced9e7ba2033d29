"""Runbooks for every etcd invariant: candidate causes, the evidence for and against each, and
remedies that bind member names, targets and workflows from that evidence.

What the remedies follow (the reference's failure table): a crashed member is restarted on its data
dir, a stopped one continued; a full disk, a partition or a slow disk are for a human (nothing
here frees a disk or mends a network), but leadership is moved off a slow leader first. NOSPACE is
compaction, then defragmentation one member at a time (followers first, leadership moved off the
leader before its turn), then the alarm is disarmed; if that does not bring the space back, the
data itself is too big and a human decides what to delete or whether to raise the quota. CORRUPT
is never disarmed automatically. Every runbook also knows the condition may have gone by itself
(an election that finished, a member already back): then it waits a moment and lets verification
decide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subjects.base import ActionRequest, Cause, Finding, Node, Runbook, RunbookContext, Signal
from subjects.etcd.invariants import (
    Thresholds,
    answering,
    build_invariants,
    is_voter,
    leader_name,
    member_name,
    members,
    recent_leader_changes,
)

DISK_FULL_BYTES = 1024 * 1024
ELECTION_SETTLE_S = 3.0


def signal(name: str, description: str, weight: float = 1.0):
    def wrap(fn: Callable[[RunbookContext], Finding]) -> Signal:
        return Signal(name=name, description=description, probe=fn, weight=weight)
    return wrap


# -- reading the context ----------------------------------------------------------------------------

def target_name(ctx: RunbookContext) -> str | None:
    return ctx.violation.evidence.get("member") or member_name(ctx.violation.entity)


def target_node(ctx: RunbookContext) -> Node | None:
    name = target_name(ctx)
    return ctx.observation.node(name, "member") if name else None


def healthy(n: Node) -> bool:
    return answering(n) and n.metrics.get("has_leader") == 1.0


def tried(ctx: RunbookContext, action: str, member: str | None = None) -> bool:
    def about(params: dict[str, Any]) -> bool:
        return member is None or member in (params.get("member"), params.get("target"))
    return any(a.get("name") == action and about(a.get("params") or {}) for a in ctx.previous_actions)


def can(ctx: RunbookContext, action: str) -> bool:
    return action in ctx.available_actions


def process(n: Node | None) -> str:
    return n.labels.get("process", "unknown") if n else "unknown"


def _finding(name: str, n: Node | None, present: bool | None, reading: str, value: Any = None) -> Finding:
    if n is None:
        return Finding(signal=name, present=None, reading="member not in the observation")
    return Finding(signal=name, present=present, reading=reading, value=value)


def settle(ctx: RunbookContext, seconds: float, why: str) -> list[ActionRequest]:
    if not can(ctx, "wait") or tried(ctx, "wait"):
        return []
    return [ActionRequest(name="wait", params={"seconds": seconds}, reason=why)]


# -- signals: one member ------------------------------------------------------------------------

def error_signal(name: str, kind: str, description: str) -> Signal:
    """The member does not answer, and the call failed this way (refused | timeout)."""
    @signal(name, description, weight=2.0)
    def probe(ctx: RunbookContext) -> Finding:
        n = target_node(ctx)
        seen = n.labels.get("error_kind") if n else None
        return _finding(name, n, seen == kind if n and not answering(n) else False, n.state_detail if n else "")
    return probe


def process_signal(name: str, states: tuple[str, ...], description: str, weight: float) -> Signal:
    """The lab shows the member's process in one of `states` (no lab: cannot tell)."""
    @signal(name, description, weight=weight)
    def probe(ctx: RunbookContext) -> Finding:
        n = target_node(ctx)
        p = process(n)
        return _finding(name, n, None if p == "unknown" else p in states, f"process {p}", p)
    return probe


refused = error_signal("refused", "refused", "nothing listens on the member's client port: its process is gone")
timed_out = error_signal("timed_out", "timeout", "the member accepts connections but does not answer (stopped, hung "
                                                 "or cut off)")
process_exited = process_signal("process_exited", ("stopped", "zombie"), "the lab shows the member's process has "
                                "exited", 2.0)
process_paused = process_signal("process_paused", ("paused",), "the member's process is stopped by a signal "
                                "(State T)", 3.0)
process_running = process_signal("process_running", ("alive",), "the member's process runs (it is not dead and not "
                                 "stopped)", 1.5)


@signal("disk_full", "the file system holding the member's data has (almost) no space left", weight=3.0)
def disk_full(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    free = n.metrics.get("disk_free_bytes") if n else None
    if free is None:
        return _finding("disk_full", n, None, "free space unknown (no lab)")
    return _finding("disk_full", n, free < DISK_FULL_BYTES, f"{free / 1048576:.1f} MiB free on its data disk", free)


@signal("restart_tried", "an earlier attempt restarted the member without fixing it", weight=3.0)
def restart_tried(ctx: RunbookContext) -> Finding:
    name = target_name(ctx)
    done = tried(ctx, "restart_member", name)
    return Finding(signal="restart_tried", present=done,
                   reading=f"restart_member {name} was tried before" if done else "no restart tried yet")


@signal("process_control", "something can start and signal the member's process (the lab)")
def process_control(ctx: RunbookContext) -> Finding:
    ok = can(ctx, "restart_member")
    return Finding(signal="process_control", present=ok,
                   reading="restart_member/resume_member are available (lab)" if ok else
                   "no process control here: nothing can start the member")


@signal("cut_off", "the member answers but its transport has no active peer (a partition)", weight=3.0)
def cut_off(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    active, peers = (n.metrics.get("active_peers"), n.metrics.get("peers")) if n else (None, None)
    if n is None or not answering(n) or active is None or not peers:
        return _finding("cut_off", n, None, "no peer metrics")
    return _finding("cut_off", n, active == 0, f"{active:.0f} of {peers:.0f} peers active (inactive: "
                    f"{n.labels.get('inactive_peers') or 'none'})", active)


@signal("peers_connected", "the member's transport reaches its peers", weight=2.0)
def peers_connected(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    active, peers = (n.metrics.get("active_peers"), n.metrics.get("peers")) if n else (None, None)
    if n is None or not answering(n) or active is None or not peers:
        return _finding("peers_connected", n, None, "no peer metrics")
    return _finding("peers_connected", n, active == peers, f"{active:.0f} of {peers:.0f} peers active", active)


def _slow(n: Node | None, t: Thresholds) -> bool | None:
    if n is None:
        return None
    fsync, commit = n.metrics.get("wal_fsync_p99_s"), n.metrics.get("backend_commit_p99_s")
    if fsync is None and commit is None:
        return None
    return (fsync or 0) > t.wal_fsync_p99_s or (commit or 0) > t.backend_commit_p99_s


def slow_disk_signal(t: Thresholds) -> Signal:
    @signal("slow_disk", "the member's WAL fsync or backend commit p99 is over its limit", weight=2.5)
    def probe(ctx: RunbookContext) -> Finding:
        n = target_node(ctx)
        verdict = _slow(n, t)
        reading = (f"fsync p99 {n.metrics.get('wal_fsync_p99_s', '-')} s, commit p99 "
                   f"{n.metrics.get('backend_commit_p99_s', '-')} s") if n else ""
        return _finding("slow_disk", n, verdict, reading)
    return probe


def others_slow_signal(t: Thresholds) -> Signal:
    @signal("others_slow", "the other members are slow too (the host or shared storage, not one disk)", weight=2.0)
    def probe(ctx: RunbookContext) -> Finding:
        name = target_name(ctx)
        verdicts = {n.id: _slow(n, t) for n in members(ctx.observation) if n.id != name and answering(n)}
        known = {k: v for k, v in verdicts.items() if v is not None}
        if not known:
            return Finding(signal="others_slow", present=None, reading="no latency figures for the others")
        return Finding(signal="others_slow", present=all(known.values()),
                       reading=f"slow: {sorted(k for k, v in known.items() if v) or 'none'} of {sorted(known)}")
    return probe


@signal("is_leader", "the member is the leader", weight=1.5)
def is_leader(ctx: RunbookContext) -> Finding:
    name = target_name(ctx)
    leader = leader_name(ctx.observation)
    return Finding(signal="is_leader", present=bool(leader) and leader == name, reading=f"leader is {leader or 'none'}")


@signal("catching_up", "the member restarted or applies a snapshot recently and is catching up", weight=2.0)
def catching_up(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    name = target_name(ctx)
    applying = (n.metrics.get("snapshot_apply_in_progress") or 0) > 0 if n else False
    recently_down = any(not answering(past.node(name, "member") or n) for past in ctx.history[-20:]) \
        if n and name else False
    return _finding("catching_up", n, applying or recently_down,
                    f"snapshot apply in progress: {applying}; down in the last 20 observations: {recently_down}")


@signal("leaderless_for_a_while", "the member has had no leader for longer than an election takes", weight=2.0)
def leaderless_for_a_while(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    name = target_name(ctx)
    if n is None or not answering(n) or n.metrics.get("has_leader") != 0.0:
        return _finding("leaderless_for_a_while", n, False if n else None, "it has a leader" if n else "")
    recent = [past.node(name or "", "member") for past in ctx.history[-3:]]
    without = [p for p in recent if p is not None and answering(p) and p.metrics.get("has_leader") == 0.0]
    return _finding("leaderless_for_a_while", n, len(recent) >= 2 and len(without) == len(recent),
                    f"without a leader in {len(without)} of the last {len(recent)} observations (and now)")


@signal("election_just_happened", "leadership changed in the last few seconds", weight=2.0)
def election_just_happened(ctx: RunbookContext) -> Finding:
    changes = recent_leader_changes(ctx.observation, 10.0, include_requested=True)
    return Finding(signal="election_just_happened", present=bool(changes),
                   reading=f"{len(changes)} leader change(s) in the last 10 s" + (
                       f": {changes[-1]['from']} -> {changes[-1]['to']}" if changes else ""))


# -- signals: the cluster ---------------------------------------------------------------------------

@signal("members_exited", "some voting members' processes have exited", weight=2.0)
def members_exited(ctx: RunbookContext) -> Finding:
    gone = [n.id for n in members(ctx.observation) if is_voter(n) and process(n) in ("stopped", "zombie")]
    known = [n for n in members(ctx.observation) if process(n) != "unknown"]
    if not known:
        return Finding(signal="members_exited", present=None, reading="process states unknown (no lab)")
    return Finding(signal="members_exited", present=bool(gone), reading=f"exited: {gone or 'none'}")


@signal("members_paused", "some voting members' processes are stopped (SIGSTOP)", weight=2.5)
def members_paused(ctx: RunbookContext) -> Finding:
    paused = [n.id for n in members(ctx.observation) if is_voter(n) and process(n) == "paused"]
    return Finding(signal="members_paused", present=bool(paused), reading=f"paused: {paused or 'none'}")


@signal("leaderless_but_running", "members answer but have no leader and no active peers", weight=2.5)
def leaderless_but_running(ctx: RunbookContext) -> Finding:
    cut = [n.id for n in members(ctx.observation) if answering(n) and n.metrics.get("has_leader") == 0.0
           and n.metrics.get("active_peers") == 0 and n.metrics.get("peers")]
    return Finding(signal="leaderless_but_running", present=bool(cut), reading=f"cut off: {cut or 'none'}")


@signal("nothing_answers", "no member answers at all", weight=1.5)
def nothing_answers(ctx: RunbookContext) -> Finding:
    return Finding(signal="nothing_answers", present=not ctx.observation.reachable,
                   reading=ctx.observation.error or "members answer")


@signal("nospace", "a NOSPACE alarm is raised", weight=3.0)
def nospace(ctx: RunbookContext) -> Finding:
    kinds = {a["alarm"] for a in ctx.observation.details.get("alarms") or []}
    return Finding(signal="nospace", present="NOSPACE" in kinds, reading=f"alarms: {sorted(kinds) or 'none'}")


@signal("corrupt", "a CORRUPT alarm is raised", weight=4.0)
def corrupt(ctx: RunbookContext) -> Finding:
    kinds = {a["alarm"] for a in ctx.observation.details.get("alarms") or []}
    return Finding(signal="corrupt", present="CORRUPT" in kinds, reading=f"alarms: {sorted(kinds) or 'none'}")


def _history(obs: Any) -> tuple[float, float]:
    rev = max((n.metrics.get("revision", 0) for n in members(obs) if answering(n)), default=0)
    done = max((n.metrics.get("compact_revision", -1) for n in members(obs) if answering(n)), default=-1)
    return rev, max(done, 0)


@signal("uncompacted_history", "the keyspace keeps old revisions that compaction would discard", weight=2.0)
def uncompacted_history(ctx: RunbookContext) -> Finding:
    rev, done = _history(ctx.observation)
    return Finding(signal="uncompacted_history", present=rev - done >= 100,
                   reading=f"revision {rev:.0f}, compacted up to {done:.0f}: {rev - done:.0f} revisions of history",
                   value=rev - done)


@signal("space_recovery_tried", "compaction and defragmentation were already tried for this ticket", weight=3.0)
def space_recovery_tried(ctx: RunbookContext) -> Finding:
    done = tried(ctx, "compact") or tried(ctx, "defragment")
    return Finding(signal="space_recovery_tried", present=done,
                   reading="compact/defragment tried before" if done else "not tried yet")


@signal("fewer_voters_than_expected", "the cluster has fewer voting members than it should", weight=2.5)
def fewer_voters(ctx: RunbookContext) -> Finding:
    d = ctx.observation.details
    expected = d.get("expected_members")
    voters = [n.id for n in members(ctx.observation) if is_voter(n)]
    if not expected:
        return Finding(signal="fewer_voters_than_expected", present=len(voters) < 3,
                       reading=f"{len(voters)} voting members (no expected list; 3 is the smallest fault-tolerant size)")
    missing = sorted(set(expected) - set(voters))
    return Finding(signal="fewer_voters_than_expected", present=bool(missing),
                   reading=f"voting: {voters}; expected {expected}; missing {missing or 'none'}")


@signal("learners_present", "a learner waits to be promoted", weight=2.0)
def learners_present(ctx: RunbookContext) -> Finding:
    learners = [n.id for n in members(ctx.observation) if n.labels.get("learner") == "true" and answering(n)]
    return Finding(signal="learners_present", present=bool(learners), reading=f"learners: {learners or 'none'}")


@signal("unhealthy_voters", "some voting members are down or without a leader", weight=2.0)
def unhealthy_voters(ctx: RunbookContext) -> Finding:
    bad = [n.id for n in members(ctx.observation) if is_voter(n) and not healthy(n)]
    return Finding(signal="unhealthy_voters", present=bool(bad), reading=f"unhealthy voters: {bad or 'none'}")


def evidence_signal(name: str, key: str, description: str) -> Signal:
    """Present when the violation's evidence lists something under `key`."""
    @signal(name, description, weight=3.0)
    def probe(ctx: RunbookContext) -> Finding:
        found = ctx.violation.evidence.get(key) or []
        return Finding(signal=name, present=bool(found), reading=f"{key}: {found or 'none'}")
    return probe


unstarted_member = evidence_signal("unstarted_member", "unstarted", "a member was added but never started")
expected_missing = evidence_signal("expected_missing", "missing", "a member the lab or configuration expects is not "
                                   "in the cluster")
unexpected_member = evidence_signal("unexpected_member", "extra", "the cluster has a member nobody expects")


@signal("views_differ", "members list different members (a change still spreading, or a split)", weight=2.0)
def views_differ(ctx: RunbookContext) -> Finding:
    differ = bool(ctx.violation.evidence.get("views_differ"))
    return Finding(signal="views_differ", present=differ, reading=str(ctx.violation.evidence.get("views")))


@signal("inactive_peers_seen", "some member's transport shows inactive peers (the network flaps)", weight=2.0)
def inactive_peers_seen(ctx: RunbookContext) -> Finding:
    seen = {n.id: n.labels.get("inactive_peers") for n in members(ctx.observation) if n.labels.get("inactive_peers")}
    for past in ctx.history[-30:]:
        for n in members(past):
            if n.labels.get("inactive_peers"):
                seen.setdefault(n.id, n.labels["inactive_peers"])
    return Finding(signal="inactive_peers_seen", present=bool(seen), reading=f"inactive peers: {seen or 'none'}")


# -- remedies -------------------------------------------------------------------------------------

def recovered_signal(invariants: dict[str, Any]) -> Signal:
    @signal("already_clear", "the invariant already holds again on a fresh observation", weight=5.0)
    def probe(ctx: RunbookContext) -> Finding:
        inv = invariants.get(ctx.violation.invariant)
        if inv is None or (not ctx.observation.reachable and not inv.on_unreachable):
            return Finding(signal="already_clear", present=None, reading="cannot check now")
        result = inv.evaluate(ctx.observation, ctx.history)
        if not result.evaluated(ctx.violation.entity):  # its data is missing: that is no "holds now"
            return Finding(signal="already_clear", present=None,
                           reading="cannot check now: " + "; ".join(n.reason for n in result.not_evaluated))
        still = any(v.entity == ctx.violation.entity for v in result.violations)
        return Finding(signal="already_clear", present=not still,
                       reading="still violated now" if still else "holds now")
    return probe


def remedy_settle(ctx: RunbookContext) -> list[ActionRequest]:
    return settle(ctx, 1.0, "it already holds; wait a moment and let verification confirm")


def remedy_restart(ctx: RunbookContext) -> list[ActionRequest]:
    name = target_name(ctx)
    n = target_node(ctx)
    if n is not None and answering(n):
        return remedy_settle(ctx)
    if not name or not can(ctx, "restart_member") or tried(ctx, "restart_member", name):
        return []
    force = process(n) == "alive"
    return [ActionRequest(name="restart_member", params={"member": name, "force": force},
                          reason=f"{name}'s process " + ("runs but does not answer: stop it and start it again"
                                                         if force else "is gone: start it again on its data dir "
                                                         "(it catches up from the leader)"))]


def remedy_resume(ctx: RunbookContext) -> list[ActionRequest]:
    name = target_name(ctx)
    if not name or not can(ctx, "resume_member") or tried(ctx, "resume_member", name):
        return []
    return [ActionRequest(name="resume_member", params={"member": name},
                          reason=f"{name}'s process is stopped (SIGSTOP): continue it")]


def escalate(_ctx: RunbookContext) -> list[ActionRequest]:
    return []


def remedy_restart_all(ctx: RunbookContext) -> list[ActionRequest]:
    if not can(ctx, "restart_member"):
        return []
    steps = []
    for n in members(ctx.observation):
        if is_voter(n) and not answering(n) and process(n) in ("stopped", "zombie") \
                and not tried(ctx, "restart_member", n.id):
            steps.append(ActionRequest(name="restart_member", params={"member": n.id},
                                       reason=f"{n.id}'s process is gone: start it on its data dir"))
    if steps or not ctx.observation.reachable:
        return steps  # nothing answers and nothing here can start it: a human's
    return remedy_settle(ctx)


def remedy_resume_all(ctx: RunbookContext) -> list[ActionRequest]:
    if not can(ctx, "resume_member"):
        return []
    return [ActionRequest(name="resume_member", params={"member": n.id}, reason=f"{n.id} is SIGSTOPped")
            for n in members(ctx.observation) if process(n) == "paused" and not tried(ctx, "resume_member", n.id)]


def defrag_steps(ctx: RunbookContext, names: list[str]) -> list[ActionRequest]:
    """Defragment `names` one at a time: followers first, then leadership moves to a member already
    done and the old leader takes its turn (a defragmenting member blocks; never the leader)."""
    obs = ctx.observation
    leader = leader_name(obs)
    ready = [n for n in members(obs) if healthy(n) and n.id in names]
    followers = [n.id for n in ready if n.id != leader]
    steps = [ActionRequest(name="defragment", params={"member": m}, reason=f"give {m}'s free pages back to its disk")
             for m in followers]
    if leader in names and leader in {n.id for n in ready}:
        heir = next((n.id for n in members(obs) if healthy(n) and is_voter(n) and n.id != leader), None)
        if heir is None:
            return steps  # a lone leader cannot be defragmented without blocking the cluster
        steps += [ActionRequest(name="move_leader", params={"target": heir},
                                reason=f"{leader} leads: hand leadership to {heir} so {leader} can be defragmented"),
                  ActionRequest(name="defragment", params={"member": leader},
                                reason=f"{leader}'s turn, now that it no longer leads")]
    return steps


def remedy_space(disarm: bool) -> Callable[[RunbookContext], list[ActionRequest]]:
    def remedy(ctx: RunbookContext) -> list[ActionRequest]:
        if tried(ctx, "compact") or tried(ctx, "defragment"):
            return []  # it did not bring the space back: the data itself is too big
        everyone = [n.id for n in members(ctx.observation) if answering(n)]
        if disarm:
            targets = everyone
        else:
            name = target_name(ctx)
            targets = everyone if name is None else [name] + [m for m in everyone if m != name]
        steps = [ActionRequest(name="compact", params={"keep_revisions": 0},
                               reason="discard the history that fills the database (old revisions)"),
                 *defrag_steps(ctx, targets)]
        if disarm:
            steps.append(ActionRequest(name="disarm_alarm", params={"alarm": "NOSPACE"},
                                       reason="the databases are small again: writes may resume"))
        return steps
    return remedy


def remedy_defrag_one(ctx: RunbookContext) -> list[ActionRequest]:
    name = target_name(ctx)
    if not name or tried(ctx, "defragment", name):
        return []
    return defrag_steps(ctx, [name])


def remedy_move_off(ctx: RunbookContext) -> list[ActionRequest]:
    name = target_name(ctx)
    obs = ctx.observation
    if leader_name(obs) != name or tried(ctx, "move_leader"):
        return []
    lead = obs.node(name or "", "member")
    heirs = sorted((n for n in members(obs) if healthy(n) and is_voter(n) and n.id != name),
                   key=lambda n: (n.metrics.get("wal_fsync_p99_s") or 0, -(n.metrics.get("applied") or 0)))
    if not heirs or lead is None:
        return []
    return [ActionRequest(name="move_leader", params={"target": heirs[0].id},
                          reason=f"{name}'s disk is slow and every write waits on the leader's fsync: let "
                                 f"{heirs[0].id} lead (then a human fixes or replaces {name}'s disk)")]


def remedy_move_off_slow_leader(t: Thresholds) -> Callable[[RunbookContext], list[ActionRequest]]:
    def remedy(ctx: RunbookContext) -> list[ActionRequest]:
        leader = leader_name(ctx.observation)
        lead = ctx.observation.node(leader or "", "member")
        if lead is None or not _slow(lead, t) or tried(ctx, "move_leader"):
            return []
        heirs = [n for n in members(ctx.observation) if healthy(n) and is_voter(n) and n.id != leader
                 and not _slow(n, t)]
        if not heirs:
            return []
        return [ActionRequest(name="move_leader", params={"target": heirs[0].id},
                              reason=f"the leader {leader} has a slow disk and loses leadership over and over")]
    return remedy


def remedy_wait_election(ctx: RunbookContext) -> list[ActionRequest]:
    return settle(ctx, ELECTION_SETTLE_S, "an election just happened: members converge within a few heartbeats")


def remedy_wait_catch_up(ctx: RunbookContext) -> list[ActionRequest]:
    return settle(ctx, 10.0, "the member is catching up from the leader")


def remedy_grow(ctx: RunbookContext) -> list[ActionRequest]:
    if not can(ctx, "add_member") or tried(ctx, "add_member"):
        return []
    d = ctx.observation.details
    missing = sorted(set(d.get("expected_members") or []) - {m["name"] for m in d.get("members") or []})
    name = missing[0] if missing else None
    if name is None and d.get("expected_members"):
        return []
    if not can(ctx, "restart_member"):  # only the lab starts the new member's process
        return []
    steps = [ActionRequest(name="add_member", params={"member": name, "learner": True},
                           reason="join a new member as a learner on an empty data dir (it catches up with no vote)")]
    if name:
        steps.append(ActionRequest(name="promote_learner", params={"member": name},
                                   reason=f"{name} caught up: give it its vote back"))
    return steps


def remedy_promote(ctx: RunbookContext) -> list[ActionRequest]:
    learners = [n.id for n in members(ctx.observation) if n.labels.get("learner") == "true" and healthy(n)]
    return [ActionRequest(name="promote_learner", params={"member": m}, reason=f"{m} runs and follows the leader")
            for m in learners if not tried(ctx, "promote_learner", m)]


def remedy_remove_unstarted(ctx: RunbookContext) -> list[ActionRequest]:
    ids = ctx.violation.evidence.get("unstarted") or []
    return [ActionRequest(name="remove_member", params={"member": i},
                          reason=f"{i} was added but never started: it only lowers the cluster's tolerance")
            for i in ids if not tried(ctx, "remove_member", i)]


def remedy_restore_missing(ctx: RunbookContext) -> list[ActionRequest]:
    return remedy_grow(ctx)


# -- the runbooks -------------------------------------------------------------------------------

def build_runbooks(t: Thresholds) -> dict[str, Runbook]:
    invariants = {i.name: i for i in build_invariants(t)}
    clear = recovered_signal(invariants)
    slow = slow_disk_signal(t)
    others_slow = others_slow_signal(t)

    recovered = Cause(
        "recovered", "It already recovered",
        "A fresh observation finds the invariant holding again (a member back, an election over).",
        supports=(clear,), remedy=remedy_settle, remedy_text="nothing to do: verification confirms",
        expected_outcome="verification finds the invariant holding", prior=0.0)

    crashed = Cause(
        "process_crashed", "The member's process is dead",
        "Nothing listens on its client port: it crashed or was killed (SIGKILL, OOM). Its data dir is intact, "
        "so a start on it rejoins the cluster and catches up from the leader in well under a second.",
        supports=(refused, process_exited, process_control), contradicts=(disk_full, restart_tried, process_paused),
        remedy=remedy_restart, remedy_text="restart_member on its data dir; without process control a human starts it",
        expected_outcome="the member answers, follows the leader and is caught up", prior=0.5,
        risks="none beyond a start: the member rejoins with its own data")
    paused = Cause(
        "process_paused", "The member's process is stopped (SIGSTOP)",
        "It accepts connections (the kernel does) but never answers; /proc shows State T.",
        supports=(process_paused, timed_out), contradicts=(refused,), remedy=remedy_resume,
        remedy_text="resume_member (SIGCONT)", expected_outcome="it answers and catches up at once", prior=0.4)
    full = Cause(
        "disk_full", "The member's disk is full",
        "A backend commit failed with 'no space left on device' and etcd exited. Starting it again on the same "
        "disk fails the same way.",
        supports=(disk_full, process_exited), contradicts=(process_paused,), remedy=escalate,
        remedy_text="a human frees space on the member's disk (or moves its data dir to a bigger one), then "
                    "restart_member; replace_member puts it on a new disk instead", prior=0.4)
    crash_loop = Cause(
        "crash_loop", "The member dies again after a restart",
        "A restart was tried and it is down again: its data, disk or configuration keeps it from running.",
        supports=(restart_tried, process_exited), remedy=escalate,
        remedy_text="a human reads its log (RUN_DIR/logs/<member>.log in the lab); replace_member (destructive) "
                    "rebuilds it from the others", prior=0.3)
    hung = Cause(
        "process_hung", "The member's process runs but does not answer",
        "Its process is alive and not stopped, yet status calls time out: overloaded, stuck on I/O, or cut off "
        "from the operator.", supports=(timed_out, process_running, process_control),
        contradicts=(process_paused, refused, restart_tried), remedy=remedy_restart,
        remedy_text="restart it (stop, then start on its data dir)", expected_outcome="a fresh process answers",
        prior=0.3, risks="in-flight requests on it fail")
    operator_path = Cause(
        "operator_network", "The operator cannot reach the member, but it may well serve",
        "Without process information, a timeout may be the network between the operator and the member.",
        supports=(timed_out,), contradicts=(process_paused, process_exited, process_running), remedy=escalate,
        remedy_text="check the network path from the operator to the member", prior=0.15)

    partition = Cause(
        "partition", "The member is cut off from its peers (network partition)",
        "It runs and answers clients, but its raft transport has no active peer, so it has no leader. With "
        "--pre-vote it rejoins without disturbing the majority once the network heals.",
        supports=(cut_off, leaderless_for_a_while, process_running), contradicts=(slow,), remedy=escalate,
        remedy_text="a human restores the network between the member and its peers; if it stays cut off, "
                    "replace_member elsewhere", prior=0.5)
    lagging = Cause(
        "slow_member", "The member is too slow to keep up with its leader",
        "Its disk is slow, so it misses heartbeats and drops out of the leader's view now and then.",
        supports=(slow,), contradicts=(cut_off,), remedy=escalate,
        remedy_text="a human fixes or replaces the member's disk", prior=0.3)
    election = Cause(
        "election", "An election is in progress",
        "Leadership just changed; members converge within a few heartbeats.", supports=(election_just_happened,),
        contradicts=(cut_off, leaderless_for_a_while), remedy=remedy_wait_election, remedy_text="wait a few seconds",
        prior=0.3)

    majority_dead = Cause(
        "majority_crashed", "Voting members crashed: too few are left for a quorum",
        "Their processes exited; the survivors have no leader and refuse writes (they time out after 7 s).",
        supports=(members_exited, process_control), contradicts=(members_paused, leaderless_but_running),
        remedy=remedy_restart_all, remedy_text="restart every exited member on its data dir",
        expected_outcome="a leader is elected as soon as a majority runs", prior=0.5)
    majority_paused = Cause(
        "majority_paused", "Voting members are stopped (SIGSTOP)", "", supports=(members_paused,),
        remedy=remedy_resume_all, remedy_text="resume them", prior=0.4)
    majority_cut = Cause(
        "majority_partitioned", "Members run but cannot reach each other",
        "They answer clients but their transports have no active peers.", supports=(leaderless_but_running,),
        contradicts=(members_exited, members_paused), remedy=escalate,
        remedy_text="a human restores the network between the members", prior=0.4)
    all_gone = Cause(
        "cluster_down", "No member answers", "Every member is down or out of the operator's reach.",
        supports=(nothing_answers, members_exited), remedy=remedy_restart_all,
        remedy_text="restart the members (lab); otherwise a human must", prior=0.4)

    one_down = Cause(
        "voter_unhealthy", "A voting member is down or has no leader",
        "The cluster still has quorum but would lose it with one more failure.", supports=(unhealthy_voters,),
        contradicts=(fewer_voters,), remedy=remedy_restart_all,
        remedy_text="bring the member back (see its own ticket)", prior=0.4)
    too_few = Cause(
        "too_few_members", "The cluster has fewer voting members than it should",
        "A member was removed and not replaced; with fewer than 3 voters one failure loses quorum.",
        supports=(fewer_voters,), contradicts=(learners_present,), remedy=remedy_grow,
        remedy_text="add_member as a learner, then promote_learner", risks="a membership change: it goes through "
        "raft and etcd refuses it until every member has been connected for 5 s", prior=0.4)
    learner_wait = Cause(
        "learner_unpromoted", "A learner is not promoted", "It replicates but has no vote.",
        supports=(learners_present,), remedy=remedy_promote, remedy_text="promote_learner", prior=0.3)

    no_space = Cause(
        "nospace_history", "The backend quota is exhausted by keyspace history",
        "Without automatic compaction every revision of every key stays in the database. A rewritten key "
        "keeps all its old values, so the file grows until dbSize reaches --quota-backend-bytes, a member raises "
        "NOSPACE, and the whole cluster refuses writes (429) until the alarm is disarmed.",
        supports=(nospace, uncompacted_history), contradicts=(space_recovery_tried, corrupt),
        remedy=remedy_space(disarm=True),
        remedy_text="compact to the current revision, defragment each member (followers first, leadership moved "
                    "off the leader before its turn), then disarm NOSPACE",
        expected_outcome="the alarm is gone, dbSize far below the quota, a put succeeds",
        risks="compaction discards the keyspace history (watchers and reads of old revisions get 'compacted'); "
              "each defragmentation blocks its member for a moment", prior=0.5)
    live_data = Cause(
        "nospace_live_data", "The live data itself fills the quota",
        "Compaction and defragmentation did not bring the database under the quota (or there is little history "
        "to discard): the current keys are simply too big.",
        supports=(nospace, space_recovery_tried), contradicts=(corrupt,), remedy=escalate,
        remedy_text="a human deletes data (what fills it?) or raises --quota-backend-bytes (a restart of every "
                    "member), then disarms NOSPACE", prior=0.3)
    corrupted = Cause(
        "corrupt", "A member's data is corrupt", "The corruption check found members whose data disagree.",
        supports=(corrupt,), remedy=escalate,
        remedy_text="never disarmed automatically: a human finds the bad member and replaces it (replace_member) "
                    "or restores from a backup", prior=0.4)

    quota_history = Cause(
        "quota_history", "History fills the database toward the quota",
        "Old revisions were never compacted; compaction plus defragmentation gives the space back.",
        supports=(uncompacted_history,), contradicts=(space_recovery_tried,), remedy=remedy_space(disarm=False),
        remedy_text="compact, then defragment each member (never the leader: move leadership first)",
        expected_outcome="dbSize well below the quota", risks="compaction discards history", prior=0.5)
    quota_live = Cause(
        "quota_live_data", "Live data fills the database toward the quota", "",
        supports=(space_recovery_tried,), contradicts=(uncompacted_history,), remedy=escalate,
        remedy_text="a human deletes data or raises the quota before NOSPACE stops all writes", prior=0.3)

    fragmented = Cause(
        "fragmented", "Free pages left behind by compaction and deletes",
        "bbolt never shrinks its file; only a defragmentation rewrites it.", supports=(), remedy=remedy_defrag_one,
        remedy_text="defragment the member (move leadership off it first if it leads)",
        expected_outcome="dbSize close to dbSizeInUse", risks="blocks that member for the length of the "
        "defragmentation", prior=0.5)

    slow_apply = Cause(
        "slow_disk", "The member's disk is slow", "Every entry waits on its fsync, so it falls behind.",
        supports=(slow,), contradicts=(catching_up,), remedy=escalate,
        remedy_text="a human fixes or replaces the disk (replace_member onto another)", prior=0.4)
    catch_up = Cause(
        "catching_up", "The member is catching up after a restart", "It was down and replays the leader's log "
        "(or a snapshot).", supports=(catching_up,), contradicts=(slow,), remedy=remedy_wait_catch_up,
        remedy_text="wait for it to catch up", prior=0.4)

    slow_leader = Cause(
        "slow_leader_disk", "The leader's disk is slow",
        "A leader stuck in fsync misses its heartbeats; followers elect another; the cycle repeats.",
        supports=(slow,), contradicts=(inactive_peers_seen,), remedy=remedy_move_off_slow_leader(t),
        remedy_text="move leadership to a member with a fast disk; a human fixes the slow one", prior=0.4)
    flapping = Cause(
        "network_flaps", "The network between members flaps",
        "Members lose their peers now and then (partitions, packet loss); each time the majority re-elects.",
        supports=(inactive_peers_seen,), remedy=escalate,
        remedy_text="a human looks at the network; keep --pre-vote on so rejoins do not disrupt", prior=0.35)
    churn_other = Cause(
        "restarts_or_load", "Members restart or starve for CPU",
        "Without slow disks or network trouble, repeated restarts or CPU starvation cause the elections.",
        supports=(), contradicts=(slow, inactive_peers_seen), remedy=escalate,
        remedy_text="a human checks member restarts and CPU; tune --heartbeat-interval/--election-timeout",
        prior=0.2)

    slow_own = Cause(
        "slow_disk", "This member's disk is slow",
        "Its fsync or commit latency is far above the others': its disk (or a process holding it) is the cause.",
        supports=(slow, is_leader), contradicts=(others_slow,), remedy=remedy_move_off,
        remedy_text="if it leads, move leadership off it (every write waits on the leader's fsync); then a human "
                    "fixes or replaces its disk (replace_member)", expected_outcome="write latency back to normal "
        "(the member itself stays slow until its disk is fixed)", prior=0.5)
    slow_follower = Cause(
        "slow_follower_disk", "A follower's disk is slow",
        "Clients barely notice (the majority commits without it), but it falls behind.",
        supports=(slow,), contradicts=(is_leader, others_slow), remedy=escalate,
        remedy_text="a human fixes or replaces its disk (replace_member)", prior=0.45)
    slow_host = Cause(
        "host_slow", "Every member is slow: the host or shared storage",
        "", supports=(others_slow,), remedy=escalate,
        remedy_text="a human looks at the host (I/O load, storage)", prior=0.3)

    unstarted = Cause(
        "unstarted_member", "A member was added and never started", "It counts toward the quorum without voting.",
        supports=(unstarted_member,), remedy=remedy_remove_unstarted, remedy_text="remove it", prior=0.4)
    unpromoted = Cause(
        "learner_unpromoted", "A learner was never promoted", "", supports=(learners_present,),
        remedy=remedy_promote, remedy_text="promote it once it follows the leader", prior=0.4)
    missing = Cause(
        "member_missing", "An expected member is not in the cluster",
        "It was removed (or its replacement never finished).", supports=(expected_missing,),
        remedy=remedy_restore_missing, remedy_text="add it back as a learner on an empty data dir, then promote it",
        risks="a membership change", prior=0.4)
    stranger = Cause(
        "unexpected_member", "The cluster has a member nobody expects", "", supports=(unexpected_member,),
        remedy=escalate, remedy_text="a human decides whether it belongs (remove_member if not)", prior=0.3)
    spreading = Cause(
        "change_spreading", "A membership change is still spreading", "", supports=(views_differ,),
        remedy=remedy_wait_election, remedy_text="wait a moment", prior=0.2)

    def book(invariant: str, summary: str, *causes: Cause) -> Runbook:
        return Runbook(invariant, summary, (*causes, recovered))

    return {
        "quorum_available": book("quorum_available", "The cluster has no leader a majority agrees on",
                                 majority_dead, majority_paused, majority_cut, all_gone),
        "member_reachable": book("member_reachable", "A member does not answer",
                                 crashed, paused, full, crash_loop, hung, operator_path),
        "fault_tolerance": book("fault_tolerance", "The cluster would not survive one more failure",
                                one_down, too_few, learner_wait),
        "member_has_leader": book("member_has_leader", "A member has no leader", partition, lagging, election),
        "leader_agreement": book("leader_agreement", "Members disagree on the leader or term", election, partition),
        "no_alarms": book("no_alarms", "An alarm is raised", no_space, live_data, corrupted),
        "db_quota_headroom": book("db_quota_headroom", "A database approaches its quota", quota_history, quota_live),
        "db_fragmentation": book("db_fragmentation", "A database file is mostly free pages", fragmented),
        "apply_lag": book("apply_lag", "A member lags behind the leader", slow_apply, catch_up),
        "leader_stability": book("leader_stability", "Leadership changes too often", slow_leader, flapping,
                                 churn_other),
        "wal_fsync_latency": book("wal_fsync_latency", "WAL fsync is slow", slow_own, slow_follower, slow_host),
        "backend_commit_latency": book("backend_commit_latency", "Backend commits are slow", slow_own, slow_follower,
                                       slow_host),
        "membership_consistent": book("membership_consistent", "Membership is not as expected",
                                      unstarted, unpromoted, missing, stranger, spreading),
    }
