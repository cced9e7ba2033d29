"""Faults for the etcd lab, each recorded with exactly what undoes it.

``inject(lab, kind, target=None, params=None) -> record`` and ``revert(lab, record) -> report``.

A record is plain JSON::

    {"id", "kind", "target", "target_chosen", "params", "lab_dir", "injected_at", "done": [text],
     "effect": {...}, "undo": [step, ...]}

Undo steps (run in order by `revert`; each is a no-op when already undone):

- ``{"op": "start_member", "member"}``                       start it on its data dir if not running
- ``{"op": "signal", "member", "pid", "starttime", "signal"}`` SIGCONT that very process, if it is
  still the one that was stopped
- ``{"op": "unpause", "member", "container"}``               thaw that very container (Docker lab), if
  it is still the member's
- ``{"op": "chain", "chain"}``                               delete the iptables chain and its jump
- ``{"op": "remove_file", "member", "path"}``                delete the filler that fills the disk
- ``{"op": "stop_tracer", "name", "pid", "starttime", "member"}``  SIGINT strace (it detaches), then
  check the member runs on, not left stopped
- ``{"op": "delete_prefix", "prefix"}``                      delete the keys a fault wrote
- ``{"op": "quota_recover", "prefix"}``                      delete the filler key, and if the
  space is still short: compact, defragment each member, disarm the alarms

Targets: a member name, ``leader`` (resolved to the current leader; the record names the
member), or nothing (the first running follower).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from subjects import netfault, processes
from subjects.etcd.client import EtcdClient, EtcdError, as_int, b64, call_sync
from subjects.etcd.lab import EtcdLab, LabError, MemberSpec
from subjects.processes import ProcessRecord

QUOTA_VALUE_BYTES = 512 * 1024
QUOTA_MAX_PUTS = 200
DISK_FULL_PUTS = 16
DISK_FULL_VALUE_BYTES = 1024 * 1024
EFFECT_TIMEOUT_S = 10.0


class FaultError(ValueError):
    """Unknown kind, bad parameters, unknown or unsuitable target, or an injection that failed."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(_Params):
    """The kind takes no parameters."""


class SlowDiskParams(_Params):
    delay_ms: int = Field(600, ge=1, le=10_000, description="delay added before every fsync/fdatasync")


class QuotaParams(_Params):
    value_kib: int = Field(512, ge=16, le=1024, description="size of each put (one key rewritten: history fills)")


def _now() -> str:
    return datetime.now(UTC).isoformat()


# -- who is who ---------------------------------------------------------------------------------

def running(lab: EtcdLab, name: str) -> bool:
    return lab.process_state(name) == processes.RUNNING


def current_leader(lab: EtcdLab) -> str | None:
    """The member a majority of answering members names as leader."""
    ids: dict[str, str] = {}
    votes: dict[str, int] = {}
    members = lab.state.members
    for spec in members:
        if not running(lab, spec.name):
            continue
        try:
            s = call_sync(spec.client_url, "/v3/maintenance/status", timeout=1.0)
        except EtcdError:
            continue
        ids[(s.get("header") or {}).get("member_id", "")] = spec.name
        if s.get("leader"):
            votes[s["leader"]] = votes.get(s["leader"], 0) + 1
    for leader_id, count in votes.items():
        if count >= len(members) // 2 + 1 and leader_id in ids:
            return ids[leader_id]
    return None


def resolve_target(lab: EtcdLab, target: str | None) -> tuple[MemberSpec, str]:
    names = lab.member_names()
    if target == "leader":
        leader = current_leader(lab)
        if leader is None:
            raise FaultError("--target leader: no leader agreed by a majority right now")
        return lab.member(leader), f"leader -> {leader}"
    if target is None:
        leader = current_leader(lab)
        for name in names:
            if name != leader and running(lab, name):
                return lab.member(name), f"default: first running follower ({name})"
        raise FaultError("no running follower to target; name a member with --target")
    if target not in names:
        raise FaultError(f"unknown target {target!r}; members: {', '.join(names)} (or leader)")
    return lab.member(target), "given"


def _must_run(lab: EtcdLab, spec: MemberSpec) -> None:
    state = lab.process_state(spec.name)
    if state != processes.RUNNING:
        raise FaultError(f"member {spec.name} is not running (process {state})")


def _wait(predicate: Callable[[], bool], timeout: float = EFFECT_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _no_leader(spec: MemberSpec) -> bool:
    try:
        s = call_sync(spec.client_url, "/v3/maintenance/status", timeout=1.0)
    except EtcdError:
        return False
    return not s.get("leader") or any("no leader" in str(e) for e in s.get("errors") or [])


# -- kinds ------------------------------------------------------------------------------------------

def _kill(lab: EtcdLab, spec: MemberSpec, p: NoParams, fid: str) -> tuple[list, dict, list]:
    _must_run(lab, spec)
    proc = lab.kill_member(spec.name)
    effect = {"process": lab.process_state(spec.name), **proc}
    what = (f"docker kill {spec.name} (container {proc['container'][:12]})" if "container" in proc
            else f"SIGKILL {spec.name} (pid {proc['pid']})")
    return [what], effect, [{"op": "start_member", "member": spec.name}]


def _stop(lab: EtcdLab, spec: MemberSpec, p: NoParams, fid: str) -> tuple[list, dict, list]:
    _must_run(lab, spec)
    outcome = lab.stop_member(spec.name)
    effect = {"process": lab.process_state(spec.name)}
    if effect["process"] != processes.STOPPED:
        raise FaultError(f"stop {spec.name}: {outcome}, but its process is {effect['process']}")
    return [f"stop {spec.name} (SIGTERM, SIGKILL after the grace): {outcome}"], effect, \
        [{"op": "start_member", "member": spec.name}]


def _restart(lab: EtcdLab, spec: MemberSpec, p: NoParams, fid: str) -> tuple[list, dict, list]:
    _must_run(lab, spec)
    outcome = lab.restart_member(spec.name)
    effect = {"process": lab.process_state(spec.name)}
    # A restart ends by itself; the undo only makes sure the member runs again.
    return [f"restart {spec.name}: {outcome}"], effect, [{"op": "start_member", "member": spec.name}]


def _pause(lab: EtcdLab, spec: MemberSpec, p: NoParams, fid: str) -> tuple[list, dict, list]:
    _must_run(lab, spec)
    undo = lab.pause_undo(spec.name)
    outcome = lab.signal_member(spec.name, signal.SIGSTOP)
    if outcome != "paused":
        raise FaultError(f"pause {spec.name}: {outcome}")
    what = (f"SIGSTOP {spec.name} (pid {undo['pid']})" if undo["op"] == "signal"
            else f"docker pause {spec.name} (container {undo['container'][:12]}, the cgroup freezer)")
    return [what], {"process": lab.process_state(spec.name)}, [undo]


def _partition(lab: EtcdLab, spec: MemberSpec, p: NoParams, fid: str) -> tuple[list, dict, list]:
    paused = lab.process_state(spec.name) == processes.PAUSED  # the network is cut all the same
    if not paused:
        _must_run(lab, spec)
    state = lab.state
    spec = state.member(spec.name)  # with the cgroup its container runs in now
    others = [m for m in state.members if m.name != spec.name]
    # Incoming: by the peers' cgroups when they outlive restarts (the process lab's own), else (a
    # container gets a new cgroup each time it starts) every packet to the member's peer port.
    by_cgroup = lab.stable_cgroups
    if spec.cgroup is None or (by_cgroup and any(m.cgroup is None for m in others)):
        raise FaultError("partitions need each member in its own cgroup (v2), and this lab runs without them")
    if not others:
        raise FaultError(f"{spec.name} has no peer to be cut off from")
    chain = netfault.Chain(f"OPETCD{fid[-10:]}")
    lab.register_chain(chain.name)  # write-ahead: `lab down` removes it even if we die half way
    done = []
    try:
        chain.create()
        for other in others:
            chain.drop(cgroup=spec.cgroup, dst=other.address)
            if by_cgroup:
                chain.drop(cgroup=other.cgroup, dst=spec.address)
            done.append(f"{spec.name} <-/-> {other.name}")
        if not by_cgroup:
            chain.drop(dst=spec.address, dport=state.peer_port)
            done.append(f"nothing reaches {spec.address}:{state.peer_port}")
    except netfault.NetFaultError as e:
        chain.delete()
        lab.forget_chain(chain.name)
        raise FaultError(f"partition {spec.name}: {e}") from e
    # Effect: the isolated member loses its leader (about one election timeout); a stopped one cannot say.
    isolated = None if paused else _wait(lambda: _no_leader(spec))
    effect = {"chain": chain.name, "rules": len(chain.rules()), "member_lost_leader": isolated}
    return [f"iptables chain {chain.name}: " + ", ".join(done)], effect, [{"op": "chain", "chain": chain.name}]


def _disk_full(lab: EtcdLab, spec: MemberSpec, p: NoParams, fid: str) -> tuple[list, dict, list]:
    _must_run(lab, spec)
    if not spec.mounted:
        raise FaultError(f"{spec.name}'s data is not on a tmpfs of its own (lab started with --tmpfs-mb 0): filling "
                         "its disk would fill the host's")
    filler = Path(spec.folder) / f"chaos-filler-{fid}"
    undo = [{"op": "remove_file", "member": spec.name, "path": str(filler)},
            {"op": "start_member", "member": spec.name}]
    size = lab.fill_disk(spec.name, str(filler))
    free = lab.free_bytes(spec.name)
    # Effect: the member exits once a write needs a page its disk no longer has. Small writes may fit
    # in pages its database file already holds, so write bigger values (through another member)
    # until it does; they are deleted again on revert.
    prefix = f"/chaos/disk_full/{fid}"
    undo.append({"op": "delete_prefix", "prefix": prefix})
    others = [m.client_url for m in lab.state.members if m.name != spec.name] or [spec.client_url]

    def live() -> bool:
        return lab.process_state(spec.name) in (processes.RUNNING, processes.PAUSED)

    for i in range(DISK_FULL_PUTS):
        if not live():
            break
        with contextlib.suppress(EtcdError):
            call_sync(others[i % len(others)], "/v3/kv/put",
                      {"key": b64(f"{prefix}/{i}"), "value": b64(os.urandom(DISK_FULL_VALUE_BYTES))}, timeout=5.0)
    exited = _wait(lambda: not live(), 5.0)
    effect = {"filler": str(filler), "filler_bytes": size, "free_bytes": free, "member_exited": exited}
    return [f"filled {spec.name}'s disk: {filler} ({size / 1048576:.0f} MiB), {free} bytes left"], effect, undo


def _quota_fill(lab: EtcdLab, spec: MemberSpec, p: QuotaParams, fid: str) -> tuple[list, dict, list]:
    prefix = f"/chaos/quota_fill/{fid}"
    value = b"x" * (p.value_kib * 1024)
    undo = [{"op": "quota_recover", "prefix": prefix}]
    puts, last = 0, ""
    for _ in range(QUOTA_MAX_PUTS):
        try:
            call_sync(spec.client_url, "/v3/kv/put",
                      {"key": b64(prefix), "value": b64(value)}, timeout=10.0)
            puts += 1
        except EtcdError as e:
            last = e.message
            if "space exceeded" in e.message:
                break
            raise FaultError(f"quota_fill: put {puts + 1} failed: {e.message}") from e
    else:
        raise FaultError(f"quota_fill: {QUOTA_MAX_PUTS} puts of {p.value_kib} KiB did not exhaust the quota")
    alarms = call_sync(spec.client_url, "/v3/maintenance/status").get("errors") or []
    return ([f"rewrote {prefix} {puts} times with {p.value_kib} KiB until: {last}"],
            {"puts": puts, "alarms": alarms}, undo)


def _slow_disk(lab: EtcdLab, spec: MemberSpec, p: SlowDiskParams, fid: str) -> tuple[list, dict, list]:
    _must_run(lab, spec)
    strace = shutil.which("strace")
    if strace is None:
        raise FaultError("strace is not installed (Debian: apt-get install strace)")
    rec = lab.process(spec.name)
    assert rec is not None
    name = f"strace-{spec.name}-{fid[-6:]}"
    argv = [strace, "-f", "-qq", "-e", "trace=fdatasync,fsync", "-e",
            f"inject=fdatasync,fsync:delay_enter={p.delay_ms}ms", "-p", str(rec.pid), "-o", "/dev/null"]
    tracer = processes.spawn(name, argv, lab.logs_dir / f"{name}.log")
    lab.register_process(tracer)
    undo = {"op": "stop_tracer", "name": name, "pid": tracer.pid, "starttime": tracer.starttime,
            "member": spec.name}
    time.sleep(0.5)
    if not processes.is_live(tracer):
        lab.forget_process(name)
        raise FaultError(f"strace could not attach to {spec.name} (pid {rec.pid}): {processes.log_tail(tracer.log)}")
    return ([f"strace (pid {tracer.pid}) delays every fsync of {spec.name} (pid {rec.pid}) by {p.delay_ms} ms"],
            {"tracer_pid": tracer.pid, "member_pid": rec.pid}, [undo])


@dataclass(frozen=True)
class Kind:
    name: str
    description: str
    params: type[_Params]
    run: Callable[[EtcdLab, MemberSpec, _Params, str], tuple[list, dict, list]]


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("kill_member", "SIGKILL one member (a container: docker kill); revert starts it again on its data dir",
         NoParams, _kill),
    Kind("stop_member", "stop one member: SIGTERM, SIGKILL after 10 s (a container: docker stop); revert starts it",
         NoParams, _stop),
    Kind("restart_member", "restart one member (a container: docker restart); revert makes sure it runs", NoParams,
         _restart),
    Kind("pause_member", "pause one member: SIGSTOP (a container: the cgroup freezer); it hangs instead of refusing; "
         "revert resumes it", NoParams, _pause),
    Kind("partition_member", "cut one member off from its peers with iptables (clients still reach it); revert "
         "deletes the chain", NoParams, _partition),
    Kind("disk_full", "fill one member's own tmpfs so its next commit fails and it exits; revert removes the "
         "filler and starts it", NoParams, _disk_full),
    Kind("quota_fill", "rewrite one key with 512 KiB values until the backend quota is exhausted (NOSPACE alarm); "
         "revert deletes it, compacts, defragments and disarms", QuotaParams, _quota_fill),
    Kind("slow_disk", "strace delays every fsync of one member (default 600 ms); revert detaches strace",
         SlowDiskParams, _slow_disk),
)}


def describe_kinds() -> list[dict]:
    return [{"kind": k.name, "description": k.description, "params": k.params.model_json_schema()}
            for k in KINDS.values()]


def inject(lab: EtcdLab, kind: str, target: str | None = None, params: dict | None = None,
           fid: str | None = None) -> dict:
    """Make the fault; `fid` names what it creates on the host (its chain, filler, keys, tracer): the
    evaluation harness passes one it wrote down before, a new one is made up otherwise."""
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; kinds: {', '.join(KINDS)}")
    k = KINDS[kind]
    try:
        p = k.params.model_validate(params or {})
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"]) or "params"
        allowed = ", ".join(k.params.model_fields) or "none"
        raise FaultError(f"{kind}: bad parameter {where}: {first['msg']} (parameters: {allowed})") from e
    try:
        if kind == "quota_fill" and target is None:
            spec, chosen = lab.member(current_leader(lab) or lab.member_names()[0]), "default: the leader"
        else:
            spec, chosen = resolve_target(lab, target)
    except LabError as e:
        raise FaultError(f"{kind}: {e}") from e
    fid = fid or f"etcd-{uuid.uuid4().hex[:12]}"
    try:
        done, effect, undo = k.run(lab, spec, p, fid)
    except (LabError, EtcdError, OSError) as e:
        raise FaultError(f"{kind} on {spec.name}: could not inject: {e}") from e
    return {"id": fid, "kind": kind, "target": spec.name, "target_chosen": chosen, "params": p.model_dump(),
            "lab_dir": str(lab.run_dir), "injected_at": _now(), "done": done, "effect": effect, "undo": undo}


# -- revert -------------------------------------------------------------------------------------

def _start(lab: EtcdLab, step: dict) -> tuple[str, str]:
    result = lab.start_member(step["member"])
    if result == "already running":
        return "nothing", f"{step['member']} was already running"
    return "undone", f"started {step['member']}"


def _signal(lab: EtcdLab, step: dict) -> tuple[str, str]:
    rec = ProcessRecord(name=step["member"], pid=step["pid"], starttime=step["starttime"], argv=[], log="")
    state = processes.process_state(rec)
    if state in (processes.STOPPED, processes.ZOMBIE):
        return "nothing", f"{step['member']} (pid {step['pid']}) no longer exists; nothing to resume"
    if state != processes.PAUSED:
        return "nothing", f"{step['member']} (pid {step['pid']}) is not stopped"
    processes.signal_and_wait(rec, signal.Signals[step["signal"]])
    return "undone", f"{step['signal']} {step['member']} (pid {step['pid']})"


def _unpause(lab: EtcdLab, step: dict) -> tuple[str, str]:
    unpause = getattr(lab, "unpause", None)
    if unpause is None:
        raise FaultError(f"{step['member']} was paused in a Docker lab, and the lab in {lab.run_dir} is not one")
    return unpause(step["member"], step["container"])


def _chain(lab: EtcdLab, step: dict) -> tuple[str, str]:
    chain = netfault.Chain(step["chain"])
    existed = not chain.gone()
    chain.delete()
    if not chain.gone():
        raise FaultError(f"iptables chain {chain.name} is still there after deleting it")
    lab.forget_chain(chain.name)
    return ("undone", f"deleted iptables chain {chain.name}") if existed else \
        ("nothing", f"iptables chain {chain.name} was already gone")


def _remove_file(lab: EtcdLab, step: dict) -> tuple[str, str]:
    path = Path(step["path"])
    if not path.exists():
        return "nothing", f"{path} is already gone"
    path.unlink()
    return "undone", f"removed {path} ({step['member']} has {lab.free_bytes(step['member'])} bytes free)"


def _stop_tracer(lab: EtcdLab, step: dict) -> tuple[str, str]:
    rec = ProcessRecord(name=step["name"], pid=step["pid"], starttime=step["starttime"], argv=[], log="")
    if not processes.is_live(rec):
        lab.forget_process(step["name"])
        return "nothing", f"strace (pid {step['pid']}) had already stopped"
    processes.send(rec, signal.SIGINT)  # strace detaches from its tracee on SIGINT
    if not processes.wait_dead(rec, 5.0):
        processes.stop(rec, 2.0)
    processes.reap(rec.pid)
    lab.forget_process(step["name"])
    member = step["member"]
    if not _wait(lambda: lab.process_state(member) != processes.PAUSED, 5.0):
        raise FaultError(f"{member} is still stopped after strace detached")
    return "undone", f"strace (pid {step['pid']}) detached from {member}"


def _delete_prefix(lab: EtcdLab, step: dict) -> tuple[str, str]:
    url = next((m.client_url for m in lab.state.members if running(lab, m.name)), None)
    if url is None:
        raise FaultError(f"no member runs: cannot delete {step['prefix']}")
    deleted = asyncio.run(_delete(url, step["prefix"]))
    return ("undone", f"deleted {deleted} key(s) under {step['prefix']}") if deleted else \
        ("nothing", f"no key left under {step['prefix']}")


async def _delete(url: str, prefix: str) -> int:
    client = EtcdClient(timeout=10.0)
    try:
        return await client.delete_prefix(url, prefix)
    finally:
        await client.aclose()


def _quota_recover(lab: EtcdLab, step: dict) -> tuple[str, str]:
    return asyncio.run(_quota_recover_async(lab, step["prefix"]))


async def _quota_recover_async(lab: EtcdLab, prefix: str) -> tuple[str, str]:
    client = EtcdClient(timeout=2.0)
    try:
        urls = {m.name: m.client_url for m in lab.state.members if running(lab, m.name)}
        if not urls:
            raise FaultError("no member runs: cannot delete the filler key")
        url = next(iter(urls.values()))
        deleted = await client.delete_prefix(url, prefix, timeout=10.0)
        status = await client.status(url)
        quota = lab.state.flags.quota_bytes
        sizes = {name: as_int((await client.status(u)).get("dbSize")) for name, u in urls.items()}
        alarmed = bool(status.get("errors")) and any("alarm:" in str(e) for e in status["errors"])
        done = [f"deleted {deleted} key(s) under {prefix}"]
        if alarmed or max(sizes.values()) > quota // 2:
            revision = as_int((status.get("header") or {}).get("revision"))
            with contextlib.suppress(EtcdError):  # "already compacted" is fine
                await client.compact(url, revision)
            for u in urls.values():
                await client.defragment(u)
            # An alarm a member proposed just before (a write it failed on a file still over the
            # quota) may be applied after a listing: disarm until two listings 0.3 s apart are empty.
            empty = 0
            for _ in range(10):
                alarms = await client.alarms(url)
                for alarm in alarms:
                    await client.disarm(url, str(alarm.get("memberID")), str(alarm.get("alarm")))
                empty = 0 if alarms else empty + 1
                if empty == 2:
                    break
                await asyncio.sleep(0.3)
            done.append(f"compacted at {revision}, defragmented {', '.join(urls)}, disarmed alarms")
        return ("undone" if deleted or len(done) > 1 else "nothing"), "; ".join(done)
    finally:
        await client.aclose()


STEPS: dict[str, Callable[[EtcdLab, dict], tuple[str, str]]] = {
    "start_member": _start, "signal": _signal, "unpause": _unpause, "chain": _chain, "remove_file": _remove_file,
    "stop_tracer": _stop_tracer, "quota_recover": _quota_recover, "delete_prefix": _delete_prefix,
}


def revert(lab: EtcdLab, record: dict) -> dict:
    report: dict = {"id": record.get("id"), "kind": record.get("kind"), "target": record.get("target"),
                    "reverted_at": _now(), "undone": [], "nothing_to_do": [], "failed": []}
    for step in record.get("undo", []):
        run = STEPS.get(step.get("op"))
        try:
            if run is None:
                raise FaultError(f"unknown undo step {step.get('op')!r}")
            outcome, text = run(lab, step)
        except Exception as e:  # one failed step must not keep the others from being undone
            report["failed"].append({"step": step, "reason": f"{type(e).__name__}: {e}"})
            continue
        report["undone" if outcome == "undone" else "nothing_to_do"].append(text)
    report["ok"] = not report["failed"]
    return report
