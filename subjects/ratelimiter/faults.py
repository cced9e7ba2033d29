"""Faults for the rate limiter lab, each recorded with exactly what undoes it.

``plan(lab, kind, target=None, params=None, name=None) -> record`` writes down the target and the
complete undo and changes nothing; ``apply(lab, record)`` then makes the fault. The evaluation
harness stores the planned record before applying it (write-ahead), so a crash in between still
leaves an undo on record. ``inject`` is the two at once (for `operator-tui chaos`), and
``revert(lab, record) -> report`` undoes a record.

A record is plain JSON::

    {"id", "kind", "target", "target_chosen": "given" | "default: ...", "params": {...},
     "lab_dir", "planned_at", "injected_at", "expires_at": iso | null, "done": [text, ...],
     "facts": {...}, "undo": [step, ...]}

``facts`` are what the fault's effect and revert checks (`fault_checks`) need that the undo does
not say: the process a kill or pause hit (pid and start time), a partition's rules, a filler's size.

Undo steps (executed in order by `revert`):

- ``{"op": "start_node", "node"}``                         start the node if it is not running
- ``{"op": "signal", "process", "pid", "starttime", "signal": "SIGCONT"}``  only if that very
  process still exists
- ``{"op": "node_config", "node", "url", "config": {"fail_mode"?, "cache_ttl_ms"?}, "flush": bool}``
- ``{"op": "link", "link", "mode", "delay_ms"}``          set a proxy link back
- ``{"op": "redis_unpause", "until": iso}``                ``CLIENT UNPAUSE``, unless the pause
  already ended by itself
- ``{"op": "chain", "chain"}``                             delete that iptables chain and its jump
  (host step: needs no lab)
- ``{"op": "remove_file", "path"}``                        delete a filler file (host step)
- ``{"op": "redis_bgsave"}``                               ask Redis to save now, so that it takes
  writes again at once rather than at its next retry (a full disk made it refuse them)

The report of `revert` is ``{"id", "kind", "target", "reverted_at", "undone": [text],
"nothing_to_do": [text], "failed": [{"step", "reason"}], "ok": bool}``. Reverting twice, after the
lab was restarted, or after the process died never raises: what could not be undone is listed
under ``failed`` (and ``ok`` is false), what was already undone under ``nothing_to_do``. With
``host_only`` (the lab is gone: its processes, links and disk went with it) only the host steps
run: a chain outlives the lab that it cut.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from subjects import netfault
from subjects.ratelimiter import processes, tmpfs
from subjects.ratelimiter.lab import REDIS_PROCESS, LabError, RateLimiterLab
from subjects.ratelimiter.processes import ProcessRecord

HTTP_TIMEOUT_S = 3.0
HOST_STEPS = ("chain", "remove_file")
CHAIN_PREFIX = "OPRL"


class FaultError(ValueError):
    """Unknown kind, bad parameters, unknown or unsuitable target."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(_Params):
    """The kind takes no parameters (any given is an error)."""


class RedisPauseParams(_Params):
    mode: Literal["client_pause", "sigstop"] = "client_pause"
    duration_ms: int = Field(default=30_000, ge=100, le=600_000)


class DriftParams(_Params):
    ttl_ms: int = Field(default=60_000, ge=100, le=3_600_000)


class FailOpenParams(_Params):
    link_mode: Literal["reset", "blackhole"] = "reset"


class LatencyParams(_Params):
    delay_ms: int = Field(default=200, ge=1, le=60_000)


class PartitionParams(_Params):
    chain: str | None = Field(
        default=None, pattern=netfault.CHAIN_NAME.pattern,
        description="the iptables chain to hold the rules (unique per fault); default: one made up")


class DiskFullParams(_Params):
    leave_kb: int = Field(default=0, ge=0, le=1_048_576, description="free space to leave, in KiB")


def _now() -> datetime:
    return datetime.now(UTC)


def _default_node(lab: RateLimiterLab) -> str:
    for node_id in lab.node_ids():
        if lab.node_process(node_id)["state"] == processes.RUNNING:
            return node_id
    raise FaultError("no node is running, so there is no default target")


def _node_target(lab: RateLimiterLab, target: str | None) -> tuple[str, str]:
    if target is None:
        return _default_node(lab), "default: first running node"
    nodes = lab.node_ids()
    if target not in nodes:
        raise FaultError(f"unknown target {target!r}; nodes: {', '.join(nodes)}")
    return target, "given"


def _post(url: str, body: dict | None = None) -> dict:
    r = httpx.post(url, json=body, timeout=HTTP_TIMEOUT_S)
    r.raise_for_status()
    return r.json()


def _get(url: str) -> dict:
    r = httpx.get(url, timeout=HTTP_TIMEOUT_S)
    r.raise_for_status()
    return r.json()


# -- kinds: each one a plan (undo and facts, no change) and an apply ---------------------------
#
# plan(lab, target, params, name) -> (undo steps, facts)
# apply(lab, target, params, record) -> (done, expires_at); may add to record["undo"], never relies on it


Planned = tuple[list[dict], dict]
Applied = tuple[list[str], datetime | None]


def _running_node(lab: RateLimiterLab, node: str) -> dict:
    proc = lab.node_process(node)
    if proc["state"] != processes.RUNNING:
        raise FaultError(f"node {node} is not running (process {proc['state']})")
    return proc


def _victim(proc: dict | ProcessRecord) -> dict:
    if isinstance(proc, ProcessRecord):
        return {"pid": proc.pid, "starttime": proc.starttime}
    return {"pid": proc["pid"], "starttime": proc["starttime"]}


def _plan_node_kill(lab: RateLimiterLab, node: str, p: NoParams, name: str | None) -> Planned:
    return [{"op": "start_node", "node": node}], {"process": _victim(_running_node(lab, node))}


def _apply_node_kill(lab: RateLimiterLab, node: str, p: NoParams, record: dict) -> Applied:
    victim = record["facts"]["process"]
    if lab.node_process(node)["pid"] != victim["pid"]:
        raise FaultError(f"node {node} was restarted since the fault was planned")
    lab.kill_node(node)
    return [f"SIGKILL {node} (pid {victim['pid']})"], None


def _signal_undo(process: str, proc: dict) -> dict:
    return {"op": "signal", "process": process, **_victim(proc), "signal": "SIGCONT"}


def _plan_node_pause(lab: RateLimiterLab, node: str, p: NoParams, name: str | None) -> Planned:
    proc = _running_node(lab, node)
    return [_signal_undo(node, proc)], {"process": _victim(proc)}


def _apply_node_pause(lab: RateLimiterLab, node: str, p: NoParams, record: dict) -> Applied:
    victim = record["facts"]["process"]
    if lab.node_process(node)["pid"] != victim["pid"]:
        raise FaultError(f"node {node} was restarted since the fault was planned")
    lab.pause_node(node)
    return [f"SIGSTOP {node} (pid {victim['pid']})"], None


def _plan_redis_pause(lab: RateLimiterLab, target: str, p: RedisPauseParams, name: str | None) -> Planned:
    rec = lab.process(REDIS_PROCESS)
    if processes.process_state(rec) != processes.RUNNING:
        raise FaultError(f"redis-server is not running (process {processes.process_state(rec)})")
    if p.mode == "sigstop":
        undo = _signal_undo(REDIS_PROCESS, {"pid": rec.pid, "starttime": rec.starttime})
        return [undo], {"process": _victim(rec)}
    # `until` is set when the pause starts; without it the revert unpauses unconditionally.
    return [{"op": "redis_unpause", "until": None}], {"process": _victim(rec)}


def _apply_redis_pause(lab: RateLimiterLab, target: str, p: RedisPauseParams, record: dict) -> Applied:
    if p.mode == "sigstop":
        lab.pause_redis()
        return [f"SIGSTOP redis-server (pid {record['facts']['process']['pid']})"], None
    client = lab.redis()
    try:
        # WRITE: scripts and writes block (checks, heartbeats) while PING and reads still answer,
        # and CLIENT UNPAUSE can still get through to end it early.
        client.execute_command("CLIENT", "PAUSE", p.duration_ms, "WRITE")
    finally:
        client.close()
    expires = _now() + timedelta(milliseconds=p.duration_ms)
    for step in record["undo"]:
        if step["op"] == "redis_unpause":
            step["until"] = expires.isoformat()
    return [f"CLIENT PAUSE {p.duration_ms} WRITE"], expires


def _node_config_undo(lab: RateLimiterLab, node: str, keys: tuple[str, ...], flush: bool) -> dict:
    url = lab.node_urls()[node]
    before = _get(f"{url}/admin/config")
    return {"op": "node_config", "node": node, "url": url, "config": {k: before[k] for k in keys}, "flush": flush}


def _plan_counter_drift(lab: RateLimiterLab, node: str, p: DriftParams, name: str | None) -> Planned:
    return [_node_config_undo(lab, node, ("cache_ttl_ms",), flush=True)], {}


def _apply_counter_drift(lab: RateLimiterLab, node: str, p: DriftParams, record: dict) -> Applied:
    url = lab.node_urls()[node]
    _post(f"{url}/admin/config", {"cache_ttl_ms": p.ttl_ms})
    before = record["undo"][0]["config"]["cache_ttl_ms"]
    return [f"{node}: local cache ttl {before} -> {p.ttl_ms} ms"], None


def _link_undo(link: str, state: dict) -> dict:
    return {"op": "link", "link": link, "mode": state["mode"], "delay_ms": state["delay_ms"]}


def _plan_fail_open(lab: RateLimiterLab, node: str, p: FailOpenParams, name: str | None) -> Planned:
    restore_mode = _node_config_undo(lab, node, ("fail_mode",), flush=False)
    return [_link_undo(node, lab.links()[node]), restore_mode], {}


def _apply_fail_open(lab: RateLimiterLab, node: str, p: FailOpenParams, record: dict) -> Applied:
    restore_link, restore_mode = record["undo"]
    _post(f"{restore_mode['url']}/admin/config", {"fail_mode": "open"})
    try:
        lab.set_link(node, p.link_mode)
    except LabError:
        _run_step(lab, restore_mode)  # do not leave half a fault behind
        raise
    return [
        f"{node}: fail_mode {restore_mode['config']['fail_mode']} -> open",
        f"link {node}: {restore_link['mode']} -> {p.link_mode}",
    ], None


def _plan_redis_latency(lab: RateLimiterLab, target: str, p: LatencyParams, name: str | None) -> Planned:
    links = lab.links()
    names = list(links) if target == "*" else [target]
    return [_link_undo(n, links[n]) for n in names], {"links": names}


def _apply_redis_latency(lab: RateLimiterLab, target: str, p: LatencyParams, record: dict) -> Applied:
    lab.set_link(target, "delay", p.delay_ms)
    return [f"link {n}: delay {p.delay_ms} ms" for n in record["facts"]["links"]], None


def _plan_partition(lab: RateLimiterLab, node: str, p: PartitionParams, name: str | None) -> Planned:
    state = lab.state
    spec = state.node(node)
    rec = state.processes.get(node)
    cgroup = rec.cgroup if rec is not None else None
    chain = p.chain or name or f"{CHAIN_PREFIX}{uuid.uuid4().hex[:10]}"
    if not netfault.CHAIN_NAME.match(chain):
        raise FaultError(f"partition: bad chain name {chain!r} (letters, digits, _ and -, at most 28)")
    # Whatever the node sends towards Redis: its own proxy link, and Redis itself. The rule names
    # the node's address and, when it has one, its cgroup; the direct-to-Redis rule is added only
    # when one of them tells the node apart (on the default lab everyone shares 127.0.0.1).
    rules = [{"src": spec.host, "dst": spec.link_host, "dport": spec.link_port, "cgroup": cgroup}]
    if cgroup or spec.host != state.redis_host:
        rules.append({"src": spec.host, "dst": state.redis_host, "dport": state.redis_port, "cgroup": cgroup})
    facts = {"chain": chain, "rules": rules, "node_url": spec.url, "cgroup": cgroup}
    return [{"op": "chain", "chain": chain}], facts


def _apply_partition(lab: RateLimiterLab, node: str, p: PartitionParams, record: dict) -> Applied:
    chain = netfault.Chain(record["facts"]["chain"])
    if chain.exists():
        raise FaultError(f"iptables chain {chain.name} already exists: a chain belongs to one fault")
    try:
        chain.create()
        done = [f"iptables chain {chain.name} from OUTPUT"]
        for rule in record["facts"]["rules"]:
            spec = chain.drop(**rule)
            done.append("DROP " + " ".join(spec))
    except BaseException:
        chain.delete()  # never half a partition
        raise
    return done, None


def _plan_disk_full(lab: RateLimiterLab, target: str, p: DiskFullParams, name: str | None) -> Planned:
    disk = lab.state.redis_disk
    if disk is None:
        raise FaultError("this lab's Redis has no disk of its own to fill: start the lab with --redis-disk-mb")
    if not tmpfs.is_mounted(disk.path):
        raise FaultError(f"Redis's disk {disk.path} is not mounted")
    stem = name if name and name.replace("-", "").replace("_", "").isalnum() else uuid.uuid4().hex[:10]
    filler = str(Path(disk.path) / f"spool-{stem}.dat")  # a neutral name: it reveals nothing to an agent
    facts = {"mount": disk.path, "filler": filler, "free_before": tmpfs.usage(disk.path)["free_bytes"],
             "leave_bytes": p.leave_kb * 1024}
    return [{"op": "remove_file", "path": filler}, {"op": "redis_bgsave"}], facts


def _apply_disk_full(lab: RateLimiterLab, target: str, p: DiskFullParams, record: dict) -> Applied:
    facts = record["facts"]
    filler = Path(facts["filler"])
    if filler.exists():
        raise FaultError(f"{filler} already exists: a filler belongs to one fault")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    size = 0
    try:
        # The free space moves while Redis writes: take what is free now, a little less on ENOSPC.
        for _ in range(20):
            size = max(0, tmpfs.usage(facts["mount"])["free_bytes"] - facts["leave_bytes"])
            try:
                if size:
                    os.posix_fallocate(fd, 0, size)
                break
            except OSError:
                facts["leave_bytes"] += 4096
        else:
            raise FaultError(f"could not fill {facts['mount']}")
    except BaseException:
        os.close(fd)
        filler.unlink(missing_ok=True)
        raise
    os.close(fd)
    facts["size"] = size
    return [f"filled {facts['mount']} with {size} bytes ({filler})"], None


@dataclass(frozen=True)
class Kind:
    name: str
    description: str
    target: Literal["node", "redis", "links"]  # what `target` names for this kind
    params: type[_Params]
    plan: Callable[..., Planned]
    apply: Callable[..., Applied]
    self_heals: bool = False  # ends by itself in its default mode (CLIENT PAUSE has a duration)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("node_kill", "SIGKILL one node; revert starts it again", "node", NoParams,
             _plan_node_kill, _apply_node_kill),
        Kind("node_pause", "SIGSTOP one node; revert SIGCONTs it", "node", NoParams,
             _plan_node_pause, _apply_node_pause),
        Kind("redis_pause", "stall Redis: CLIENT PAUSE WRITE for duration_ms (self-ending), or SIGSTOP "
             "redis-server", "redis", RedisPauseParams, _plan_redis_pause, _apply_redis_pause, self_heals=True),
        Kind("counter_drift", "turn on a long-lived local cache on one node so it over-admits; revert turns it "
             "off and flushes it", "node", DriftParams, _plan_counter_drift, _apply_counter_drift),
        Kind("fail_open", "set one node to fail_mode open and cut its Redis link; revert restores both",
             "node", FailOpenParams, _plan_fail_open, _apply_fail_open),
        Kind("redis_latency", "delay Redis round trips on one node's link or on all links (*); revert restores "
             "them", "links", LatencyParams, _plan_redis_latency, _apply_redis_latency),
        Kind("partition", "cut one node from Redis with iptables DROP rules (its address and cgroup to its "
             "proxy link and to Redis) in a chain of its own; revert deletes the chain", "node",
             PartitionParams, _plan_partition, _apply_partition),
        Kind("redis_disk_full", "fill Redis's data disk (a tmpfs: lab up --redis-disk-mb) with a filler file, "
             "so its saves fail and it refuses writes; revert removes the filler", "redis", DiskFullParams,
             _plan_disk_full, _apply_disk_full),
    )
}


def describe_kinds() -> list[dict]:
    """Every kind with its description, target and parameter JSON schema (for `chaos list`)."""
    return [
        {
            "kind": k.name,
            "description": k.description,
            "target": k.target,
            "params": k.params.model_json_schema(),
        }
        for k in KINDS.values()
    ]


def _resolve_target(lab: RateLimiterLab, k: Kind, target: str | None) -> tuple[str, str]:
    if k.target == "node":
        return _node_target(lab, target)
    if k.target == "redis":
        if target not in (None, "redis"):
            raise FaultError(f"{k.name} targets redis; leave the target out or give 'redis', not {target!r}")
        return "redis", "given" if target else "default: redis"
    if target in (None, "*"):
        return "*", "given" if target else "default: every link (*)"
    return _node_target(lab, target)


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; kinds: {', '.join(KINDS)}")
    return KINDS[kind]


def _params(k: Kind, params: dict | None) -> _Params:
    try:
        return k.params.model_validate(params or {})
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"]) or "params"
        allowed = ", ".join(k.params.model_fields) or "none"
        raise FaultError(f"{k.name}: bad parameter {where}: {first['msg']} (parameters: {allowed})") from e


def plan(
    lab: RateLimiterLab, kind: str, target: str | None = None, params: dict | None = None, name: str | None = None
) -> dict:
    """The fault's record with its complete undo, before anything changes. `name` makes what the
    fault creates on the host unique (a partition's chain, a filler's file name)."""
    k = _kind(kind)
    p = _params(k, params)
    fault_id = f"rl-{uuid.uuid4().hex[:12]}"
    try:
        resolved, chosen = _resolve_target(lab, k, target)
        undo, facts = k.plan(lab, resolved, p, name)
    except (LabError, httpx.HTTPError) as e:
        raise FaultError(f"{kind}: {e}") from e
    return {
        "id": fault_id,
        "kind": kind,
        "target": resolved,
        "target_chosen": chosen,
        "params": p.model_dump(),
        "lab_dir": str(lab.run_dir),
        "planned_at": _now().isoformat(),
        "injected_at": None,
        "expires_at": None,
        "done": [],
        "facts": facts,
        "undo": undo,
    }


def apply(lab: RateLimiterLab, record: dict) -> dict:
    """Make the planned fault (the record is updated in place and returned)."""
    k = _kind(record["kind"])
    p = _params(k, record["params"])
    try:
        done, expires = k.apply(lab, record["target"], p, record)
    except (LabError, httpx.HTTPError, OSError, netfault.NetFaultError) as e:
        raise FaultError(f"{k.name} on {record['target']}: could not inject: {e}") from e
    record.update(done=done, injected_at=_now().isoformat(), expires_at=expires.isoformat() if expires else None)
    return record


def inject(lab: RateLimiterLab, kind: str, target: str | None = None, params: dict | None = None) -> dict:
    return apply(lab, plan(lab, kind, target, params))


# -- revert -------------------------------------------------------------------------------------


def _run_step(lab: RateLimiterLab, step: dict) -> tuple[str, str]:
    """Run one undo step; returns (outcome, text) with outcome undone | nothing | failed."""
    op = step.get("op")
    if op == "start_node":
        result = lab.start_node(step["node"])
        return (
            ("nothing", f"{step['node']} was already running")
            if result == "already running"
            else (
                "undone",
                f"started {step['node']}",
            )
        )
    if op == "signal":
        rec = ProcessRecord(
            name=step["process"], pid=step["pid"], starttime=step["starttime"], argv=[], log=""
        )
        state = processes.process_state(rec)
        if state in (processes.STOPPED, processes.ZOMBIE):
            return "nothing", f"{step['process']} (pid {step['pid']}) no longer exists; nothing to resume"
        if state != processes.PAUSED:
            return "nothing", f"{step['process']} (pid {step['pid']}) is not stopped"
        processes.signal_and_wait(rec, signal.Signals[step["signal"]])
        return "undone", f"{step['signal']} {step['process']} (pid {step['pid']})"
    if op == "node_config":
        current = _get(f"{step['url']}/admin/config")
        changes = {k: v for k, v in step["config"].items() if current.get(k) != v}
        flushed = _post(f"{step['url']}/admin/config", changes)["flushed"] if changes else 0
        if step.get("flush"):
            flushed += _post(f"{step['url']}/admin/cache/flush")["flushed"]
        if not changes and not flushed:
            return "nothing", f"{step['node']}: config already {step['config']}"
        text = f"{step['node']}: config {changes or 'unchanged'}"
        return "undone", text + (f", flushed {flushed} cache entries" if step.get("flush") else "")
    if op == "link":
        current = lab.links().get(step["link"])
        if (
            current is not None
            and current["mode"] == step["mode"]
            and current["delay_ms"] == step["delay_ms"]
        ):
            return "nothing", f"link {step['link']} already {step['mode']}"
        lab.set_link(step["link"], step["mode"], step["delay_ms"])
        return "undone", f"link {step['link']} -> {step['mode']}" + (
            f" {step['delay_ms']} ms" if step["mode"] == "delay" else ""
        )
    if op == "redis_unpause":
        until = step.get("until")
        if until and datetime.fromisoformat(until) <= _now():
            # Unpausing now could end somebody else's pause; ours is over anyway.
            return "nothing", f"the pause ended by itself at {until}"
        client = lab.redis()
        try:
            client.execute_command("CLIENT", "UNPAUSE")
        finally:
            client.close()
        return "undone", "CLIENT UNPAUSE"
    if op == "chain":
        chain = netfault.Chain(step["chain"])
        if chain.gone():
            return "nothing", f"iptables chain {chain.name} is already gone"
        chain.delete()
        return "undone", f"deleted iptables chain {chain.name} and its jump"
    if op == "remove_file":
        path = Path(step["path"])
        if not path.exists():
            return "nothing", f"{path} is already gone"
        path.unlink()
        return "undone", f"removed {path}"
    if op == "redis_bgsave":
        import redis

        client = lab.redis()
        try:
            client.bgsave()
        except redis.ResponseError as e:
            if "in progress" not in str(e):  # a save already under way does the same
                raise
        finally:
            client.close()
        return "undone", "BGSAVE (Redis takes writes again once a save succeeds)"
    raise FaultError(f"unknown undo step {op!r}")


def revert(lab: RateLimiterLab, record: dict, host_only: bool = False) -> dict:
    report: dict = {
        "id": record.get("id"),
        "kind": record.get("kind"),
        "target": record.get("target"),
        "reverted_at": _now().isoformat(),
        "undone": [],
        "nothing_to_do": [],
        "failed": [],
    }
    for step in record.get("undo", []):
        if host_only and step.get("op") not in HOST_STEPS:
            report["nothing_to_do"].append(f"{step.get('op')}: the lab is down, nothing of it is left")
            continue
        try:
            outcome, text = _run_step(lab, step)
        except Exception as e:  # one failed step must not stop the others from being undone
            report["failed"].append({"step": step, "reason": f"{type(e).__name__}: {e}"})
            continue
        report["undone" if outcome == "undone" else "nothing_to_do"].append(text)
    report["ok"] = not report["failed"]
    return report
