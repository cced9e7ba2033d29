"""Faults for the rate limiter lab, each recorded with exactly what undoes it.

``inject(lab, kind, target=None, params=None) -> record`` and ``revert(lab, record) -> report``.

A record is plain JSON::

    {"id", "kind", "target", "target_chosen": "given" | "default: ...", "params": {...},
     "lab_dir", "injected_at", "expires_at": iso | null, "done": [text, ...],
     "undo": [step, ...]}

Undo steps (executed in order by `revert`):

- ``{"op": "start_node", "node"}``                         start the node if it is not running
- ``{"op": "signal", "process", "pid", "starttime", "signal": "SIGCONT"}``  only if that very
  process still exists
- ``{"op": "node_config", "node", "url", "config": {"fail_mode"?, "cache_ttl_ms"?}, "flush": bool}``
- ``{"op": "link", "link", "mode", "delay_ms"}``          set a proxy link back
- ``{"op": "redis_unpause", "until": iso}``                ``CLIENT UNPAUSE``, unless the pause
  already ended by itself
- ``{"op": "unpause", "process", "container"}``            unfreeze a paused container (Docker lab)
- ``{"op": "chain", "chain"}``                             delete a partition's iptables chain, check it gone
- ``{"op": "unfill", "process", "file"}``                  remove a disk filler, save again (Docker lab)

The report of `revert` is ``{"id", "kind", "target", "reverted_at", "undone": [text],
"nothing_to_do": [text], "failed": [{"step", "reason"}], "ok": bool}``. Reverting twice, after the
lab was restarted, or after the process died never raises: what could not be undone is listed
under ``failed`` (and ``ok`` is false), what was already undone under ``nothing_to_do``.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from subjects import netfault
from subjects.ratelimiter import processes
from subjects.ratelimiter.lab import REDIS_PROCESS, LabError, RateLimiterLab
from subjects.ratelimiter.processes import ProcessRecord

HTTP_TIMEOUT_S = 3.0


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
    direction: Literal["both", "clients", "redis"] = "both"


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


# -- kinds --------------------------------------------------------------------------------------


def _running(lab: RateLimiterLab, name: str) -> dict:
    proc = lab.process_info(name)
    if proc["state"] != processes.RUNNING:
        raise FaultError(f"{name} is not running ({proc['state']})")
    return proc


def _node_kill(lab: RateLimiterLab, node: str, p: NoParams) -> tuple[list, list, datetime | None]:
    proc = _running(lab, node)
    lab.kill_node(node)
    return [f"SIGKILL {lab.describe(node, proc)}"], [{"op": "start_node", "node": node}], None


def _node_stop(lab: RateLimiterLab, node: str, p: NoParams) -> tuple[list, list, datetime | None]:
    proc = _running(lab, node)
    outcome = lab.stop_node(node)
    return [f"stop {lab.describe(node, proc)}: {outcome}"], [{"op": "start_node", "node": node}], None


def _node_restart(lab: RateLimiterLab, node: str, p: NoParams) -> tuple[list, list, datetime | None]:
    before = _running(lab, node)
    lab.restart_node(node)
    after = lab.node_process(node)
    # A restart ends by itself; the undo only makes sure the node runs again.
    return ([f"restart {lab.describe(node, before)} -> {lab.describe(node, after)}"],
            [{"op": "start_node", "node": node}], None)


def _node_pause(lab: RateLimiterLab, node: str, p: NoParams) -> tuple[list, list, datetime | None]:
    proc = _running(lab, node)
    lab.pause_node(node)
    return [f"pause {lab.describe(node, proc)}"], [lab.pause_undo(node, proc)], None


def _partition(lab: RateLimiterLab, node: str, p: PartitionParams) -> tuple[list, list, datetime | None]:
    """iptables DROP rules in a chain of the fault's own: packets to the node's address and port (its
    clients: the observer, the load generator, routers) and/or to its Redis link."""
    spec = lab.state.node(node)
    node_host = spec.url.split("//", 1)[1].rsplit(":", 1)[0]
    link_host = spec.redis_url.split("//", 1)[1].rsplit(":", 1)[0]
    chain = netfault.Chain(f"OPRL{uuid.uuid4().hex[:10]}")
    chain.create()
    done = []
    try:
        if p.direction in ("both", "clients"):
            chain.drop(dst=node_host, dport=spec.port)
            done.append(f"DROP tcp to {node_host}:{spec.port} ({node}'s clients)")
        if p.direction in ("both", "redis"):
            chain.drop(dst=link_host, dport=spec.link_port)
            done.append(f"DROP tcp to {link_host}:{spec.link_port} ({node}'s Redis link)")
    except netfault.NetFaultError:
        chain.delete()
        raise
    return [f"iptables chain {chain.name}: " + "; ".join(done)], [{"op": "chain", "chain": chain.name}], None


def _disk_full(lab: RateLimiterLab, target: str, p: NoParams) -> tuple[list, list, datetime | None]:
    _running(lab, REDIS_PROCESS)
    filled = lab.fill_disk(REDIS_PROCESS)
    undo = {"op": "unfill", "process": REDIS_PROCESS, "file": filled["file"]}
    return [f"filled {filled['path']} in the Redis container ({filled['after']['avail_kb']} KiB left); "
            f"BGSAVE: {filled['bgsave']}"], [undo], None


def _redis_pause(lab: RateLimiterLab, target: str, p: RedisPauseParams) -> tuple[list, list, datetime | None]:
    proc = _running(lab, REDIS_PROCESS)
    if p.mode == "sigstop":
        lab.pause_redis()
        return [f"pause {lab.describe('redis-server', proc)}"], [lab.pause_undo(REDIS_PROCESS, proc)], None
    client = lab.redis()
    try:
        # WRITE: scripts and writes block (checks, heartbeats) while PING and reads still answer,
        # and CLIENT UNPAUSE can still get through to end it early.
        client.execute_command("CLIENT", "PAUSE", p.duration_ms, "WRITE")
    finally:
        client.close()
    expires = _now() + timedelta(milliseconds=p.duration_ms)
    return (
        [f"CLIENT PAUSE {p.duration_ms} WRITE"],
        [{"op": "redis_unpause", "until": expires.isoformat()}],
        expires,
    )


def _counter_drift(lab: RateLimiterLab, node: str, p: DriftParams) -> tuple[list, list, datetime | None]:
    url = lab.node_urls()[node]
    before = _get(f"{url}/admin/config")
    _post(f"{url}/admin/config", {"cache_ttl_ms": p.ttl_ms})
    undo = {
        "op": "node_config",
        "node": node,
        "url": url,
        "config": {"cache_ttl_ms": before["cache_ttl_ms"]},
        "flush": True,
    }
    return [f"{node}: local cache ttl {before['cache_ttl_ms']} -> {p.ttl_ms} ms"], [undo], None


def _fail_open(lab: RateLimiterLab, node: str, p: FailOpenParams) -> tuple[list, list, datetime | None]:
    url = lab.node_urls()[node]
    before = _get(f"{url}/admin/config")
    link_before = lab.links()[node]
    _post(f"{url}/admin/config", {"fail_mode": "open"})
    restore_mode = {
        "op": "node_config",
        "node": node,
        "url": url,
        "config": {"fail_mode": before["fail_mode"]},
        "flush": False,
    }
    try:
        lab.set_link(node, p.link_mode)
    except LabError:
        _run_step(lab, restore_mode)  # do not leave half a fault behind
        raise
    restore_link = {
        "op": "link",
        "link": node,
        "mode": link_before["mode"],
        "delay_ms": link_before["delay_ms"],
    }
    done = [
        f"{node}: fail_mode {before['fail_mode']} -> open",
        f"link {node}: {link_before['mode']} -> {p.link_mode}",
    ]
    return done, [restore_link, restore_mode], None


def _redis_latency(lab: RateLimiterLab, target: str, p: LatencyParams) -> tuple[list, list, datetime | None]:
    links = lab.links()
    names = list(links) if target == "*" else [target]
    answer = lab.set_link(target, "delay", p.delay_ms)
    undo = [
        {
            "op": "link",
            "link": n,
            "mode": answer["previous"][n]["mode"],
            "delay_ms": answer["previous"][n]["delay_ms"],
        }
        for n in names
    ]
    return [f"link {n}: delay {p.delay_ms} ms" for n in names], undo, None


@dataclass(frozen=True)
class Kind:
    name: str
    description: str
    target: Literal["node", "redis", "links"]  # what `target` names for this kind
    params: type[_Params]
    run: Callable[..., tuple[list, list, datetime | None]]


_KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            name="node_kill",
            description="SIGKILL one node (a container: docker kill); revert starts it again",
            target="node",
            params=NoParams,
            run=_node_kill,
        ),
        Kind(
            name="node_stop",
            description="stop one node (SIGTERM, SIGKILL after 5 s; a container: docker stop); revert starts it",
            target="node",
            params=NoParams,
            run=_node_stop,
        ),
        Kind(
            name="node_restart",
            description="restart one node (a container: docker restart); revert makes sure it runs",
            target="node",
            params=NoParams,
            run=_node_restart,
        ),
        Kind(
            name="partition",
            description="iptables DROP on one node's address: its clients (direction clients), its Redis link "
                        "(redis) or both; revert deletes the chain and checks it gone",
            target="node",
            params=PartitionParams,
            run=_partition,
        ),
        Kind(
            name="disk_full",
            description="fill Redis's data disk (a size-limited tmpfs in the Docker lab) so saves fail and "
                        "writes are refused; revert removes the filler and saves again",
            target="redis",
            params=NoParams,
            run=_disk_full,
        ),
        Kind(
            name="node_pause",
            description="pause one node (SIGSTOP; a container: the cgroup freezer); revert resumes it",
            target="node",
            params=NoParams,
            run=_node_pause,
        ),
        Kind(
            name="redis_pause",
            description="stall Redis: CLIENT PAUSE WRITE for duration_ms (self-ending), or SIGSTOP redis-server",
            target="redis",
            params=RedisPauseParams,
            run=_redis_pause,
        ),
        Kind(
            name="counter_drift",
            description="turn on a long-lived local cache on one node so it over-admits; revert turns it off and flushes it",
            target="node",
            params=DriftParams,
            run=_counter_drift,
        ),
        Kind(
            name="fail_open",
            description="set one node to fail_mode open and cut its Redis link; revert restores both",
            target="node",
            params=FailOpenParams,
            run=_fail_open,
        ),
        Kind(
            name="redis_latency",
            description="delay Redis round trips on one node's link or on all links (*); revert restores them",
            target="links",
            params=LatencyParams,
            run=_redis_latency,
        ),
    )
}


ORDER = ("node_kill", "node_pause", "redis_pause", "counter_drift", "fail_open", "redis_latency",
         "node_stop", "node_restart", "partition", "disk_full")
KINDS: dict[str, Kind] = {name: _KINDS[name] for name in ORDER}


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


def inject(lab: RateLimiterLab, kind: str, target: str | None = None, params: dict | None = None) -> dict:
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
        resolved, chosen = _resolve_target(lab, k, target)
    except LabError as e:
        raise FaultError(f"{kind}: {e}") from e
    try:
        done, undo, expires = k.run(lab, resolved, p)
    except (LabError, httpx.HTTPError, netfault.NetFaultError) as e:
        raise FaultError(f"{kind} on {resolved}: could not inject: {e}") from e
    return {
        "id": f"rl-{uuid.uuid4().hex[:12]}",
        "kind": kind,
        "target": resolved,
        "target_chosen": chosen,
        "params": p.model_dump(),
        "lab_dir": str(lab.run_dir),
        "injected_at": _now().isoformat(),
        "expires_at": expires.isoformat() if expires else None,
        "done": done,
        "undo": undo,
    }


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
    if op == "chain":
        chain = netfault.Chain(step["chain"])
        if chain.gone():
            return "nothing", f"iptables chain {chain.name} already gone"
        chain.delete()
        if not chain.gone():
            raise FaultError(f"iptables chain {chain.name} is still there after deleting it")
        return "undone", f"deleted iptables chain {chain.name} (checked gone)"
    if op == "unfill":
        outcome = lab.unfill_disk(step["process"], step["file"])
        return ("undone" if outcome.startswith("removed") else "nothing"), f"{step['process']} disk: {outcome}"
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
    raise FaultError(f"unknown undo step {op!r}")


def revert(lab: RateLimiterLab, record: dict) -> dict:
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
        try:
            outcome, text = _run_step(lab, step)
        except Exception as e:  # one failed step must not stop the others from being undone
            report["failed"].append({"step": step, "reason": f"{type(e).__name__}: {e}"})
            continue
        report["undone" if outcome == "undone" else "nothing_to_do"].append(text)
    report["ok"] = not report["failed"]
    return report
