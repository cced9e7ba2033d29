"""Faults for the rate limiter lab (process or Docker), each recorded with exactly what undoes it.

``plan(lab, kind, target=None, params=None, name=None) -> record`` writes down the target and the
complete undo and changes nothing; ``apply(lab, record)`` then makes the fault. The evaluation
harness stores the planned record before applying it (write-ahead), so a crash in between still
leaves an undo on record. ``inject`` is the two at once (for `operator-tui chaos`), and
``revert(lab, record) -> report`` undoes a record. The lab (`lab.RateLimiterLab` or
`docker_lab.DockerRateLimiterLab`, whichever `open_lab` gives) does what differs between processes
and containers (kill, stop, pause, the run of a process, Redis's disk); a fault asks it.

A record is plain JSON::

    {"id", "kind", "target", "target_chosen": "given" | "default: ...", "params": {...},
     "lab_dir", "planned_at", "injected_at", "expires_at": iso | null, "done": [text, ...],
     "facts": {...}, "undo": [step, ...]}

``facts`` are what the fault's effect and revert checks (`fault_checks`) need that the undo does
not say: the run a kill, stop, restart or pause hit (pid and start time; a container's id and when
it started), a partition's rules, a filler's size.

Undo steps (executed in order by `revert`):

- ``{"op": "start_node", "node"}``                         start the node if it is not running
- ``{"op": "signal", "process", "pid", "starttime", "signal": "SIGCONT"}``  only if that very
  process still exists
- ``{"op": "unpause", "process", "container"}``            unfreeze a paused container (Docker lab)
- ``{"op": "node_config", "node", "url", "config": {"fail_mode"?, "cache_ttl_ms"?}, "flush": bool}``
- ``{"op": "link", "link", "mode", "delay_ms"}``          set a proxy link back
- ``{"op": "redis_unpause", "until": iso}``                ``CLIENT UNPAUSE``, unless the pause
  already ended by itself
- ``{"op": "chain", "chain"}``                             delete that iptables chain and its jump,
  check it gone (host step: needs no lab)
- ``{"op": "remove_file", "path"}``                        delete a filler file (host step)
- ``{"op": "unfill", "process", "file"}``                  delete a filler inside a container (Docker lab)
- ``{"op": "redis_bgsave"}``                               a save that starts now, and its outcome:
  Redis takes writes again once one succeeds (a full disk made it refuse them)

The report of `revert` is ``{"id", "kind", "target", "reverted_at", "undone": [text],
"nothing_to_do": [text], "failed": [{"step", "reason"}], "ok": bool}``. Reverting twice, after the
lab was restarted, or after the process died never raises: what could not be undone is listed
under ``failed`` (and ``ok`` is false), what was already undone under ``nothing_to_do``. With
``host_only`` (the lab is gone: its processes, containers, links and disk went with it) only the
host steps run: a chain outlives the lab that it cut.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from subjects import netfault, processes
from subjects.processes import ProcessRecord
from subjects.ratelimiter.lab import REDIS_PROCESS, LabError, RateLimiterLab

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
    direction: Literal["redis", "clients", "both"] = Field(
        default="redis", description="what to cut: the node's traffic to Redis (its link and Redis itself), "
                                     "its clients' traffic to it, or both")
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


def _running(lab: RateLimiterLab, name: str) -> dict:
    """The current run of the node or ``redis`` (`lab.process_info`); FaultError unless it runs."""
    proc = lab.process_info(name)
    if proc["state"] != processes.RUNNING:
        raise FaultError(f"{name} is not running ({proc['state']})")
    return proc


def _victim(proc: dict) -> dict:
    """The identity of one run (a process: pid and start time; a container: its id and start)."""
    return {k: proc[k] for k in ("pid", "starttime", "container") if k in proc}


def _still_running(lab: RateLimiterLab, name: str, record: dict) -> dict:
    victim = record["facts"]["process"]
    state, how = lab.run_state(name, victim)
    if state != processes.RUNNING:
        raise FaultError(f"{name} changed since the fault was planned: {how}")
    return victim


def _plan_node_run(lab: RateLimiterLab, node: str, p: NoParams, name: str | None) -> Planned:
    """node_kill, node_stop, node_restart: the run hit; the undo starts the node unless it runs."""
    return [{"op": "start_node", "node": node}], {"process": _victim(_running(lab, node))}


def _apply_node_kill(lab: RateLimiterLab, node: str, p: NoParams, record: dict) -> Applied:
    victim = _still_running(lab, node, record)
    lab.kill_node(node)
    return [f"SIGKILL {lab.describe(node, victim)}"], None


def _apply_node_stop(lab: RateLimiterLab, node: str, p: NoParams, record: dict) -> Applied:
    victim = _still_running(lab, node, record)
    outcome = lab.stop_node(node)
    return [f"stop {lab.describe(node, victim)}: {outcome}"], None


def _apply_node_restart(lab: RateLimiterLab, node: str, p: NoParams, record: dict) -> Applied:
    victim = _still_running(lab, node, record)
    lab.restart_node(node)
    after = lab.process_info(node)
    record["facts"]["after"] = _victim(after)
    # A restart ends by itself; the undo only makes sure the node runs again.
    return [f"restart {lab.describe(node, victim)} -> {lab.describe(node, after)}"], None


def _plan_node_pause(lab: RateLimiterLab, node: str, p: NoParams, name: str | None) -> Planned:
    proc = _running(lab, node)
    return [lab.pause_undo(node, proc)], {"process": _victim(proc)}


def _apply_node_pause(lab: RateLimiterLab, node: str, p: NoParams, record: dict) -> Applied:
    victim = _still_running(lab, node, record)
    lab.pause_node(node)
    return [f"pause {lab.describe(node, victim)}"], None


def _plan_redis_pause(lab: RateLimiterLab, target: str, p: RedisPauseParams, name: str | None) -> Planned:
    proc = _running(lab, REDIS_PROCESS)
    if p.mode == "sigstop":
        return [lab.pause_undo(REDIS_PROCESS, proc)], {"process": _victim(proc)}
    # `until` is set when the pause starts; without it the revert unpauses unconditionally.
    return [{"op": "redis_unpause", "until": None}], {"process": _victim(proc)}


def _apply_redis_pause(lab: RateLimiterLab, target: str, p: RedisPauseParams, record: dict) -> Applied:
    if p.mode == "sigstop":
        victim = _still_running(lab, REDIS_PROCESS, record)
        lab.pause_redis()
        return [f"pause {lab.describe(REDIS_PROCESS, victim)}"], None
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
    cgroup = lab.node_cgroup(node)
    chain = p.chain or name or f"{CHAIN_PREFIX}{uuid.uuid4().hex[:10]}"
    if not netfault.CHAIN_NAME.match(chain):
        raise FaultError(f"partition: bad chain name {chain!r} (letters, digits, _ and -, at most 28)")
    rules = []
    if p.direction in ("redis", "both"):
        # Whatever the node sends towards Redis: its own proxy link, and Redis itself. The rules
        # name the node's own address (every node connects from one, in both labs) and, when it
        # has one, its cgroup (a process; a container has no cgroup v2 path here); the
        # direct-to-Redis rule only when one of them tells the node apart (on the default process
        # lab everyone shares 127.0.0.1).
        rules.append({"src": spec.host, "dst": spec.link_host, "dport": spec.link_port, "cgroup": cgroup})
        if cgroup or spec.host != state.redis_host:
            rules.append({"src": spec.host, "dst": state.redis_host, "dport": state.redis_port, "cgroup": cgroup})
    if p.direction in ("clients", "both"):
        # Whoever connects to the node: the observer, the load generator, routers.
        rules.append({"dst": spec.host, "dport": spec.port})
    facts = {"chain": chain, "rules": rules, "node_url": spec.url, "cgroup": cgroup, "direction": p.direction}
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
    try:
        disk = lab.disk()
    except LabError as e:
        raise FaultError(str(e)) from e
    stem = name if name and name.replace("-", "").replace("_", "").isalnum() else uuid.uuid4().hex[:10]
    filler = lab.disk_filler(stem)
    facts = {"mount": disk.path, "filler": filler, "free_before": lab.disk_usage()["free_bytes"],
             "leave_bytes": p.leave_kb * 1024}
    return [lab.disk_unfill_undo(filler), {"op": "redis_bgsave"}], facts


def _apply_disk_full(lab: RateLimiterLab, target: str, p: DiskFullParams, record: dict) -> Applied:
    facts = record["facts"]
    if lab.disk_holds(facts["filler"]):
        raise FaultError(f"{facts['filler']} already exists: a filler belongs to one fault")
    facts["size"] = lab.disk_fill(facts["filler"], facts["leave_bytes"])
    # A save now rather than at Redis's next save point: with the disk full it fails, and Redis
    # refuses writes from then on.
    saved = lab.save_and_wait()
    return [f"filled {facts['mount']} with {facts['size']} bytes ({facts['filler']}); BGSAVE: {saved}"], None


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
        Kind("node_kill", "SIGKILL one node (a container: docker kill); revert starts it again", "node", NoParams,
             _plan_node_run, _apply_node_kill),
        Kind("node_pause", "pause one node (SIGSTOP; a container: the cgroup freezer); revert resumes it", "node",
             NoParams, _plan_node_pause, _apply_node_pause),
        Kind("redis_pause", "stall Redis: CLIENT PAUSE WRITE for duration_ms (self-ending), or SIGSTOP "
             "redis-server (a container: the freezer)", "redis", RedisPauseParams, _plan_redis_pause,
             _apply_redis_pause, self_heals=True),
        Kind("counter_drift", "turn on a long-lived local cache on one node so it over-admits; revert turns it "
             "off and flushes it", "node", DriftParams, _plan_counter_drift, _apply_counter_drift),
        Kind("fail_open", "set one node to fail_mode open and cut its Redis link; revert restores both",
             "node", FailOpenParams, _plan_fail_open, _apply_fail_open),
        Kind("redis_latency", "delay Redis round trips on one node's link or on all links (*); revert restores "
             "them", "links", LatencyParams, _plan_redis_latency, _apply_redis_latency),
        Kind("node_stop", "stop one node (SIGTERM, SIGKILL after 5 s; a container: docker stop); revert starts it",
             "node", NoParams, _plan_node_run, _apply_node_stop),
        Kind("node_restart", "restart one node (a container: docker restart); it ends by itself, revert makes "
             "sure the node runs", "node", NoParams, _plan_node_run, _apply_node_restart, self_heals=True),
        Kind("partition", "iptables DROP rules in a chain of the fault's own: cut one node from Redis (direction "
             "redis, the default: its link and Redis, matched by the node's address and cgroup), from its "
             "clients (clients: packets to its address and port) or both; revert deletes the chain and checks it "
             "gone", "node", PartitionParams, _plan_partition, _apply_partition),
        Kind("redis_disk_full", "fill Redis's data disk (a tmpfs: lab up --redis-disk-mb, or the Redis "
             "container's in the Docker lab) with a filler file and save: the save fails and Redis refuses "
             "writes; revert removes the filler and saves again", "redis", DiskFullParams,
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
    if op == "unpause":
        outcome = lab.resume(step["process"])
        return ("undone", f"resumed {step['process']}") if outcome == "resumed" else \
            ("nothing", f"{step['process']} {outcome}")
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
        if not chain.gone():
            raise FaultError(f"iptables chain {chain.name} is still there after deleting it")
        return "undone", f"deleted iptables chain {chain.name} and its jump (checked gone)"
    if op == "remove_file":
        path = Path(step["path"])
        if not path.exists():
            return "nothing", f"{path} is already gone"
        path.unlink()
        return "undone", f"removed {path}"
    if op == "unfill":
        outcome = lab.unfill_disk(step["process"], step["file"])
        return ("undone" if outcome == "removed" else "nothing"), f"{step['process']} disk: {outcome} {step['file']}"
    if op == "redis_bgsave":
        saved = lab.save_and_wait()
        if saved != "ok":
            raise FaultError(f"BGSAVE {saved}: Redis still cannot save, so it still refuses writes")
        return "undone", "BGSAVE ok (Redis takes writes again)"
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
