"""What the operator can do to an etcd cluster: through the JSON gateway, and through the lab for
member processes.

Every action checks its target against a fresh observation (the engine runs `precheck` right
before executing), makes the change, then polls the members until they confirm it, and says why
when they do not. Reconfiguration retries etcd's own guard: a member add or remove is refused with
503 "unhealthy cluster" until every voting member has been connected for 5 s.

Risk tiers (declared, as the reference gives them): move_leader, restart_member, resume_member,
disarm_alarm and snapshot_backup are low; compact, defragment, remove_member, add_member and
promote_learner are high; replace_member (wipes a member's data) is destructive.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from subjects.base import (
    ActionContext,
    ActionDef,
    ActionFailed,
    ActionOutcome,
    ActionParams,
    Node,
    Observation,
    Reconciliation,
    RiskTier,
)
from subjects.etcd.client import EtcdClient, EtcdError, as_int, hex_id
from subjects.etcd.invariants import answering, is_voter, leader_name, members
from subjects.etcd.observe import alarm_list

MEMBER_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
CAUGHT_UP_ENTRIES = 100
CONFIRM_S = 15.0
RECONFIG_RETRY_S = 20.0  # etcd refuses reconfiguration for 5 s after a membership or connectivity change
POLL_S = 0.1
PROBE_KEY = "/operator-tui/probe"


class MemberParams(ActionParams):
    member: str = Field(pattern=MEMBER_PATTERN, description="the member's name, as in the member:<name> entity "
                                                            "(e.g. m2)")


class MoveLeaderParams(ActionParams):
    target: str = Field(pattern=MEMBER_PATTERN, description="the member to hand leadership to (e.g. m2)")


class RestartParams(MemberParams):
    force: bool = Field(False, description="restart even though the member runs and answers (it then stops first)")


class CompactParams(ActionParams):
    keep_revisions: int = Field(0, ge=0, le=10_000_000, description="revisions of history to keep below the current "
                                                                    "one (0: compact everything before it)")


class AlarmParams(ActionParams):
    alarm: Literal["NOSPACE"] = Field("NOSPACE", description="the alarm to disarm (CORRUPT is never disarmed here)")


class SnapshotParams(ActionParams):
    member: str | None = Field(None, pattern=MEMBER_PATTERN, description="member to read it from (default: a "
                                                                         "healthy follower, else the leader)")
    path: str | None = Field(None, description="file to write (default: the lab's backups folder)")


class AddMemberParams(ActionParams):
    member: str | None = Field(None, pattern=MEMBER_PATTERN, description="lab: the slot to add (a removed member's "
                                                                         "name, or the next new one); default: next")
    peer_url: str | None = Field(None, description="without a lab: the new member's peer URL (it must then be "
                                                   "started by hand)")
    learner: bool = Field(True, description="join as a learner (no vote until promoted): the safe way")


def node_of(obs: Observation, name: str) -> Node | None:
    return obs.node(name, "member")


def decimal_id(node: Node) -> str:
    return str(int(node.labels["member_id"], 16))


def fault_tolerance(obs: Observation) -> int:
    d = obs.details
    return int(d.get("healthy_voters", 0)) - int(d.get("quorum", 1))


def healthy(n: Node) -> bool:
    return answering(n) and n.metrics.get("has_leader") == 1.0


def _why(e: EtcdError, what: str) -> ActionFailed:
    retry = e.unreachable or e.status in (503, 500) or "too many requests" in e.message
    return ActionFailed(f"{what}: {e.message} ({e.url})", retryable=retry,
                        data={"status": e.status, "code": e.code, "kind": e.kind})


async def _sleep(ctx: ActionContext, seconds: float) -> None:
    await (ctx.sleep or asyncio.sleep)(seconds)


async def _until(ctx: ActionContext, check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; ActionFailed naming what was last seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = await check()
        except (EtcdError, ActionFailed) as e:
            last = str(e)
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise ActionFailed(f"{what} not confirmed within {timeout:g} s (last seen: {last})")
        await _sleep(ctx, POLL_S)


class Catalogue:
    """Builds the actions over one subject: its observer (member URLs, expected leader moves) and lab."""

    def __init__(self, observer: Any, client: EtcdClient, lab: Any = None):
        self.observer = observer
        self.client = client
        self.lab = lab

    def build(self) -> list[ActionDef]:
        actions = [self.move_leader(), self.compact(), self.defragment(), self.disarm_alarm(),
                   self.snapshot_backup(), self.remove_member(), self.add_member(), self.promote_learner()]
        if self.lab is not None:
            actions += [self.restart_member(), self.resume_member(), self.replace_member()]
        return actions

    # -- shared ------------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        url = self.observer.member_url(name)
        if not url:
            raise ActionFailed(f"no client URL known for member {name}")
        return url

    def urls(self) -> dict[str, str]:
        return self.observer.member_urls()

    async def statuses(self) -> dict[str, dict[str, Any]]:
        """Every reachable member's status right now, by name."""
        names = self.urls()

        async def one(url: str) -> dict[str, Any] | None:
            try:
                return await self.client.status(url, timeout=1.0)
            except EtcdError:
                return None

        replies = await asyncio.gather(*(one(u) for u in names.values()))
        return {n: r for n, r in zip(names, replies, strict=True) if r is not None}

    async def leader(self) -> tuple[str, str, dict[str, dict[str, Any]]]:
        """(leader name, its URL, all statuses): the leader a majority of answering members names."""
        statuses = await self.statuses()
        ids = {(s.get("header") or {}).get("member_id"): n for n, s in statuses.items()}
        votes: dict[str, int] = {}
        for s in statuses.values():
            if s.get("leader"):
                votes[s["leader"]] = votes.get(s["leader"], 0) + 1
        for leader_id, _count in sorted(votes.items(), key=lambda kv: -kv[1]):
            if leader_id in ids:
                return ids[leader_id], self.url(ids[leader_id]), statuses
        raise ActionFailed(f"no leader: members answering {sorted(statuses)} name none that answers",
                           retryable=True)

    async def member_list(self) -> list[dict[str, Any]]:
        _, url, _ = await self.leader()
        try:
            return await self.client.member_list(url, timeout=2.0)
        except EtcdError as e:
            raise _why(e, "member list") from e

    async def caught_up(self, name: str) -> str | None:
        """A line saying the member answers, has a leader and is within CAUGHT_UP_ENTRIES of it."""
        leader, _, statuses = await self.leader()
        mine, theirs = statuses.get(name), statuses.get(leader)
        if mine is None or theirs is None or not mine.get("leader"):
            return None
        lag = as_int(theirs.get("raftIndex")) - as_int(mine.get("raftAppliedIndex"))
        return f"follows {leader}, {max(lag, 0)} entries behind" if lag <= CAUGHT_UP_ENTRIES else None

    async def rejoined(self, name: str) -> str | None:
        """Caught up with the leader; or, while no member has a leader (quorum lost), running and
        waiting for its peers: members serve only once a quorum of them runs."""
        try:
            return await self.caught_up(name)
        except ActionFailed:
            if self.lab is None or await asyncio.to_thread(self.lab.process_state, name) != "alive":
                raise
            return f"{name} runs and waits for a quorum of its peers (no leader yet)"

    async def reconfigure(self, ctx: ActionContext, what: str, call: Callable[[str], Awaitable[dict[str, Any]]]
                          ) -> dict[str, Any]:
        """Run a membership change on the leader, retrying etcd's 5 s "unhealthy cluster" guard."""
        deadline = time.monotonic() + RECONFIG_RETRY_S
        while True:
            _, url, _ = await self.leader()
            try:
                return await call(url)
            except EtcdError as e:
                guard = e.status == 503 and ("unhealthy cluster" in e.message or "not connected" in e.message)
                if not guard or time.monotonic() >= deadline:
                    raise _why(e, what) from e
                ctx.progress(f"{what}: etcd refused ({e.message}); retrying")
            await _sleep(ctx, 0.5)

    # -- leadership --------------------------------------------------------------------------------

    def move_leader(self) -> ActionDef:
        async def precheck(obs: Observation, p: MoveLeaderParams) -> list[str]:
            leader = leader_name(obs)
            target = node_of(obs, p.target)
            if leader is None:
                return ["no leader agreed by a majority: leadership cannot be transferred without quorum"]
            if target is None:
                return [f"no member {p.target} (members: {', '.join(n.id for n in members(obs))})"]
            if p.target == leader:
                return [f"{p.target} is already the leader"]
            if not healthy(target) or not is_voter(target):
                return [f"{p.target} cannot lead: {target.state_detail} ({target.role})"]
            lead = node_of(obs, leader)
            lag = (lead.metrics.get("raft_index", 0) if lead else 0) - target.metrics.get("applied", 0)
            if lag > CAUGHT_UP_ENTRIES:
                return [f"{p.target} is {lag:.0f} entries behind the leader (at most {CAUGHT_UP_ENTRIES})"]
            return []

        async def execute(p: MoveLeaderParams, ctx: ActionContext) -> ActionOutcome:
            t0 = time.monotonic()
            leader, url, statuses = await self.leader()
            if leader == p.target:
                return ActionOutcome(detail=f"{p.target} is already the leader")
            target_id = (statuses.get(p.target) or {}).get("header", {}).get("member_id")
            if not target_id:
                raise ActionFailed(f"{p.target} does not answer, so its member ID is unknown", retryable=True)
            self.observer.expect_leader_change(p.target)
            for attempt in (1, 2):
                try:
                    await self.client.transfer_leadership(url, target_id)
                    break
                except EtcdError as e:
                    if attempt == 1 and e.status == 412 and "not leader" in e.message:
                        leader, url, _ = await self.leader()  # it moved meanwhile: ask the new leader
                        ctx.progress(f"leadership moved meanwhile to {leader}; asking it")
                        continue
                    raise _why(e, f"transfer leadership to {p.target}") from e

            async def agreed() -> bool:
                s = await self.statuses()
                return bool(s) and all(x.get("leader") == target_id for x in s.values())

            await _until(ctx, agreed, CONFIRM_S, f"every member naming {p.target} leader")
            return ActionOutcome(detail=f"leadership moved from {leader} to {p.target} in "
                                        f"{time.monotonic() - t0:.2f} s; every answering member agrees",
                                 data={"from": leader, "to": p.target})

        async def reconcile(obs: Observation, p: MoveLeaderParams) -> Reconciliation:
            leader = leader_name(obs)
            return Reconciliation(took_effect=leader == p.target if leader else None,
                                  detail=f"leader is {leader or 'unknown'}")

        return ActionDef(
            "move_leader", "Hand raft leadership to another voting member (sent to the current leader). Use it to "
            "move leadership off a slow or to-be-maintained member.", MoveLeaderParams, RiskTier.low, True,
            lambda p: "cluster:leadership", precheck, execute,
            lambda p: f"POST <leader>/v3/maintenance/transfer-leadership targetID=<{p.target}>", reconcile)

    # -- processes (lab) ---------------------------------------------------------------------------

    def restart_member(self) -> ActionDef:
        async def precheck(obs: Observation, p: RestartParams) -> list[str]:
            if p.member not in await asyncio.to_thread(self.lab.member_names):
                return [f"no member {p.member} in the lab"]
            n = node_of(obs, p.member)
            process = await asyncio.to_thread(self.lab.process_state, p.member)
            if process == "paused" and not p.force:
                return [f"{p.member}'s process is SIGSTOPped: resume_member continues it; force=true restarts it"]
            if n is not None and answering(n) and not p.force:
                return [f"{p.member} runs and answers; restart it only with force=true"]
            if p.force and n is not None and healthy(n) and is_voter(n) and fault_tolerance(obs) < 1:
                return [f"restarting {p.member} now would lose quorum (the cluster tolerates no failure)"]
            return []

        async def execute(p: RestartParams, ctx: ActionContext) -> ActionOutcome:
            from subjects.etcd.lab import LabError

            t0 = time.monotonic()
            try:
                if p.force:
                    ctx.progress(f"stopping {p.member}: {await asyncio.to_thread(self.lab.stop_member, p.member)}")
                result = await asyncio.to_thread(self.lab.start_member, p.member)
            except LabError as e:
                raise ActionFailed(f"start {p.member}: {e}") from e
            line = await _until(ctx, lambda: self.rejoined(p.member), 30.0, f"{p.member} caught up")
            return ActionOutcome(detail=f"{p.member} {result}; {line} ({time.monotonic() - t0:.2f} s)",
                                 data={"result": result})

        async def reconcile(obs: Observation, p: RestartParams) -> Reconciliation:
            n = node_of(obs, p.member)
            return Reconciliation(took_effect=bool(n and answering(n)),
                                  detail=f"{p.member}: {n.state_detail if n else 'not in the observation'}")

        return ActionDef(
            "restart_member", "Start a member's etcd process (in the Docker lab: its container) again on its own "
            "data dir, with its original flags (lab). A member that runs and answers is restarted only with force=true.", RestartParams,
            RiskTier.low, True, lambda p: f"member:{p.member}", precheck, execute,
            lambda p: f"lab: {'stop, then ' if p.force else ''}start {p.member} on its data dir", reconcile)

    def resume_member(self) -> ActionDef:
        async def precheck(obs: Observation, p: MemberParams) -> list[str]:
            if p.member not in await asyncio.to_thread(self.lab.member_names):
                return [f"no member {p.member} in the lab"]
            process = await asyncio.to_thread(self.lab.process_state, p.member)
            return [] if process == "paused" else [f"{p.member}'s process is {process}, not stopped (SIGSTOP)"]

        async def execute(p: MemberParams, ctx: ActionContext) -> ActionOutcome:
            import signal

            t0 = time.monotonic()
            outcome = await asyncio.to_thread(self.lab.signal_member, p.member, signal.SIGCONT)
            if outcome != "resumed":
                raise ActionFailed(f"SIGCONT {p.member}: {outcome}")
            line = await _until(ctx, lambda: self.caught_up(p.member), CONFIRM_S, f"{p.member} caught up")
            return ActionOutcome(detail=f"{p.member} resumed (SIGCONT); {line} "
                                        f"({time.monotonic() - t0:.2f} s)")

        return ActionDef(
            "resume_member", "Continue a member whose process was paused (SIGCONT; in the Docker lab: docker unpause "
            "of its frozen container).", MemberParams,
            RiskTier.low, True, lambda p: f"member:{p.member}", precheck, execute,
            lambda p: f"lab: SIGCONT {p.member}")

    # -- space -------------------------------------------------------------------------------------

    def compact(self) -> ActionDef:
        async def precheck(obs: Observation, p: CompactParams) -> list[str]:
            if leader_name(obs) is None:
                return ["no leader agreed by a majority: compaction goes through raft"]
            rev = max((n.metrics.get("revision", 0) for n in members(obs) if answering(n)), default=0)
            done = max((n.metrics.get("compact_revision", -1) for n in members(obs) if answering(n)), default=-1)
            if rev - p.keep_revisions <= max(done, 0):
                return [f"nothing to compact: revision {rev:.0f}, keeping {p.keep_revisions}, already compacted at "
                        f"{done:.0f}"]
            return []

        async def execute(p: CompactParams, ctx: ActionContext) -> ActionOutcome:
            leader, url, statuses = await self.leader()
            revision = as_int((statuses[leader].get("header") or {}).get("revision")) - p.keep_revisions
            try:
                await self.client.compact(url, revision)
            except EtcdError as e:
                if "compacted" not in e.message:
                    raise _why(e, f"compact at {revision}") from e
            probe = revision - 1

            async def confirmed() -> bool:
                try:
                    await self.client.post(url, "/v3/kv/range", {"key": "AA==", "revision": str(probe),
                                                                  "serializable": True}, timeout=2.0)
                except EtcdError as e:
                    return e.code == 11 or "compacted" in e.message
                return probe < 1  # nothing older than revision 1 to be gone

            await _until(ctx, confirmed, CONFIRM_S, f"history before revision {revision} gone")
            return ActionOutcome(detail=f"compacted the keyspace history up to revision {revision} (kept "
                                        f"{p.keep_revisions}); a read at {probe} now answers 'compacted'",
                                 data={"revision": revision})

        return ActionDef(
            "compact", "Discard the keyspace history before the current revision (minus keep_revisions), cluster-"
            "wide. Frees space inside the database files; defragment gives it back to the disk.", CompactParams,
            RiskTier.high, False, lambda p: "cluster:keyspace", precheck, execute,
            lambda p: f"POST <leader>/v3/kv/compaction revision=<current - {p.keep_revisions}> physical=true")

    def defragment(self) -> ActionDef:
        async def precheck(obs: Observation, p: MemberParams) -> list[str]:
            n = node_of(obs, p.member)
            if n is None:
                return [f"no member {p.member}"]
            if not healthy(n):
                return [f"{p.member} is not healthy: {n.state_detail}"]
            if leader_name(obs) == p.member:
                return [f"{p.member} is the leader: defragmenting blocks it; move leadership first (move_leader)"]
            busy = [x.id for x in members(obs) if x.metrics.get("defrag_inflight", 0) > 0]
            if busy:
                return [f"a defragmentation is already running on {', '.join(busy)}: one member at a time"]
            if fault_tolerance(obs) < 1 and is_voter(n):
                return ["the cluster tolerates no failure right now: blocking a voting member could lose quorum"]
            return []

        async def execute(p: MemberParams, ctx: ActionContext) -> ActionOutcome:
            url = self.url(p.member)
            before = await self.client.status(url, timeout=2.0)
            t0 = time.monotonic()
            try:
                await self.client.defragment(url)
            except EtcdError as e:
                raise _why(e, f"defragment {p.member}") from e
            took = time.monotonic() - t0

            async def compacted() -> dict[str, Any] | None:
                s = await self.client.status(url, timeout=2.0)
                size, used = as_int(s.get("dbSize")), as_int(s.get("dbSizeInUse"))
                return s if size <= 1.1 * used + 1048576 else None

            after = await _until(ctx, compacted, CONFIRM_S, f"{p.member}'s file shrunk to what it uses")
            b, a = as_int(before.get("dbSize")), as_int(after.get("dbSize"))
            return ActionOutcome(detail=f"defragmented {p.member} in {took:.2f} s: database file "
                                        f"{b / 1048576:.1f} MiB -> {a / 1048576:.1f} MiB",
                                 data={"before": b, "after": a, "seconds": round(took, 3)})

        async def reconcile(obs: Observation, p: MemberParams) -> Reconciliation:
            n = node_of(obs, p.member)
            if n is None or not answering(n):
                return Reconciliation(took_effect=None, detail=f"{p.member} does not answer")
            size, used = n.metrics.get("db_size", 0), n.metrics.get("db_in_use", 0)
            ok = size <= 1.1 * used + 1048576
            return Reconciliation(took_effect=True if ok else None, detail=f"db {size:.0f} B, in use {used:.0f} B")

        return ActionDef(
            "defragment", "Rewrite one member's database file without its free pages (given back to the disk). "
            "Blocks that member while it runs: one member at a time, never the leader.", MemberParams,
            RiskTier.high, True, lambda p: f"member:{p.member}", precheck, execute,
            lambda p: f"POST {p.member}/v3/maintenance/defragment", reconcile)

    def disarm_alarm(self) -> ActionDef:
        async def precheck(obs: Observation, p: AlarmParams) -> list[str]:
            if leader_name(obs) is None:
                return ["no leader agreed by a majority: disarming goes through raft"]
            if not any(a["alarm"] == p.alarm for a in obs.details.get("alarms") or []):
                return [f"no {p.alarm} alarm is raised"]
            full = [f"{n.id} at {n.metrics['db_size'] / n.metrics['quota_bytes']:.0%}" for n in members(obs)
                    if answering(n) and n.metrics.get("quota_bytes")
                    and n.metrics.get("db_size", 0) >= 0.9 * n.metrics["quota_bytes"]]
            if full:
                return [f"databases still near the quota ({', '.join(full)}): etcd would raise {p.alarm} again; "
                        "compact and defragment first"]
            return []

        async def execute(p: AlarmParams, ctx: ActionContext) -> ActionOutcome:
            _, url, _ = await self.leader()
            try:
                alarms = [a for a in await self.client.alarms(url) if a.get("alarm") == p.alarm]
                for a in alarms:
                    await self.client.disarm(url, str(a.get("memberID")), p.alarm)
                left = [a for a in await self.client.alarms(url) if a.get("alarm") == p.alarm]
            except EtcdError as e:
                raise _why(e, f"disarm {p.alarm}") from e
            if left:
                raise ActionFailed(f"{p.alarm} still raised after disarming: {left}", retryable=True)
            try:
                revision = await self.client.put(url, PROBE_KEY, datetime.now(UTC).isoformat(), timeout=5.0)
            except EtcdError as e:
                raise ActionFailed(f"{p.alarm} disarmed, but a probe put still fails: {e.message}",
                                   retryable=True) from e
            who = ", ".join(hex_id(a.get("memberID")) for a in alarms) or "nobody (already disarmed)"
            return ActionOutcome(detail=f"disarmed {p.alarm} (raised by {who}); a probe put succeeded at revision "
                                        f"{revision}", data={"disarmed": len(alarms), "probe_revision": revision})

        async def reconcile(obs: Observation, p: AlarmParams) -> Reconciliation:
            raised = any(a["alarm"] == p.alarm for a in obs.details.get("alarms") or [])
            return Reconciliation(took_effect=not raised, detail=f"{p.alarm} {'still' if raised else 'not'} raised")

        return ActionDef(
            "disarm_alarm", "Clear an alarm once its cause is gone (NOSPACE: after compaction and defragmentation "
            "brought every database under 90% of the quota); confirmed by a probe put.", AlarmParams,
            RiskTier.low, True, lambda p: "cluster:alarms", precheck, execute,
            lambda p: f"POST <leader>/v3/maintenance/alarm DEACTIVATE {p.alarm} (each raising member), then put "
                      f"{PROBE_KEY}", reconcile)

    # -- backup ------------------------------------------------------------------------------------

    def _backup_source(self, obs: Observation, member: str | None) -> Node | None:
        if member:
            return node_of(obs, member)
        leader = leader_name(obs)
        ready = [n for n in members(obs) if healthy(n)]
        return next((n for n in ready if n.id != leader), None) or (ready[0] if ready else None)

    def _backup_path(self, source: str, path: str | None) -> Path:
        if path:
            return Path(path).expanduser()
        if self.lab is None:
            raise ActionFailed("no path given and no lab folder to keep backups in")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return Path(self.lab.run_dir) / "backups" / f"snapshot-{source}-{stamp}.db"

    async def take_backup(self, source: str, path: str | None) -> dict[str, Any]:
        target = self._backup_path(source, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        fh = await asyncio.to_thread(open, target, "wb")
        try:
            async for chunk in self.client.snapshot(self.url(source)):
                await asyncio.to_thread(fh.write, chunk)
                size += len(chunk)
        except EtcdError as e:
            fh.close()
            target.unlink(missing_ok=True)
            raise _why(e, f"snapshot from {source}") from e
        fh.close()
        if size == 0:
            target.unlink(missing_ok=True)
            raise ActionFailed(f"snapshot from {source} was empty", retryable=True)
        info: dict[str, Any] = {"path": str(target), "bytes": size, "member": source}
        etcdctl = shutil.which("etcdctl")
        if etcdctl:
            result = await asyncio.to_thread(subprocess.run, [etcdctl, "snapshot", "status", str(target), "-w", "json"],
                                             capture_output=True, text=True, timeout=60, env={"ETCDCTL_API": "3"})
            if result.returncode != 0:
                raise ActionFailed(f"etcdctl does not accept the backup {target}: {result.stderr.strip()[:200]}")
            import json

            info["status"] = json.loads(result.stdout)
        return info

    def snapshot_backup(self) -> ActionDef:
        async def precheck(obs: Observation, p: SnapshotParams) -> list[str]:
            source = self._backup_source(obs, p.member)
            if source is None:
                return [f"no member {p.member}" if p.member else "no healthy member to read a backup from"]
            if not answering(source):
                return [f"{source.id} does not answer"]
            if p.path is None and self.lab is None:
                return ["give a path: without a lab there is no default backups folder"]
            return []

        async def execute(p: SnapshotParams, ctx: ActionContext) -> ActionOutcome:
            obs = await self.observer.observe()
            source = self._backup_source(obs, p.member)
            if source is None:
                raise ActionFailed("no healthy member to read a backup from", retryable=True)
            info = await self.take_backup(source.id, p.path)
            st = info.get("status") or {}
            checked = (f"; etcdctl: revision {st.get('revision')}, {st.get('totalKey')} keys" if st else
                       "; etcdctl not installed, not verified")
            return ActionOutcome(detail=f"backup of {source.id} written to {info['path']} ({info['bytes']} bytes)"
                                        + checked, data=info)

        return ActionDef(
            "snapshot_backup", "Stream a member's database to a file (a consistent backup, checked with etcdctl "
            "snapshot status).", SnapshotParams, RiskTier.low, True, lambda p: f"member:{p.member or 'any'}",
            precheck, execute, lambda p: f"POST {p.member or '<a follower>'}/v3/maintenance/snapshot > "
                                         f"{p.path or '<lab>/backups/snapshot-*.db'}")

    # -- membership --------------------------------------------------------------------------------

    def remove_member(self) -> ActionDef:
        async def precheck(obs: Observation, p: MemberParams) -> list[str]:
            n = node_of(obs, p.member)
            if n is None or n.state.value == "removed":
                return [f"{p.member} is not a member of the cluster"]
            voters = [x for x in members(obs) if is_voter(x)]
            if len(voters) <= 1 and is_voter(n):
                return [f"{p.member} is the last voting member"]
            unstarted = n.labels.get("started") == "false"
            if not unstarted and answering(n):
                return [f"{p.member} runs and answers: only a member that is down (>= 5 s) is removed here "
                        "(replace_member replaces a live one)"]
            if not unstarted and n.metrics.get("down_for_s", 0) < 5:
                return [f"{p.member} has been down only {n.metrics.get('down_for_s', 0):.1f} s (at least 5 s)"]
            rest = [x for x in voters if x.id != p.member]
            need = len(rest) // 2 + 1
            ok = [x.id for x in rest if healthy(x)]
            if len(ok) < need:
                return [f"after removing {p.member}, {len(ok)} healthy of {len(rest)} voting members would be left, "
                        f"{need} needed"]
            return []

        async def execute(p: MemberParams, ctx: ActionContext) -> ActionOutcome:
            return ActionOutcome(**await self._remove(p.member, ctx))

        async def reconcile(obs: Observation, p: MemberParams) -> Reconciliation:
            gone = all(m.get("name") != p.member for m in obs.details.get("members") or [])
            return Reconciliation(took_effect=gone, detail=f"{p.member} {'absent from' if gone else 'still in'} the "
                                                           "member list")

        return ActionDef(
            "remove_member", "Remove a member that is down (for at least 5 s) or was added and never started from the "
            "cluster. Its data dir is poison afterwards; re-adding it starts from an empty one.", MemberParams,
            RiskTier.high, True, lambda p: "cluster:membership", precheck, execute,
            lambda p: f"POST <leader>/v3/cluster/member/remove ID=<{p.member}>", reconcile)

    async def _remove(self, name: str, ctx: ActionContext) -> dict[str, Any]:
        listed = await self.member_list()
        entry = next((m for m in listed if m.get("name") == name or hex_id(m["ID"]) == name), None)
        if entry is None:
            return {"detail": f"{name} is not in the member list (already removed)"}
        await self.reconfigure(ctx, f"remove {name}", lambda url: self.client.member_remove(url, str(entry["ID"])))

        async def gone() -> bool:
            return all(str(m.get("ID")) != str(entry["ID"]) for m in await self.member_list())

        await _until(ctx, gone, CONFIRM_S, f"{name} gone from the member list")
        if self.lab is not None and name in await asyncio.to_thread(self.lab.member_names):
            # A removed member that still runs exits by itself; make sure, so its slot can be reused.
            await asyncio.to_thread(self.lab.stop_member, name)
        return {"detail": f"removed {name} (ID {hex_id(entry['ID'])}) from the cluster",
                "data": {"id": hex_id(entry["ID"])}}

    def add_member(self) -> ActionDef:
        async def precheck(obs: Observation, p: AddMemberParams) -> list[str]:
            if leader_name(obs) is None:
                return ["no leader agreed by a majority: membership changes go through raft"]
            sick = [n.id for n in members(obs) if is_voter(n) and not healthy(n)]
            if sick:
                return [f"voting members not healthy: {', '.join(sick)} (etcd refuses to add a member then)"]
            pending = [m["id"] for m in obs.details.get("members") or [] if not m["started"]]
            if pending:
                return [f"a member was added and never started ({', '.join(pending)}): start or remove it first"]
            if self.lab is None and not p.peer_url:
                return ["give peer_url: without a lab the new member's address is not known"]
            listed = {m["name"] for m in obs.details.get("members") or []}
            if p.member and p.member in listed:
                return [f"{p.member} is already a member"]
            return []

        async def execute(p: AddMemberParams, ctx: ActionContext) -> ActionOutcome:
            return ActionOutcome(**await self._add(p, ctx))

        async def reconcile(obs: Observation, p: AddMemberParams) -> Reconciliation:
            names = {m["name"] for m in obs.details.get("members") or []}
            return Reconciliation(took_effect=bool(p.member and p.member in names) or None,
                                  detail=f"members: {sorted(names)}")

        return ActionDef(
            "add_member", "Add a member (as a learner by default) and, in the lab, start it on an empty data dir with "
            "--initial-cluster-state existing; promote_learner gives it a vote once it caught up.", AddMemberParams,
            RiskTier.high, False, lambda p: "cluster:membership", precheck, execute,
            lambda p: f"POST <leader>/v3/cluster/member/add peerURLs=[{p.peer_url or '<lab slot>'}] "
                      f"isLearner={p.learner}" + ("" if p.peer_url else f"; lab: start {p.member or '<next>'}"),
            reconcile)

    async def _add(self, p: AddMemberParams, ctx: ActionContext) -> dict[str, Any]:
        from subjects.etcd.lab import LabError

        spec = None
        if self.lab is not None and not p.peer_url:
            try:
                spec = await asyncio.to_thread(self.lab.add_slot, p.member)
            except LabError as e:
                raise ActionFailed(str(e)) from e
            peer_url = spec.peer_url
        else:
            peer_url = p.peer_url or ""
        out = await self.reconfigure(ctx, f"add {peer_url}",
                                     lambda url: self.client.member_add(url, [peer_url], p.learner))
        new = out.get("member") or {}
        new_id = str(new.get("ID", ""))
        if spec is None:
            return {"detail": f"added {peer_url} as {'learner' if p.learner else 'voter'} {hex_id(new_id)}; start it "
                              "with --initial-cluster-state existing", "data": {"id": hex_id(new_id)}}
        cluster = ",".join(f"{m.get('name') or spec.name}={u}" for m in out.get("members") or []
                           for u in (m.get("peerURLs") or [])[:1])
        try:
            await asyncio.to_thread(self.lab.retire_data, spec.name)
            await asyncio.to_thread(self.lab.start_member, spec.name, join_cluster=cluster)
        except LabError as e:
            raise ActionFailed(f"added {spec.name} ({hex_id(new_id)}) but could not start it: {e}") from e
        line = await _until(ctx, lambda: self.caught_up(spec.name), 30.0, f"{spec.name} caught up")
        # A newcomer replays the raft log from its start: after a quota incident its database grows
        # through the old history past the quota again and it raises NOSPACE for the whole cluster.
        _, _, statuses = await self.leader()
        raised = (new_id, "NOSPACE") in alarm_list((statuses.get(spec.name) or {}).get("errors"))
        alarm = (f"; replaying the cluster's history filled its database to the quota and it raised NOSPACE: "
                 f"defragment {spec.name}, then disarm_alarm") if raised else ""
        return {"detail": f"added {spec.name} ({hex_id(new_id)}) as {'learner' if p.learner else 'voter'} and "
                          f"started it; it {line}{alarm}",
                "data": {"member": spec.name, "id": hex_id(new_id), "raised_nospace": raised}}

    def promote_learner(self) -> ActionDef:
        async def precheck(obs: Observation, p: MemberParams) -> list[str]:
            n = node_of(obs, p.member)
            if n is None:
                return [f"no member {p.member}"]
            if n.labels.get("learner") != "true":
                return [f"{p.member} is not a learner"]
            if not healthy(n):
                return [f"{p.member} is not running with a leader: {n.state_detail}"]
            return []

        async def execute(p: MemberParams, ctx: ActionContext) -> ActionOutcome:
            return ActionOutcome(**await self._promote(p.member, ctx))

        async def reconcile(obs: Observation, p: MemberParams) -> Reconciliation:
            n = node_of(obs, p.member)
            return Reconciliation(took_effect=(n.labels.get("learner") == "false") if n else None,
                                  detail=f"{p.member}: {n.role if n else 'not observed'}")

        return ActionDef(
            "promote_learner", "Give a learner that caught up with the leader its vote.", MemberParams, RiskTier.high,
            True, lambda p: "cluster:membership", precheck, execute,
            lambda p: f"POST <leader>/v3/cluster/member/promote ID=<{p.member}>", reconcile)

    async def _promote(self, name: str, ctx: ActionContext) -> dict[str, Any]:
        listed = await self.member_list()
        entry = next((m for m in listed if m.get("name") == name), None)
        if entry is None:
            raise ActionFailed(f"{name} is not in the member list")
        if not entry.get("isLearner"):
            return {"detail": f"{name} already votes"}
        deadline = time.monotonic() + RECONFIG_RETRY_S
        while True:
            _, url, _ = await self.leader()
            try:
                await self.client.member_promote(url, str(entry["ID"]))
                break
            except EtcdError as e:
                # "can only promote a learner member which is in sync with leader": it is catching up.
                if "in sync" not in e.message or time.monotonic() >= deadline:
                    raise _why(e, f"promote {name}") from e
                ctx.progress(f"promote {name}: {e.message}; retrying")
            await _sleep(ctx, 0.5)

        async def voting() -> bool:
            return any(m.get("name") == name and not m.get("isLearner") for m in await self.member_list())

        await _until(ctx, voting, CONFIRM_S, f"{name} voting")
        return {"detail": f"promoted {name} to a voting member", "data": {"id": hex_id(entry["ID"])}}

    def replace_member(self) -> ActionDef:
        async def precheck(obs: Observation, p: MemberParams) -> list[str]:
            if p.member not in await asyncio.to_thread(self.lab.member_names):
                return [f"no member {p.member} in the lab"]
            n = node_of(obs, p.member)
            if n is None or n.state.value == "removed":
                return [f"{p.member} is not a member of the cluster (add_member adds it)"]
            rest = [x for x in members(obs) if is_voter(x) and x.id != p.member]
            need = len(rest) // 2 + 1
            ok = [x.id for x in rest if healthy(x)]
            if not rest or len(ok) < need:
                return [f"without {p.member}, {len(ok)} healthy of {len(rest)} voting members are left, {need} needed"]
            return []

        async def execute(p: MemberParams, ctx: ActionContext) -> ActionOutcome:
            t0 = time.monotonic()
            obs = await self.observer.observe()
            source = next((n.id for n in members(obs) if n.id != p.member and healthy(n)), None)
            if source is None:
                raise ActionFailed("no healthy member to take a backup from", retryable=True)
            backup = await self.take_backup(source, None)
            ctx.progress(f"backup from {source}: {backup['path']}")
            ctx.progress(f"stop {p.member}: {await asyncio.to_thread(self.lab.stop_member, p.member)}")
            await self._remove(p.member, ctx)
            moved = await asyncio.to_thread(self.lab.retire_data, p.member)
            ctx.progress(f"old data dir moved to {moved or '(none)'}")
            added = await self._add(AddMemberParams(member=p.member, learner=True), ctx)
            await self._promote(p.member, ctx)
            return ActionOutcome(detail=f"replaced {p.member}: backup {backup['path']}, removed, data moved to "
                                        f"{moved or '-'}, re-added as {added['data']['id']} on an empty data dir, "
                                        f"caught up and promoted ({time.monotonic() - t0:.1f} s)",
                                 data={"backup": backup["path"], "old_data": moved, "new_id": added["data"]["id"]})

        return ActionDef(
            "replace_member", "Replace a broken member with a fresh one under the same name: backup, stop, remove, "
            "move its data dir aside, add as a learner on an empty data dir, catch up, promote. Destroys that "
            "member's local data (the others keep everything).", MemberParams, RiskTier.destructive, False,
            lambda p: "cluster:membership", precheck, execute,
            lambda p: f"backup; lab stop {p.member}; member/remove; move data aside; member/add learner; start; "
                      "member/promote")
