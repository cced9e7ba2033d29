"""Did a fault take effect, and is nothing of it left? One check of each per fault kind.

``effect(lab, record) -> Verdict`` and ``reverted(lab, record) -> Verdict`` look once, at the
mechanism and at what it does to the service (a fault that is "set" but changes nothing did not
land); ``wait(check, timeout_s)`` polls one until it holds. `record` is a fault record of
`faults` (its ``facts`` and ``undo``). ``reverted`` with ``lab=None`` (the lab is gone) checks
only what can outlive a lab: an iptables chain, a filler file on a host disk still mounted. The
lab (process or Docker) says what state one run of a process or container is in.

| kind            | effect                                                   | reverted                                        |
|-----------------|----------------------------------------------------------|-------------------------------------------------|
| node_kill       | that run (pid + start time; a container's run) is gone,  | a live node, not paused, /health 200            |
| node_stop       | and the node's port refuses                              |                                                 |
| node_restart    | that run ended, a new one answers /health as itself      | a live node, not paused, /health 200            |
| node_pause      | /proc/PID/status State T (a container: paused)           | not paused; the node answers /health            |
| redis_pause     | a write stalls (CLIENT PAUSE) / paused (SIGSTOP)         | a write succeeds; not paused                    |
| counter_drift   | the node's cache TTL is the fault's                      | the TTL is back, the node's cache is empty      |
| fail_open       | fail_mode open, link cut, a check admitted fail-open     | fail_mode and link as before                    |
| redis_latency   | link(s) in delay mode, PING through the link that slow   | links as before, PING through them fast         |
| partition       | chain listed with its jump, its counters above zero (and | chain absent from `iptables -S`; node answers   |
|                 | a connection to the node times out, when clients are cut)| /health 200 (it reaches Redis again)            |
| redis_disk_full | free space about 0, a write refused (MISCONF)            | filler gone, free space back, a write succeeds  |
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from subjects import netfault, processes, tmpfs
from subjects.evaluation import Verdict
from subjects.ratelimiter.lab import REDIS_PROCESS, LabError, RateLimiterLab

HTTP_TIMEOUT_S = 2.0
# Neutral names: an agent that reads them learns nothing about what was injected.
WRITE_PROBE_KEY = "rl-lab:write-probe"
PROBE_KEY = "rl-lab:probe"
FULL_SLACK_BYTES = 256 * 1024  # "about 0": what a tmpfs can still hand out after the filler
FAST_PING_MS = 50.0


# -- looking at the lab ---------------------------------------------------------------------------

def _health(url: str) -> tuple[int | None, str]:
    try:
        r = httpx.get(f"{url}/health", timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as e:
        return None, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    try:
        reason = r.json().get("reason") or r.json().get("status", "")
    except ValueError:
        reason = r.text[:100]
    return r.status_code, str(reason)


def _connect(host: str, port: int, timeout_s: float = 1.0) -> str:
    """``accepted``, ``refused`` or ``timed out`` (or another error's name)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return "accepted"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timed out"
    except OSError as e:
        return type(e).__name__


def _write(lab: RateLimiterLab, timeout_s: float = 1.0) -> tuple[bool, str]:
    """One SET straight to redis-server: (ok, what happened)."""
    client = redis.Redis.from_url(lab.redis_url(), socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.set(WRITE_PROBE_KEY, str(time.time()), px=60_000)
        return True, "write ok"
    except redis.RedisError as e:
        return False, f"{type(e).__name__}: {str(e)[:160]}"
    finally:
        client.close()


def _ping_ms(host: str, port: int) -> float | None:
    """One PING through a proxy link, in ms (None when it fails)."""
    client = redis.Redis(host=host, port=port, socket_timeout=5.0, socket_connect_timeout=2.0)
    try:
        client.ping()  # connect first: only the round trip is timed
        started = time.perf_counter()
        client.ping()
        return (time.perf_counter() - started) * 1000
    except redis.RedisError:
        return None
    finally:
        client.close()


def _config(lab: RateLimiterLab, node: str) -> dict:
    r = httpx.get(f"{lab.node_urls()[node]}/admin/config", timeout=HTTP_TIMEOUT_S)
    r.raise_for_status()
    return r.json()


def chain_listed(name: str) -> bool:
    """Whether `iptables -S` (the whole filter table) names the chain anywhere."""
    return bool(netfault.listing_naming(name))


# -- effect ---------------------------------------------------------------------------------------

def _effect_node_gone(lab: RateLimiterLab, record: dict) -> Verdict:
    node = record["target"]
    state, how = lab.run_state(node, record["facts"]["process"])
    spec = lab.state.node(node)
    port = _connect(spec.host, spec.port)
    gone = state in (processes.STOPPED, processes.ZOMBIE)
    ok = gone and port == "refused"
    return Verdict(ok, f"{how}; port {spec.port} {port}", {"process_state": state, "port": port})


def _effect_node_restart(lab: RateLimiterLab, record: dict) -> Verdict:
    node = record["target"]
    state, how = lab.run_state(node, record["facts"]["process"])
    now = lab.node_process(node)
    status, reason = _health(lab.node_urls()[node])
    stats = {}
    if status == 200:
        stats = httpx.get(f"{lab.node_urls()[node]}/api/stats", timeout=HTTP_TIMEOUT_S).json()
    ours = bool(stats) and lab.answers_as(node, stats, now)
    ok = state == processes.STOPPED and now["state"] == processes.RUNNING and ours
    return Verdict(ok, f"old run: {how}; now {lab.describe(node, now)} {now['state']}, /health {status} "
                       f"{'from the new run' if ours else reason}".rstrip(),
                   {"old_run": state, "process": now, "health": status})


def _effect_pause(lab: RateLimiterLab, record: dict) -> Verdict:
    name = REDIS_PROCESS if record["kind"] == "redis_pause" else record["target"]
    state, how = lab.run_state(name, record["facts"]["process"])
    return Verdict(state == processes.PAUSED, how, {"state": state})


def _effect_redis_pause(lab: RateLimiterLab, record: dict) -> Verdict:
    if record["params"].get("mode") == "sigstop":
        return _effect_pause(lab, record)
    ok, what = _write(lab, timeout_s=0.5)
    stalled = not ok and "Timeout" in what
    return Verdict(stalled, f"a write {'stalls' if stalled else 'does not stall'}: {what}", {"write": what})


def _effect_counter_drift(lab: RateLimiterLab, record: dict) -> Verdict:
    config = _config(lab, record["target"])
    want = record["params"]["ttl_ms"]
    return Verdict(config["cache_ttl_ms"] == want, f"{record['target']}: cache_ttl_ms {config['cache_ttl_ms']}",
                   {"config": config})


def _effect_fail_open(lab: RateLimiterLab, record: dict) -> Verdict:
    node = record["target"]
    config = _config(lab, node)
    link = lab.links()[node]
    r = httpx.post(f"{lab.node_urls()[node]}/check", json={"key": PROBE_KEY, "limit": 1_000_000},
                   timeout=HTTP_TIMEOUT_S)
    result = r.json().get("result")
    ok = config["fail_mode"] == "open" and link["mode"] == record["params"]["link_mode"] and result == "allowed_fail_open"
    return Verdict(ok, f"{node}: fail_mode {config['fail_mode']}, link {link['mode']}, a check was {result}",
                   {"fail_mode": config["fail_mode"], "link": link["mode"], "check_result": result})


def _effect_latency(lab: RateLimiterLab, record: dict) -> Verdict:
    delay = record["params"]["delay_ms"]
    links = lab.links()
    measured = {}
    for name in record["facts"]["links"]:
        spec = lab.state.node(name)
        measured[name] = {"mode": links[name]["mode"], "delay_ms": links[name]["delay_ms"],
                          "ping_ms": _ping_ms(spec.link_host, spec.link_port)}
    ok = all(m["mode"] == "delay" and m["delay_ms"] == delay and m["ping_ms"] is not None
             and m["ping_ms"] >= 0.8 * delay for m in measured.values())
    pings = ", ".join(f"{n} {m['ping_ms']:.0f} ms" if m["ping_ms"] is not None else f"{n} failed"
                      for n, m in measured.items())
    return Verdict(ok, f"PING through the delayed link(s): {pings} (delay {delay} ms)", {"links": measured})


def _effect_partition(lab: RateLimiterLab, record: dict) -> Verdict:
    facts = record["facts"]
    chain = netfault.Chain(facts["chain"])
    listed, hooked = chain.exists(), chain.hooked()
    reach = ""
    cut_clients = facts.get("direction") in ("clients", "both")
    if cut_clients:
        spec = lab.state.node(record["target"])
        reach = _connect(spec.host, spec.port, timeout_s=0.5)  # dropped: neither accepted nor refused
    packets = chain.packets()
    status, reason = (None, "") if cut_clients else _health(facts["node_url"])
    ok = listed and hooked and packets > 0 and (not cut_clients or reach == "timed out")
    return Verdict(ok, f"chain {chain.name}: {'listed' if listed else 'MISSING'}, "
                       f"{'hooked' if hooked else 'NOT hooked'}, {packets} packets dropped; {record['target']} "
                       + (f"connect {reach}" if cut_clients else f"/health {status} {reason}".rstrip()),
                   {"chain": chain.name, "rules": chain.rules(), "packets": packets, "node_health": status,
                    "connect": reach or None})


def _effect_disk_full(lab: RateLimiterLab, record: dict) -> Verdict:
    facts = record["facts"]
    free = lab.disk_usage()["free_bytes"]
    ok_write, what = _write(lab)
    refused = not ok_write and "MISCONF" in what
    ok = free <= facts["leave_bytes"] + FULL_SLACK_BYTES and refused
    return Verdict(ok, f"{facts['mount']}: {free} bytes free; a write {'is refused' if refused else 'is not refused'}"
                       f": {what}", {"free_bytes": free, "write": what})


# -- reverted ------------------------------------------------------------------------------------

def _node_back(lab: RateLimiterLab, node: str) -> Verdict:
    proc = lab.node_process(node)
    status, reason = _health(lab.node_urls()[node])
    ok = proc["state"] == processes.RUNNING and status == 200
    return Verdict(ok, f"{node}: process {proc['pid']} {proc['state']}, /health {status} {reason}".rstrip(),
                   {"process": proc, "health": status})


def _reverted_node_run(lab: RateLimiterLab, record: dict) -> Verdict:
    return _node_back(lab, record["target"])


def _reverted_pause(lab: RateLimiterLab, record: dict) -> Verdict:
    name = REDIS_PROCESS if record["kind"] == "redis_pause" else record["target"]
    state, how = lab.run_state(name, record["facts"]["process"])
    if state == processes.PAUSED:
        return Verdict(False, f"still paused: {how}", {"state": state})
    if name == REDIS_PROCESS:
        ok, what = _write(lab)
        return Verdict(ok, f"{how}; {what}", {"state": state, "write": what})
    back = _node_back(lab, name)
    return Verdict(back.ok, f"paused run: {how}; {back.detail}", {"state": state, **back.evidence})


def _reverted_redis_pause(lab: RateLimiterLab, record: dict) -> Verdict:
    if record["params"].get("mode") == "sigstop":
        return _reverted_pause(lab, record)
    ok, what = _write(lab)
    return Verdict(ok, what, {"write": what})


def _reverted_counter_drift(lab: RateLimiterLab, record: dict) -> Verdict:
    node = record["target"]
    want = record["undo"][0]["config"]["cache_ttl_ms"]
    stats = httpx.get(f"{lab.node_urls()[node]}/api/stats", timeout=HTTP_TIMEOUT_S).json()
    ttl, entries = stats["cache"]["ttl_ms"], stats["cache"]["entries"]
    ok = ttl == want and (ttl > 0 or entries == 0)
    return Verdict(ok, f"{node}: cache ttl {ttl} ms (was {want}), {entries} entries", {"cache": stats["cache"]})


def _links_as_before(lab: RateLimiterLab, record: dict) -> tuple[bool, dict]:
    links = lab.links()
    wanted = {s["link"]: (s["mode"], s["delay_ms"]) for s in record["undo"] if s["op"] == "link"}
    now = {name: (links[name]["mode"], links[name]["delay_ms"]) for name in wanted}
    return now == wanted, now


def _reverted_fail_open(lab: RateLimiterLab, record: dict) -> Verdict:
    node = record["target"]
    links_ok, links = _links_as_before(lab, record)
    want = next(s for s in record["undo"] if s["op"] == "node_config")["config"]["fail_mode"]
    mode = _config(lab, node)["fail_mode"]
    return Verdict(links_ok and mode == want, f"{node}: fail_mode {mode} (was {want}), link {links[node][0]}",
                   {"fail_mode": mode, "links": links})


def _reverted_latency(lab: RateLimiterLab, record: dict) -> Verdict:
    links_ok, links = _links_as_before(lab, record)
    pings = {}
    for name in links:
        spec = lab.state.node(name)
        pings[name] = _ping_ms(spec.link_host, spec.link_port)
    fast = all(p is not None and p < FAST_PING_MS for p in pings.values())
    text = ", ".join(f"{n} {p:.0f} ms" if p is not None else f"{n} failed" for n, p in pings.items())
    return Verdict(links_ok and fast, f"links {links}; PING through them: {text}", {"links": links, "ping_ms": pings})


def _reverted_partition(lab: RateLimiterLab | None, record: dict) -> Verdict:
    name = record["facts"]["chain"]
    listed = chain_listed(name)
    if listed or lab is None:
        return Verdict(not listed, f"chain {name} {'still in' if listed else 'absent from'} iptables -S",
                       {"chain_listed": listed})
    status, reason = _health(record["facts"]["node_url"])
    return Verdict(status == 200, f"chain {name} absent from iptables -S; {record['target']} /health {status} "
                                  f"{reason}".rstrip(), {"chain_listed": False, "node_health": status})


def _reverted_disk_full(lab: RateLimiterLab | None, record: dict) -> Verdict:
    facts = record["facts"]
    filler = facts["filler"]
    on_host = any(step["op"] == "remove_file" for step in record["undo"])
    if lab is None or (on_host and not tmpfs.is_mounted(facts["mount"])):
        if not on_host:
            return Verdict(True, f"the lab is down: {filler} went with Redis's container", {})
        gone = not Path(filler).exists()
        return Verdict(gone, f"{facts['mount']} unmounted; filler {'gone' if gone else 'STILL THERE'}",
                       {"filler_exists": not gone})
    held = lab.disk_holds(filler)
    free = lab.disk_usage()["free_bytes"]
    ok_write, what = _write(lab)
    # Redis's own dump file may have grown a little since the fault was planned.
    back = free >= facts["free_before"] - 1024 * 1024
    ok = not held and back and ok_write
    return Verdict(ok, f"filler {'STILL THERE' if held else 'gone'}, {free} bytes free "
                       f"(before: {facts['free_before']}); {what}",
                   {"filler_exists": held, "free_bytes": free, "write": what})


EFFECT: dict[str, Callable[[RateLimiterLab, dict], Verdict]] = {
    "node_kill": _effect_node_gone,
    "node_stop": _effect_node_gone,
    "node_restart": _effect_node_restart,
    "node_pause": _effect_pause,
    "redis_pause": _effect_redis_pause,
    "counter_drift": _effect_counter_drift,
    "fail_open": _effect_fail_open,
    "redis_latency": _effect_latency,
    "partition": _effect_partition,
    "redis_disk_full": _effect_disk_full,
}
REVERTED: dict[str, Callable[[RateLimiterLab, dict], Verdict]] = {
    "node_kill": _reverted_node_run,
    "node_stop": _reverted_node_run,
    "node_restart": _reverted_node_run,
    "node_pause": _reverted_pause,
    "redis_pause": _reverted_redis_pause,
    "counter_drift": _reverted_counter_drift,
    "fail_open": _reverted_fail_open,
    "redis_latency": _reverted_latency,
    "partition": _reverted_partition,
    "redis_disk_full": _reverted_disk_full,
}
OUTLIVES_LAB = ("partition", "redis_disk_full")  # checked even when the lab is gone


def effect(lab: RateLimiterLab, record: dict) -> Verdict:
    try:
        return EFFECT[record["kind"]](lab, record)
    except (httpx.HTTPError, LabError, OSError, ValueError, KeyError) as e:
        return Verdict(False, f"could not check: {type(e).__name__}: {e}", {})


def reverted(lab: RateLimiterLab | None, record: dict) -> Verdict:
    kind = record["kind"]
    try:
        if lab is None:
            if kind in OUTLIVES_LAB:
                return REVERTED[kind](None, record)
            return Verdict(True, "the lab is down: every process, link and setting this fault touched is gone", {})
        return REVERTED[kind](lab, record)
    except (httpx.HTTPError, LabError, OSError, ValueError, KeyError) as e:
        return Verdict(False, f"could not check: {type(e).__name__}: {e}", {})
