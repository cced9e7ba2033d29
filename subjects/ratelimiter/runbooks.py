"""Runbooks for every rate limiter invariant: candidate causes, the evidence for and against each,
and remedies that bind node ids and keys from that evidence.

What the remedies follow: a node that admits what Redis never sees is made exact again on THAT
node (its local cache off and flushed, or its fail mode closed); a dead or hung node is restarted
when a lab can restart it; a transient disagreement (a counter reset mid-window, a limit just
changed) is waited out for one window. Where nothing available can fix it (Redis down or paused,
the network between a node and Redis), the remedy is empty and the ticket goes to a human with
the reason and what the operator saw. A live node whose own path to Redis is broken or cut, while
the others reach it, is first taken out of rotation (drained: no client waits on a node that can
only fail), then the network goes to a human: restarting a healthy process does not mend a network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subjects.base import ActionRequest, Cause, Finding, Node, Runbook, RunbookContext, Signal
from subjects.ratelimiter.invariants import Thresholds, answering, limiter_nodes, node_id_of, redis_view

UNDRAIN_AFTER_S = 600.0
MAX_WAIT_S = 300.0  # the longest a remedy waits for a window to pass before verification
ROUTING_REFRESH_S = 3.0  # routers re-read the registry every few seconds


# -- helpers ------------------------------------------------------------------------------------

def signal(name: str, description: str, weight: float = 1.0):
    def wrap(fn: Callable[[RunbookContext], Finding]) -> Signal:
        return Signal(name=name, description=description, probe=fn, weight=weight)
    return wrap


def target_id(ctx: RunbookContext) -> str | None:
    return ctx.violation.evidence.get("node_id") or node_id_of(ctx.violation.entity)


def target_node(ctx: RunbookContext) -> Node | None:
    nid = target_id(ctx)
    return None if nid is None else ctx.observation.node(nid, "node")


def tried(ctx: RunbookContext, action: str, node_id: str | None = None) -> bool:
    return any(a.get("name") == action and (node_id is None or (a.get("params") or {}).get("node_id") == node_id)
               for a in ctx.previous_actions)


def key_of(ctx: RunbookContext) -> str | None:
    key = ctx.violation.evidence.get("key")
    if key is None and ctx.violation.entity.startswith("key:"):
        key = ctx.violation.entity.split(":", 1)[1]
    return key


def key_record(ctx: RunbookContext) -> dict[str, Any]:
    key = key_of(ctx)
    return (ctx.observation.details.get("keys") or {}).get(key or "", {})


def nodes_on_key(ctx: RunbookContext) -> list[Node]:
    """Answering nodes that admitted the ticket's key, most admissions first."""
    items = key_record(ctx).get("nodes") or {}
    found = [(int(v.get("admitted") or 0), nid) for nid, v in items.items()]
    out = []
    for _, nid in sorted(found, reverse=True):
        n = ctx.observation.node(nid, "node")
        if n is not None and answering(n):
            out.append(n)
    return out


def window_s(ctx: RunbookContext) -> float:
    """How long until admissions made now have left the ticket's keys' windows (plus a second)."""
    ms = key_record(ctx).get("window_ms") or 0
    for k in ctx.violation.evidence.get("keys") or []:
        ms = max(ms, k.get("window_ms") or 0)
    return min(MAX_WAIT_S, max(1.0, ms / 1000 + 1.0))


def settle(ctx: RunbookContext, seconds: float, why: str) -> list[ActionRequest]:
    """A wait before verification, when the fix only shows once a window has passed."""
    if "wait" not in ctx.available_actions:
        return []
    return [ActionRequest(name="wait", params={"seconds": round(seconds, 1)}, reason=why)]


def _finding(name: str, node: Node | None, present: bool | None, reading: str, value: Any = None) -> Finding:
    if node is None:
        return Finding(signal=name, present=None, reading="node not in the observation")
    return Finding(signal=name, present=present, reading=reading, value=value)


# -- signals about one node ---------------------------------------------------------------------

@signal("port_refused", "nothing listens on the node's port: the process is gone", weight=2.0)
def port_refused(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    return _finding("port_refused", n, n is not None and "refused" in n.state_detail,
                    n.state_detail if n else "")


@signal("port_hangs", "the node accepts connections but does not answer in time (hung or paused)", weight=2.0)
def port_hangs(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    return _finding("port_hangs", n, n is not None and "timed out" in n.state_detail, n.state_detail if n else "")


@signal("heartbeats_stale", "the node stopped heartbeating to Redis too (the registry sees it dead)", weight=1.5)
def heartbeats_stale(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    if n is None or "heartbeat_age_ms" not in n.metrics:
        return Finding(signal="heartbeats_stale", present=None, reading="no heartbeat in the registry")
    age = n.metrics["heartbeat_age_ms"]
    return Finding(signal="heartbeats_stale", present=n.labels.get("registry") == "down" or age > 2000,
                   reading=f"last heartbeat {age:.0f} ms ago, registry says {n.labels.get('registry')}", value=age)


@signal("heartbeats_fresh", "the node still heartbeats to Redis: it lives, only we cannot reach it", weight=2.0)
def heartbeats_fresh(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    if n is None or "heartbeat_age_ms" not in n.metrics:
        return Finding(signal="heartbeats_fresh", present=None, reading="no heartbeat in the registry")
    age = n.metrics["heartbeat_age_ms"]
    return Finding(signal="heartbeats_fresh", present=n.labels.get("registry") in ("up", "draining") and age < 1500,
                   reading=f"last heartbeat {age:.0f} ms ago, registry says {n.labels.get('registry')}", value=age)


@signal("host_control", "something can restart the node's process (the local lab)")
def can_restart(ctx: RunbookContext) -> Finding:
    ok = "restart_node" in ctx.available_actions
    return Finding(signal="host_control", present=ok,
                   reading="restart_node is available (lab)" if ok else "no process control: nothing here can "
                                                                        "restart it")


@signal("restart_tried", "an earlier attempt restarted the node without fixing it", weight=2.0)
def restart_tried(ctx: RunbookContext) -> Finding:
    done = tried(ctx, "restart_node", target_id(ctx))
    return Finding(signal="restart_tried", present=done,
                   reading="restart_node was tried before" if done else "no restart tried yet")


@signal("cache_enabled", "the node answers from a local cache (admissions it decides there never reach Redis)",
        weight=2.0)
def cache_enabled(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    ttl = n.metrics.get("cache_ttl_ms") if n else None
    return _finding("cache_enabled", n, None if ttl is None else ttl > 0, f"local cache ttl {ttl:g} ms"
                    if ttl is not None else "", ttl)


@signal("cached_counts_disagree", "the node's cached count of a key differs from Redis's count", weight=1.5)
def cached_counts_disagree(ctx: RunbookContext) -> Finding:
    keys = ctx.violation.evidence.get("keys") or []
    pairs = [(k["key"], k.get("local_count"), k.get("redis_count")) for k in keys if k.get("local_count") is not None]
    if not pairs:
        return Finding(signal="cached_counts_disagree", present=False if keys else None,
                       reading="no cached counts on the drifting keys")
    off = [f"{key}: cached {lc} vs Redis {rc}" for key, lc, rc in pairs if rc is not None and lc != rc]
    return Finding(signal="cached_counts_disagree", present=bool(off), reading="; ".join(off[:3]) or "they agree")


@signal("node_reaches_redis", "the node's own Redis round trips succeed", weight=1.0)
def node_reaches_redis(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    ok = n.metrics.get("redis_ok") if n else None
    return _finding("node_reaches_redis", n, None if ok is None else ok == 1.0,
                    "its last Redis round trip succeeded" if ok == 1.0 else f"{n.state_detail if n else ''}")


@signal("node_cannot_reach_redis", "the node's Redis round trips fail", weight=2.0)
def node_cannot_reach_redis(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    ok = n.metrics.get("redis_ok") if n else None
    return _finding("node_cannot_reach_redis", n, None if ok is None else ok == 0.0,
                    n.state_detail if n else "")


@signal("fails_open", "the node admits requests when Redis fails (fail_mode open)", weight=1.5)
def fails_open(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    mode = n.labels.get("fail_mode") if n else None
    return _finding("fails_open", n, None if mode is None else mode == "open", f"fail_mode={mode}", mode)


@signal("admitting_fail_open", "the node is admitting requests without Redis right now", weight=1.0)
def admitting_fail_open(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    rate = n.metrics.get("fail_open_qps") if n else None
    return _finding("admitting_fail_open", n, None if rate is None else rate > 0,
                    f"{rate if rate is not None else '?'} fail-open admissions/s", rate)


@signal("redis_serves_others", "Redis answers the operator and the other nodes reach it", weight=1.5)
def redis_serves_others(ctx: RunbookContext) -> Finding:
    r = redis_view(ctx.observation)
    nid = target_id(ctx)
    others = [n.id for n in limiter_nodes(ctx.observation) if answering(n) and n.id != nid
              and n.metrics.get("redis_ok") == 1.0]
    ok = bool(r.get("reachable")) and r.get("writes") != "stalled"
    return Finding(signal="redis_serves_others", present=ok and bool(others),
                   reading=f"Redis {'answers' if ok else 'does not answer'} the operator; nodes reaching it: "
                           f"{others or 'none'}")


@signal("node_answers", "the node's own process answers its API (alive, not hung or paused)", weight=1.0)
def node_answers(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    alive = None if n is None else answering(n)
    return _finding("node_answers", n, alive, f"node {n.id} answers its API" if alive else
                    f"node {n.id if n else '?'} does not answer: {n.state_detail if n else ''}")


def redis_failures(ctx: RunbookContext) -> tuple[int, int, int]:
    """How the node's Redis round trips failed over the recent observations: (timeouts on open
    connections, refused or reset connections, connects that timed out).

    One error is the last round trip's. A broken path refuses or resets connections. A cut one
    (packets dropped on the way) never completes a handshake: the node's connects time out, though
    round trips on connections it had already opened time out first. A silent or slow peer accepts
    every connection and then times out its round trips, so one connect that timed out tells a cut
    from a slow peer. The occasional other kind (a reset when a link changes) is outvoted."""
    nid = target_id(ctx)
    timeouts = broken = cut = 0
    for obs in (*ctx.history[-10:], ctx.observation):
        n = obs.node(nid, "node") if nid else None
        if n is None or n.metrics.get("redis_ok") != 0.0:
            continue
        text = n.state_detail.removeprefix("cannot reach Redis: ")
        if "timeout connecting" in text.lower():
            cut += 1
        elif text.startswith("TimeoutError") or "timed out" in text.lower() or "timeout" in text.lower():
            timeouts += 1
        elif text.startswith(("ConnectionError", "ConnectionResetError", "ConnectionRefusedError", "OSError")):
            broken += 1
    return timeouts, broken, cut


@signal("connection_refused_or_reset", "the node's Redis connections are refused, reset or never established (a "
        "broken or cut path, not a slow one)", weight=1.5)
def connection_broken(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    timeouts, broken, cut = redis_failures(ctx)
    if n is None or timeouts + broken + cut == 0:
        return Finding(signal="connection_refused_or_reset", present=None, reading="no Redis errors seen")
    return Finding(signal="connection_refused_or_reset", present=cut > 0 or broken > timeouts,
                   reading=f"{broken} refused or reset, {cut} connects timed out, {timeouts} round trips timed out "
                           f"in recent observations; last: {n.state_detail}", value=broken + cut)


@signal("redis_timeouts", "the node's Redis round trips time out on connections that do open (a slow or silent "
        "peer)", weight=1.5)
def redis_timeouts(ctx: RunbookContext) -> Finding:
    n = target_node(ctx)
    timeouts, broken, cut = redis_failures(ctx)
    if n is None or timeouts + broken + cut == 0:
        return Finding(signal="redis_timeouts", present=None, reading="no Redis errors seen")
    return Finding(signal="redis_timeouts", present=cut == 0 and timeouts > broken,
                   reading=f"{timeouts} round trips timed out, {cut} connects timed out, {broken} refused or reset "
                           f"in recent observations; last: {n.state_detail}", value=timeouts)


@signal("recent_reset", "a key's Redis log holds far fewer entries than the nodes admitted (reset mid-window)",
        weight=2.0)
def recent_reset(ctx: RunbookContext) -> Finding:
    keys = ctx.violation.evidence.get("keys") or []
    emptied = [k["key"] for k in keys if (k.get("recorded") == 0 and (k.get("admitted") or 0) > 0
                                          and (k.get("redis_count") in (0, None)))]
    return Finding(signal="recent_reset", present=bool(emptied) and len(emptied) == len(keys),
                   reading=f"keys with no entries left in Redis: {emptied or 'none'}")


# -- signals about Redis ------------------------------------------------------------------------

@signal("redis_refuses", "Redis refuses connections: nothing listens (process gone)", weight=2.0)
def redis_refuses(ctx: RunbookContext) -> Finding:
    r = redis_view(ctx.observation)
    err = str(r.get("error") or ctx.violation.evidence.get("error") or "")
    return Finding(signal="redis_refuses", present=("refused" in err.lower() or "connecting" in err.lower())
                   and not r.get("reachable"), reading=f"operator -> Redis: {err or 'ok'}")


@signal("redis_silent", "Redis accepts connections but does not answer (stopped, hung or overloaded)", weight=2.0)
def redis_silent(ctx: RunbookContext) -> Finding:
    r = redis_view(ctx.observation)
    err = str(r.get("error") or ctx.violation.evidence.get("error") or "")
    return Finding(signal="redis_silent", present=("timed out" in err.lower()) and not r.get("reachable"),
                   reading=f"operator -> Redis: {err or 'ok'}")


@signal("writes_paused", "Redis answers PING but runs no script (CLIENT PAUSE WRITE, a failover)", weight=2.5)
def writes_paused(ctx: RunbookContext) -> Finding:
    r = redis_view(ctx.observation)
    return Finding(signal="writes_paused", present=bool(r.get("reachable")) and r.get("writes") == "stalled",
                   reading=f"PING {r.get('ping_ms')} ms; scripts: {r.get('writes')}")


@signal("observer_reaches_redis", "Redis answers the operator directly, PING and scripts", weight=2.0)
def observer_reaches_redis(ctx: RunbookContext) -> Finding:
    r = redis_view(ctx.observation)
    ok = bool(r.get("reachable")) and r.get("writes") == "ok"
    return Finding(signal="observer_reaches_redis", present=ok,
                   reading=f"operator -> Redis: PING {r.get('ping_ms')} ms, scripts {r.get('writes')}")


@signal("nodes_reach_redis", "every answering node still completes its Redis round trips", weight=2.5)
def nodes_reach_redis(ctx: RunbookContext) -> Finding:
    live = [n for n in limiter_nodes(ctx.observation) if answering(n)]
    if not live:
        return Finding(signal="nodes_reach_redis", present=None, reading="no node answers")
    ok = [n.id for n in live if n.metrics.get("redis_ok") == 1.0]
    return Finding(signal="nodes_reach_redis", present=len(ok) == len(live),
                   reading=f"nodes reaching Redis: {ok or 'none'} of {[n.id for n in live]}")


@signal("redis_slow_for_operator", "Redis itself answers the operator slowly", weight=2.0)
def redis_slow(ctx: RunbookContext) -> Finding:
    ping = redis_view(ctx.observation).get("ping_ms")
    if ping is None:
        return Finding(signal="redis_slow_for_operator", present=None, reading="no PING measured")
    return Finding(signal="redis_slow_for_operator", present=ping > 20.0, reading=f"PING {ping:.1f} ms", value=ping)


@signal("one_node_slow", "only some nodes are slow, the others are within the SLO", weight=2.0)
def one_node_slow(ctx: RunbookContext) -> Finding:
    e = ctx.violation.evidence
    slow, per = e.get("nodes_slow") or [], e.get("per_node_p99_ms") or {}
    return Finding(signal="one_node_slow", present=bool(slow) and len(slow) < len(per),
                   reading=f"slow {slow} of {sorted(per)}: {per}")


# -- signals about a key ------------------------------------------------------------------------

@signal("cache_on_a_node", "a node that admitted the key has its local cache on", weight=2.0)
def cache_on_a_node(ctx: RunbookContext) -> Finding:
    cached = [n.id for n in nodes_on_key(ctx) if n.metrics.get("cache_ttl_ms", 0) > 0]
    return Finding(signal="cache_on_a_node", present=bool(cached), reading=f"nodes with a cache: {cached or 'none'}")


@signal("open_node_without_redis", "a node that admitted the key fails open without Redis", weight=2.0)
def open_node_without_redis(ctx: RunbookContext) -> Finding:
    found = [n.id for n in nodes_on_key(ctx) if n.metrics.get("fail_open") == 1 and n.metrics.get("redis_ok") == 0]
    return Finding(signal="open_node_without_redis", present=bool(found),
                   reading=f"fail-open nodes without Redis: {found or 'none'}")


@signal("limits_differ", "the key was checked against different limits (requests carry their own, or it changed)",
        weight=2.0)
def limits_differ(ctx: RunbookContext) -> Finding:
    seen = ctx.violation.evidence.get("limits_seen") or key_record(ctx).get("limits_seen") or []
    return Finding(signal="limits_differ", present=len(seen) > 1, reading=f"limits seen: {seen}")


# -- remedies -----------------------------------------------------------------------------------

def remedy_restart(ctx: RunbookContext) -> list[ActionRequest]:
    nid = target_id(ctx)
    if nid and "restart_node" in ctx.available_actions and not tried(ctx, "restart_node", nid):
        return [ActionRequest(name="restart_node", params={"node_id": nid},
                              reason=f"node {nid} does not serve; a fresh process on the same port brings it back")]
    return []


def remedy_cache_off(ctx: RunbookContext) -> list[ActionRequest]:
    nid = target_id(ctx)
    if not nid:
        return []
    if tried(ctx, "flush_local_cache", nid) and "restart_node" in ctx.available_actions \
            and not tried(ctx, "restart_node", nid):
        return [ActionRequest(name="restart_node", params={"node_id": nid},
                              reason=f"turning node {nid}'s cache off did not stop the drift; a fresh process "
                                     "starts from its command line")]
    if tried(ctx, "flush_local_cache", nid):
        return []
    return [ActionRequest(name="flush_local_cache", params={"node_id": nid, "disable": True},
                          reason=f"node {nid} answers from a local cache whose admissions never reach Redis: turn it "
                                 "off and drop what it holds, so every check goes to Redis again"),
            *settle(ctx, window_s(ctx), "the admissions it already made unseen leave the keys' windows")]


def remedy_fail_closed(ctx: RunbookContext, nid: str | None = None) -> list[ActionRequest]:
    nid = nid or target_id(ctx)
    if not nid or tried(ctx, "set_fail_mode", nid):
        return []
    return [ActionRequest(name="set_fail_mode", params={"node_id": nid, "mode": "closed"},
                          reason=f"node {nid} cannot reach Redis and admits everything it gets; failing closed "
                                 "denies instead of over-admitting until its Redis path is back")]


def remedy_wait_window(ctx: RunbookContext) -> list[ActionRequest]:
    if tried(ctx, "wait"):
        return []
    s = window_s(ctx)
    return [ActionRequest(name="wait", params={"seconds": round(s, 1)},
                          reason=f"the disagreement leaves with the window ({s:.0f} s)")]


def remedy_key(ctx: RunbookContext) -> list[ActionRequest]:
    """over_admission on its own: act on the node that admitted the key without Redis."""
    for n in nodes_on_key(ctx):
        if n.metrics.get("fail_open") == 1 and n.metrics.get("redis_ok") == 0:
            steps = remedy_fail_closed(ctx, n.id)
            return [*steps, *settle(ctx, window_s(ctx), f"what {n.id} admitted leaves {key_of(ctx)}'s window")] \
                if steps else []
    for n in nodes_on_key(ctx):
        if n.metrics.get("cache_ttl_ms", 0) > 0 and not tried(ctx, "flush_local_cache", n.id):
            return [ActionRequest(name="flush_local_cache", params={"node_id": n.id, "disable": True},
                                  reason=f"node {n.id} admits {key_of(ctx)} from its local cache, unseen by Redis"),
                    *settle(ctx, window_s(ctx), f"what {n.id} admitted leaves {key_of(ctx)}'s window")]
    return []


def remedy_drain_slow(ctx: RunbookContext) -> list[ActionRequest]:
    nid = target_id(ctx)
    if not nid or "drain_node" not in ctx.available_actions or tried(ctx, "drain_node", nid):
        return []
    delay = float(ctx.settings.get("undrain_after_s", UNDRAIN_AFTER_S))
    window = float(ctx.observation.details.get("latency_window_s") or 5.0)
    return [
        ActionRequest(name="drain_node", params={"node_id": nid},
                      reason=f"node {nid} alone is slow: stop routing checks to it so clients get fast answers"),
        *settle(ctx, window + ROUTING_REFRESH_S, "routers pick up the drain and the slow checks leave the "
                                                 f"{window:g} s latency window"),
        ActionRequest(name="undrain_node", params={"node_id": nid}, delay_s=delay,
                      reason=f"give node {nid} traffic back once it has had {delay:.0f} s to recover"),
    ]


def remedy_drain_isolated(ctx: RunbookContext) -> list[ActionRequest]:
    """Out of rotation, then to a human: the drain stays until someone restores the node's path to
    Redis and undrains it (the second attempt, with the drain tried, escalates)."""
    nid = target_id(ctx)
    if not nid or "drain_node" not in ctx.available_actions or tried(ctx, "drain_node", nid):
        return []
    others = ctx.violation.evidence.get("other_nodes_reaching_redis") or []
    if not others:
        return []  # draining the only node that answers would take the service down
    return [ActionRequest(name="drain_node", params={"node_id": nid},
                          reason=f"node {nid} is alive but cannot reach Redis while {', '.join(others)} can: take it "
                                 "out of rotation so no client waits on a node that can only fail; its network path "
                                 "goes to a human")]


def escalate(_ctx: RunbookContext) -> list[ActionRequest]:
    return []


# -- the runbooks -------------------------------------------------------------------------------

def build_runbooks(t: Thresholds) -> dict[str, Runbook]:
    dead = Cause(
        "process_dead", "The node's process is dead",
        "Nothing listens on its port: it crashed, was killed or its host rebooted. The registry shows it "
        "down once its heartbeat is older than its TTL, and routers stop sending it traffic.",
        supports=(port_refused, heartbeats_stale, can_restart), contradicts=(port_hangs, restart_tried),
        remedy=remedy_restart,
        remedy_text="restart it through the lab; without process control a human must start it",
        expected_outcome="the node answers again, heartbeats, and routers send it traffic",
        risks="a restarted node starts from its command line: runtime config changes are lost", prior=0.5)
    hung = Cause(
        "process_hung", "The node's process is hung or paused",
        "Its port accepts connections but nothing answers, and it stopped heartbeating.",
        supports=(port_hangs, heartbeats_stale, can_restart), contradicts=(port_refused, restart_tried),
        remedy=remedy_restart, remedy_text="restart it (SIGTERM, then SIGKILL, then start) through the lab",
        expected_outcome="a fresh process answers on the same port", risks="in-flight checks on it fail",
        prior=0.4)
    operator_network = Cause(
        "operator_network", "The network between the operator and the node is broken, not the node",
        "The node still heartbeats to Redis, so it serves; only we cannot reach it.",
        supports=(heartbeats_fresh,), contradicts=(port_refused, heartbeats_stale), remedy=escalate,
        remedy_text="check the network path from the operator to the node; the node itself serves", prior=0.2)

    redis_down = Cause(
        "redis_process_down", "Redis is not running",
        "Nothing listens on Redis's port. Every node fails by its fail mode: closed ones deny every check, open "
        "ones admit everything.",
        supports=(redis_refuses,), contradicts=(observer_reaches_redis, writes_paused, nodes_reach_redis),
        remedy=escalate,
        remedy_text="a human (or Redis's supervisor) must start Redis; no action here can. While it is down, "
                    "fail-open nodes admit without limit: set them closed only if correctness matters more than "
                    "availability", prior=0.4)
    redis_hung = Cause(
        "redis_hung", "Redis accepts connections but does not answer",
        "Stopped (SIGSTOP), hung on a slow command or disk, or overloaded.",
        supports=(redis_silent,), contradicts=(observer_reaches_redis, redis_refuses, nodes_reach_redis),
        remedy=escalate,
        remedy_text="a human must look at the Redis host (process state, slow log, memory, disk); nothing here can "
                    "restart it", prior=0.4)
    redis_paused = Cause(
        "redis_writes_paused", "Redis pauses writes (CLIENT PAUSE WRITE)",
        "PING and reads answer, scripts and writes wait: a failover in progress, or a manual pause. Every check "
        "is a script, so every node fails by its fail mode until the pause ends.",
        supports=(writes_paused,), contradicts=(redis_refuses, redis_silent), remedy=escalate,
        remedy_text="wait for the pause to end, or a human ends it with CLIENT UNPAUSE once sure no failover needs "
                    "it", prior=0.3)
    shared_path = Cause(
        "nodes_to_redis_path", "The network between the nodes and Redis is broken",
        "Redis answers the operator directly, but no node reaches it: a proxy, firewall or DNS on their side.",
        supports=(observer_reaches_redis,), contradicts=(redis_refuses, redis_silent, writes_paused),
        remedy=escalate, remedy_text="a human must restore the nodes' path to Redis (proxy, firewall, DNS)",
        prior=0.3)

    stale_cache = Cause(
        "stale_local_cache", "The node answers from a stale local cache",
        "With a local cache on, the node decides from its own copy of a key's log and never writes those "
        "admissions to Redis: the other nodes do not see them, it does not see theirs, and together they admit "
        "more than the limit.",
        supports=(cache_enabled, cached_counts_disagree, node_reaches_redis),
        contradicts=(node_cannot_reach_redis,), remedy=remedy_cache_off,
        remedy_text="turn the node's local cache off and flush it (flush_local_cache disable=true); if the drift "
                    "outlives that, restart the node",
        expected_outcome="every check on the node goes to Redis; the disagreement leaves within one window",
        risks="more Redis round trips from that node", prior=0.5)
    open_drift = Cause(
        "fail_open_admissions", "The node admits without Redis (fail-open)",
        "It cannot reach Redis and its fail mode is open, so every check it gets is admitted and recorded nowhere.",
        supports=(node_cannot_reach_redis, fails_open), contradicts=(node_reaches_redis,),
        remedy=lambda c: remedy_fail_closed(c), remedy_text="set the node's fail mode to closed",
        expected_outcome="the node denies instead of admitting while Redis is out of its reach",
        risks="its clients get denials until its Redis path is back", prior=0.4)
    reset_drift = Cause(
        "counter_reset", "A counter was reset mid-window",
        "Someone reset the key's log in Redis while the nodes still remember their admissions; the two agree "
        "again once the window has passed.",
        supports=(recent_reset, node_reaches_redis), contradicts=(cache_enabled, node_cannot_reach_redis),
        remedy=remedy_wait_window, remedy_text="wait one window", prior=0.3)

    key_cache = Cause(
        "cache_over_admits", "A node's local cache admits the key without Redis",
        "", supports=(cache_on_a_node,), contradicts=(open_node_without_redis,), remedy=remedy_key,
        remedy_text="turn the cache off on the node that admits from it",
        expected_outcome="admissions of the key fall back under its limit within one window", prior=0.4)
    key_open = Cause(
        "open_node_over_admits", "A node admits the key fail-open, without Redis", "",
        supports=(open_node_without_redis,), remedy=remedy_key, remedy_text="set that node's fail mode closed",
        prior=0.4)
    key_limits = Cause(
        "limits_inconsistent", "The key was checked against different limits",
        "Clients send their own limit with each request, or the limit just changed: entries admitted under a "
        "higher limit stay in the window.", supports=(limits_differ,),
        contradicts=(cache_on_a_node, open_node_without_redis), remedy=remedy_wait_window,
        remedy_text="wait one window; if it recurs, a human must make the clients agree on one limit "
                    "(request limits override the configured one)", prior=0.3)

    open_link = Cause(
        "open_node_lost_redis", "A fail-open node lost its path to a healthy Redis",
        "Redis serves the operator and the other nodes; only this node cannot reach it, and it admits everything.",
        supports=(redis_serves_others, admitting_fail_open, node_cannot_reach_redis),
        remedy=lambda c: remedy_fail_closed(c),
        remedy_text="set the node's fail mode to closed now; then a human restores its path to Redis",
        expected_outcome="the node stops admitting without a limit; it denies until its Redis path is back",
        risks="the node's clients are denied until then (routers skip it once its heartbeats stop)", prior=0.5)
    open_outage = Cause(
        "open_during_outage", "Redis is out of reach for every node and this one fails open", "",
        supports=(node_cannot_reach_redis, fails_open), contradicts=(redis_serves_others,),
        remedy=lambda c: remedy_fail_closed(c),
        remedy_text="decide whether correctness beats availability; if so, set the node closed", prior=0.3)

    iso_broken = Cause(
        "path_broken", "The node's network path to Redis is broken",
        "Redis and the other nodes are fine, and the node itself answers; its connections to Redis are refused, "
        "reset, or never established (a partition drops them). A restart would not change its network.",
        supports=(connection_broken, redis_serves_others, node_answers),
        contradicts=(redis_timeouts,), remedy=remedy_drain_isolated,
        remedy_text="drain the node (out of rotation: routers, the registry's readers and the load generator skip "
                    "it until it is undrained), then a human must restore the path between it and Redis (proxy, "
                    "firewall, route) and undrain it; restarting a live process would not mend the network",
        expected_outcome="the other nodes serve every client; the node waits, drained, for its network to be fixed",
        risks="the other nodes take its traffic", prior=0.5)
    iso_stuck = Cause(
        "redis_connection_stuck", "The node's Redis connections are stuck or slow",
        "Its round trips time out while Redis answers everyone else: a slow link, or a connection pool wedged "
        "inside the process.", supports=(redis_timeouts, redis_serves_others, can_restart),
        contradicts=(connection_broken, restart_tried), remedy=remedy_restart,
        remedy_text="restart the node (fresh connections); if that does not help, the link is slow and a human "
                    "must fix it", expected_outcome="the node reaches Redis again",
        risks="checks on it fail while it restarts", prior=0.4)

    slow_node = Cause(
        "one_node_slow", "One node is much slower than the others",
        "Its own path to Redis or its host is slow; the others are fine.", supports=(one_node_slow,),
        contradicts=(redis_slow,), remedy=remedy_drain_slow,
        remedy_text="drain the slow node (routers skip it) and schedule its undrain",
        expected_outcome="clients stop waiting on the slow node", risks="the other nodes take its traffic",
        prior=0.4)
    slow_redis = Cause(
        "redis_slow", "Redis itself is slow", "Every node waits on Redis, and so does the operator.",
        supports=(redis_slow,), contradicts=(one_node_slow,), remedy=escalate,
        remedy_text="a human must look at Redis (slow log, memory, CPU, persistence); no node action helps",
        prior=0.3)
    slow_path = Cause(
        "nodes_to_redis_slow", "The network between the nodes and Redis is slow",
        "Every node is slow, while Redis answers the operator quickly: the latency is on the nodes' path to it.",
        supports=(observer_reaches_redis,), contradicts=(redis_slow, one_node_slow), remedy=escalate,
        remedy_text="a human must find the slow hop between the nodes and Redis (proxy, network); draining nodes "
                    "would not help when all are slow", prior=0.35)

    operator_path = Cause(
        "operator_to_redis_path", "The operator cannot reach Redis, but the nodes can",
        "The service works (every node completes its round trips); only the operator's own path to Redis, or the "
        "Redis URL it was given, is wrong. Counters cannot be compared meanwhile.",
        supports=(nodes_reach_redis,), contradicts=(writes_paused,), remedy=escalate,
        remedy_text="check the operator's Redis URL and its network path to Redis; the rate limiter itself serves",
        prior=0.2)

    return {
        "node_down": Runbook("node_down", "A rate limiter node does not answer", (dead, hung, operator_network)),
        "redis_unreachable": Runbook("redis_unreachable", "Redis is out of reach for the operator or every node",
                                     (redis_down, redis_hung, redis_paused, shared_path, operator_path)),
        "counter_drift": Runbook("counter_drift", "A node admits requests Redis never records",
                                 (stale_cache, open_drift, reset_drift)),
        "over_admission": Runbook("over_admission", "A key admits more than its limit",
                                  (key_cache, key_open, key_limits)),
        "fail_open_node": Runbook("fail_open_node", "A node admits without Redis", (open_link, open_outage)),
        "node_isolated": Runbook("node_isolated", "A node cannot reach a healthy Redis", (iso_broken, iso_stuck)),
        "high_latency": Runbook("high_latency", "Check latency is over the SLO", (slow_node, slow_path, slow_redis)),
    }
