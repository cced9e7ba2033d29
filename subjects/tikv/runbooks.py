"""Runbooks for every TiKV invariant: candidate causes, the evidence for and against each, and the
remedy that binds action parameters from that evidence.

The remedies follow PD's and TiUP's own practice (reference pd-api.md §5): restart a dead store
when something can restart it, remove it (so PD re-creates its replicas) only once it is past a
deadline, spare stores exist and the policy allows destructive actions; remove leftover
evict-leader schedulers; drain a slow store's leaders and schedule the undrain; move a hot region's
leader; re-enable balancing. Where nothing available can fix it, the remedy is empty and the
ticket goes to a human with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from subjects.base import ActionRequest, Cause, Finding, Node, Runbook, RunbookContext, Signal
from subjects.tikv.invariants import Thresholds, serving, stores

UNDRAIN_AFTER_S = 600.0  # schedule the undrain of a slow store this long after draining it
DEAD_STORE_DEADLINE_S = 300.0  # a dead store this old (or Down) may be removed, where policy allows


# -- helpers --------------------------------------------------------------------------------

def target_store(ctx: RunbookContext) -> Node | None:
    sid = ctx.violation.evidence.get("store_id")
    if sid is None and ctx.violation.entity.startswith("store:"):
        sid = ctx.violation.entity.split(":", 1)[1]
    return None if sid is None else ctx.observation.node(str(sid), "store")


def sid(ctx: RunbookContext) -> int:
    n = target_store(ctx)
    return int(n.id) if n else int(ctx.violation.evidence.get("store_id", 0))


def state_name(n: Node) -> str:
    return n.state_detail.split(" ", 1)[0]


def signal(name: str, description: str, weight: float = 1.0):
    def wrap(fn: Callable[[RunbookContext], Finding]) -> Signal:
        return Signal(name=name, description=description, probe=fn, weight=weight)
    return wrap


def tried(ctx: RunbookContext, action: str, state: str | None = None) -> bool:
    return any(a.get("name") == action and (state is None or a.get("state") == state) for a in ctx.previous_actions)


def spare_stores(ctx: RunbookContext, exclude: int) -> list[Node]:
    return [n for n in stores(ctx.observation) if serving(n) and n.id != str(exclude)]


def least_loaded(ctx: RunbookContext, candidates: list[int], exclude: int) -> int | None:
    best = None
    for n in stores(ctx.observation):
        if not n.id.isdigit() or int(n.id) not in candidates or int(n.id) == exclude or not serving(n):
            continue
        if str(n.id) in {str(s) for s in ctx.observation.details.get("evict_leader_stores", [])}:
            continue
        load = n.metrics.get("qps", n.metrics.get("leader_count", 0.0))
        if best is None or load < best[0]:
            best = (load, int(n.id))
    return None if best is None else best[1]


# -- signals about one store ----------------------------------------------------------------

@signal("status_port_refused", "the store's status port refuses connections (nothing listens: the process is gone)",
        weight=2.0)
def port_refused(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    if n is None:
        return Finding(signal="status_port_refused", present=None, reading="store not in the observation")
    refused = "refused" in n.state_detail
    return Finding(signal="status_port_refused", present=refused,
                   reading=f"status port: {n.state_detail}" if refused or n.metrics.get("probe_ok") == 0
                   else "status port answers")


@signal("status_port_hangs", "the status port accepts connections but does not answer in time", weight=2.0)
def port_hangs(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    if n is None:
        return Finding(signal="status_port_hangs", present=None, reading="store not in the observation")
    hangs = "did not answer" in n.state_detail or "timed out" in n.state_detail
    return Finding(signal="status_port_hangs", present=hangs, reading=f"status port: {n.state_detail}")


@signal("pd_heartbeats_fresh", "PD still receives the store's heartbeats (state Up)")
def heartbeats_fresh(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    if n is None:
        return Finding(signal="pd_heartbeats_fresh", present=None, reading="store unknown to PD")
    return Finding(signal="pd_heartbeats_fresh", present=state_name(n) == "Up",
                   reading=f"PD state_name={state_name(n)}", value=state_name(n))


@signal("pd_heartbeats_lost", "PD has heard no heartbeat for 20 s or more (Disconnected or Down)")
def heartbeats_lost(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    if n is None:
        return Finding(signal="pd_heartbeats_lost", present=None, reading="store unknown to PD")
    lost = state_name(n) in ("Disconnected", "Down")
    return Finding(signal="pd_heartbeats_lost", present=lost, reading=f"PD state_name={state_name(n)}",
                   value=state_name(n))


@signal("store_answers", "the store's process answers on its status port", weight=2.0)
def store_answers(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    if n is None:
        return Finding(signal="store_answers", present=None, reading="store not in the observation")
    ok = n.metrics.get("probe_ok") == 1.0
    return Finding(signal="store_answers", present=ok,
                   reading=f"status probe {'ok' if ok else 'failed'} ({n.metrics.get('probe_ms', 0):.0f} ms)")


@signal("host_control", "something can restart the store's process (a lab or host agent)")
def can_restart(ctx: RunbookContext) -> Finding:
    ok = "restart_node" in ctx.available_actions
    return Finding(signal="host_control", present=ok,
                   reading="restart_node is available" if ok else "no host control: nothing here can restart it")


@signal("past_deadline", "the store has been gone long enough (or is Down) that waiting is worse than replacing it")
def past_deadline(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    down = n is not None and state_name(n) == "Down"
    late = ctx.ticket_age_s >= ctx.settings.get("dead_store_deadline_s", DEAD_STORE_DEADLINE_S)
    return Finding(signal="past_deadline", present=down or late,
                   reading=f"ticket age {ctx.ticket_age_s:.0f} s, PD state {state_name(n) if n else '?'}",
                   value=round(ctx.ticket_age_s, 1))


@signal("restart_failed", "an earlier attempt restarted the store without fixing it", weight=2.0)
def restart_failed(ctx: RunbookContext) -> Finding:
    failed = tried(ctx, "restart_node")
    return Finding(signal="restart_failed", present=failed,
                   reading="restart_node was tried before" if failed else "no restart tried yet")


@signal("spare_stores", "other serving stores can take the replicas")
def has_spares(ctx: RunbookContext) -> Finding:
    spares = spare_stores(ctx, sid(ctx))
    return Finding(signal="spare_stores", present=len(spares) >= 3,
                   reading=f"{len(spares)} other serving stores", value=len(spares))


def remedy_dead_store(ctx: RunbookContext) -> list[ActionRequest]:
    store_id = sid(ctx)
    if "restart_node" in ctx.available_actions and not tried(ctx, "restart_node"):
        return [ActionRequest(name="restart_node", params={"store_id": store_id},
                              reason=f"store {store_id}'s process is gone; restarting it restores its replicas "
                                     "without moving data")]
    if ctx.allow_destructive and "remove_store" in ctx.available_actions and \
            past_deadline.probe(ctx).present and len(spare_stores(ctx, store_id)) >= 3:
        return [ActionRequest(name="remove_store", params={"store_id": store_id},
                              reason=f"store {store_id} stayed dead past the deadline; removing it lets PD "
                                     "re-create its replicas on the spare stores")]
    return []


# -- signals about schedulers and balance -----------------------------------------------------

@signal("balance_leader_missing", "balance-leader-scheduler is not running", weight=2.0)
def balance_leader_missing(ctx: RunbookContext) -> Finding:
    schedulers = ctx.observation.details.get("schedulers", [])
    missing = "balance-leader-scheduler" not in schedulers
    return Finding(signal="balance_leader_missing", present=missing,
                   reading=f"schedulers: {', '.join(schedulers) or 'none'}")


@signal("grant_leader_present", "a grant-leader scheduler pulls leaders onto a store", weight=2.0)
def grant_present(ctx: RunbookContext) -> Finding:
    granted = ctx.observation.details.get("grant_leader_stores", [])
    return Finding(signal="grant_leader_present", present=bool(granted),
                   reading=f"grant-leader stores: {granted or 'none'}")


@signal("weights_skewed", "store leader weights differ, so PD aims for an uneven spread", weight=1.5)
def weights_skewed(ctx: RunbookContext) -> Finding:
    weights = {n.id: n.metrics.get("leader_weight", 1.0) for n in stores(ctx.observation) if serving(n)}
    skewed = len(set(weights.values())) > 1
    return Finding(signal="weights_skewed", present=skewed, reading=f"leader weights {weights}")


@signal("recent_restart", "a store restarted recently and is getting its leaders back")
def recent_restart(ctx: RunbookContext) -> Finding:
    uptimes = ctx.observation.details.get("store_uptime", {})
    from subjects.tikv.units import parse_duration

    young = [s for s, u in uptimes.items() if (parse_duration(u) or 1e9) < 120]
    return Finding(signal="recent_restart", present=bool(young),
                   reading=f"stores up for under 2 min: {young or 'none'}")


def remedy_imbalance(ctx: RunbookContext) -> list[ActionRequest]:
    obs = ctx.observation
    if "balance-leader-scheduler" not in obs.details.get("schedulers", []):
        return [ActionRequest(name="add_scheduler", params={"name": "balance-leader-scheduler"},
                              reason="balance-leader is off, so nothing moves leaders back to the empty stores")]
    granted = obs.details.get("grant_leader_stores", [])
    if granted:
        return [ActionRequest(name="remove_scheduler", params={"name": f"grant-leader-scheduler-{granted[0]}"},
                              reason=f"grant-leader pulls every leader onto store {granted[0]}")]
    for n in stores(obs):
        if serving(n) and n.metrics.get("leader_weight", 1.0) != 1.0:
            return [ActionRequest(name="set_store_weight",
                                  params={"store_id": int(n.id), "leader": 1.0,
                                          "region": n.metrics.get("region_weight", 1.0)},
                                  reason=f"store {n.id}'s leader weight is {n.metrics.get('leader_weight')}")]
    return [ActionRequest(name="wait", params={"seconds": 10},
                          reason="balance-leader is running and nothing pins the leaders: give it time")]


@signal("our_drain_scheduled", "our own drain of this store has an undrain still scheduled", weight=2.0)
def our_drain(ctx: RunbookContext) -> Finding:
    pending = [a for a in ctx.settings.get("pending_actions", []) if a.get("name") == "undrain_store"
               and int(a.get("params", {}).get("store_id", -1)) == sid(ctx)]
    return Finding(signal="our_drain_scheduled", present=bool(pending),
                   reading=f"{len(pending)} scheduled undrain(s) of store {sid(ctx)}")


@signal("store_healthy", "the drained store is Up, answers and is not slow", weight=2.0)
def store_healthy(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    if n is None:
        return Finding(signal="store_healthy", present=None, reading="store not in the observation")
    ok = serving(n) and state_name(n) == "Up" and n.metrics.get("slow_score", 1.0) < 80
    return Finding(signal="store_healthy", present=ok,
                   reading=f"state {n.state_detail}, slow_score {n.metrics.get('slow_score', 1):.0f}, "
                           f"leaders {n.metrics.get('leader_count', 0):.0f}")


# -- signals about load -----------------------------------------------------------------------

@signal("slow_score_high", "the store's slow score is at or above PD's threshold (80)", weight=2.0)
def slow_score_high(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    score = n.metrics.get("slow_score", 0.0) if n else None
    return Finding(signal="slow_score_high", present=None if score is None else score >= 80,
                   reading=f"slow_score={score}", value=score)


@signal("store_p99_high", "the store's own p99 latency is well above the others'")
def store_p99_high(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    others = [x.metrics["p99_ms"] for x in stores(ctx.observation)
              if n is not None and x.id != n.id and "p99_ms" in x.metrics]
    if n is None or "p99_ms" not in n.metrics or not others:
        return Finding(signal="store_p99_high", present=None, reading="no per-store latency yet")
    median = sorted(others)[len(others) // 2]
    return Finding(signal="store_p99_high", present=n.metrics["p99_ms"] > 2 * max(median, 1.0),
                   reading=f"p99 {n.metrics['p99_ms']:.1f} ms vs {median:.1f} ms on the others",
                   value=round(n.metrics["p99_ms"], 2))


@signal("hot_region_on_store", "PD's hotspot statistics show hot regions led by this store", weight=2.0)
def hot_region(ctx: RunbookContext) -> Finding:
    regions = ctx.violation.evidence.get("hot_regions") or []
    return Finding(signal="hot_region_on_store", present=bool(regions),
                   reading=f"hot regions: {[r.get('region_id') for r in regions] or 'none'}")


@signal("many_leaders", "the store leads far more regions than the others")
def many_leaders(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    counts = [x.metrics.get("leader_count", 0.0) for x in stores(ctx.observation) if serving(x)]
    if n is None or not counts:
        return Finding(signal="many_leaders", present=None, reading="no leader counts")
    mean = sum(counts) / len(counts)
    mine = n.metrics.get("leader_count", 0.0)
    return Finding(signal="many_leaders", present=mine > 1.5 * mean and mine - mean > 5,
                   reading=f"{mine:.0f} leaders vs mean {mean:.0f}")


def remedy_hot_store(ctx: RunbookContext) -> list[ActionRequest]:
    store_id = sid(ctx)
    regions = ctx.violation.evidence.get("hot_regions") or []
    hot = ctx.observation.details.get("hot", {})
    for r in regions:
        region_id = r.get("region_id")
        if not region_id:
            continue
        peers = []
        for kind in ("read", "write"):
            for entry in hot.get(kind, {}).get(str(store_id), {}).get("regions", []):
                if entry.get("region_id") == region_id:
                    peers = entry.get("stores", []) or peers
        target = least_loaded(ctx, [int(p) for p in peers], store_id) if peers else None
        steps = [ActionRequest(name="split_region", params={"region_id": int(region_id), "policy": "approximate"},
                               reason=f"region {region_id} carries most of store {store_id}'s load; splitting it "
                                      "lets PD spread the halves")]
        if target is not None:
            steps.append(ActionRequest(name="transfer_leader", params={"region_id": int(region_id),
                                                                       "to_store_id": target},
                                       reason=f"move the hot region's leader to store {target}, the least loaded "
                                              "store holding a voter of it"))
        return steps
    return []


def _latency_outlier(ctx: RunbookContext) -> tuple[Node | None, float, float]:
    measured = [n for n in stores(ctx.observation) if serving(n) and "p99_ms" in n.metrics]
    if len(measured) < 2:
        return None, 0.0, 0.0
    worst = max(measured, key=lambda n: n.metrics["p99_ms"])
    rest = sorted(n.metrics["p99_ms"] for n in measured if n is not worst)
    return worst, worst.metrics["p99_ms"], rest[len(rest) // 2]


@signal("latency_outlier", "one store's p99 is several times the others'", weight=2.0)
def latency_outlier(ctx: RunbookContext) -> Finding:
    worst, p99, median = _latency_outlier(ctx)
    if worst is None:
        return Finding(signal="latency_outlier", present=None, reading="no per-store latency yet")
    return Finding(signal="latency_outlier", present=p99 > 3 * max(median, 0.5),
                   reading=f"store {worst.id} p99 {p99:.1f} ms vs median {median:.1f} ms", value=round(p99, 2))


@signal("errors_present", "clients see failed requests")
def errors_present(ctx: RunbookContext) -> Finding:
    rate = ctx.observation.workload.error_rate
    return Finding(signal="errors_present", present=None if rate is None else rate > 0.001,
                   reading=f"error rate {rate:.2%}" if rate is not None else "no error rate yet")


def remedy_latency_outlier(ctx: RunbookContext) -> list[ActionRequest]:
    worst, _, _ = _latency_outlier(ctx)
    if worst is None:
        return []
    return remedy_slow_store(ctx, int(worst.id))


def remedy_slow_store(ctx: RunbookContext, store_id: int | None = None) -> list[ActionRequest]:
    store_id = sid(ctx) if store_id is None else store_id
    delay = float(ctx.settings.get("undrain_after_s", UNDRAIN_AFTER_S))
    return [
        ActionRequest(name="drain_store", params={"store_id": store_id},
                      reason=f"store {store_id} is slow: move its leaders so clients stop waiting on it"),
        ActionRequest(name="undrain_store", params={"store_id": store_id}, delay_s=delay,
                      reason=f"give store {store_id} its leaders back once it has had {delay:.0f} s to recover"),
    ]


# -- space ------------------------------------------------------------------------------------

@signal("more_regions_than_peers", "the full store holds more regions than the average store", weight=1.5)
def region_share(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    counts = [x.metrics.get("region_count", 0.0) for x in stores(ctx.observation) if serving(x)]
    if n is None or not counts:
        return Finding(signal="more_regions_than_peers", present=None, reading="no region counts")
    mean = sum(counts) / len(counts)
    mine = n.metrics.get("region_count", 0.0)
    return Finding(signal="more_regions_than_peers", present=mine > 1.1 * mean,
                   reading=f"{mine:.0f} regions vs mean {mean:.0f}")


@signal("region_weight_default", "the store's region weight is still the default (1)")
def region_weight_default(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    w = n.metrics.get("region_weight", 1.0) if n else None
    return Finding(signal="region_weight_default", present=None if w is None else w >= 1.0, reading=f"region_weight={w}")


@signal("disk_used_outside_regions", "the disk is fuller than the store's regions explain (other data, logs)",
        weight=1.5)
def outside_usage(ctx: RunbookContext) -> Finding:
    n = target_store(ctx)
    others = [x for x in stores(ctx.observation) if n is not None and x.id != n.id and serving(x)
              and x.metrics.get("capacity_bytes")]
    if n is None or not others or not n.metrics.get("capacity_bytes"):
        return Finding(signal="disk_used_outside_regions", present=None, reading="no capacity figures")
    used = 1 - n.metrics.get("available_ratio", 1.0)
    peers_used = sorted(1 - x.metrics.get("available_ratio", 1.0) for x in others)[len(others) // 2]
    regions = n.metrics.get("region_count", 0.0)
    peer_regions = sorted(x.metrics.get("region_count", 0.0) for x in others)[len(others) // 2]
    explained = peers_used * (regions / peer_regions) if peer_regions else used
    return Finding(signal="disk_used_outside_regions", present=used > explained + 0.2,
                   reading=f"{used:.0%} used for {regions:.0f} regions; peers use {peers_used:.0%} for "
                           f"{peer_regions:.0f}")


def remedy_low_space(ctx: RunbookContext) -> list[ActionRequest]:
    n = target_store(ctx)
    if n is None or n.metrics.get("region_weight", 1.0) <= 0.5:
        return []
    return [ActionRequest(name="set_store_weight",
                          params={"store_id": int(n.id), "leader": n.metrics.get("leader_weight", 1.0),
                                  "region": 0.5},
                          reason=f"halve store {n.id}'s region weight so PD moves regions (and their data) off it")]


# -- the runbooks -----------------------------------------------------------------------------

def build_runbooks(t: Thresholds) -> dict[str, Runbook]:
    dead = Cause(
        "process_dead", "The store's TiKV process is dead",
        "Nothing listens on the status port: the process crashed, was killed or its host rebooted.",
        supports=(port_refused, heartbeats_lost, can_restart), contradicts=(port_hangs, restart_failed),
        remedy=remedy_dead_store,
        remedy_text="restart the process when a host agent can; else, past the deadline and with spare stores, "
                    "remove the store so PD re-creates its replicas (destructive: only where policy allows); "
                    "otherwise a human must restart it",
        expected_outcome="the store answers again and PD sees it Up; leaders return through balance-leader",
        risks="a restart loop if the process keeps crashing; removing a store moves all of its data", prior=0.5,
    )
    hung = Cause(
        "process_hung", "The store's process is hung", "The port accepts connections but nothing answers.",
        supports=(port_hangs,), contradicts=(port_refused,), remedy=remedy_dead_store,
        remedy_text="restart the process", expected_outcome="the store answers again", prior=0.3,
    )
    our_network = Cause(
        "operator_network", "The network between the operator and the store is broken, not the store",
        "PD still hears the store, only we cannot reach its status port.",
        supports=(heartbeats_fresh, port_hangs), contradicts=(port_refused, heartbeats_lost), remedy=lambda _c: [],
        remedy_text="check the network path from the operator's host to the store; the cluster itself is fine",
        prior=0.2,
    )
    partition = Cause(
        "network_partition", "The store is cut off from PD (network partition)",
        "Its process answers us, but PD hears no heartbeats; its leaders lose quorum and move elsewhere.",
        supports=(store_answers, heartbeats_lost), contradicts=(port_refused,),
        remedy=lambda c: [ActionRequest(name="drain_store", params={"store_id": sid(c)},
                                        reason="keep leaders off the isolated store until its network is back")]
        if not tried(c, "drain_store") else [],
        remedy_text="drain its leaders, then a human must restore the network (undo with undrain_store)",
        expected_outcome="no leaders on the isolated store; PD hears it again once the network is restored",
        risks="draining moves leaders; an isolated store cannot carry out PD's commands until it reconnects",
        prior=0.5,
    )
    stalled = Cause(
        "heartbeat_stalled", "The store's process is stuck and stopped heartbeating", "",
        supports=(heartbeats_lost, can_restart), contradicts=(store_answers,), remedy=remedy_dead_store,
        remedy_text="restart the process", prior=0.3,
    )
    down_dead = Cause(
        "dead_past_deadline", "The store has been dead past max-store-down-time", "",
        supports=(heartbeats_lost, past_deadline, has_spares), contradicts=(store_answers,),
        remedy=remedy_dead_store,
        remedy_text="restart it if possible; else remove it so PD repairs its replicas (destructive)", prior=0.6,
    )
    down_alive = Cause(
        "down_but_answering", "PD marks the store Down but its process answers (partitioned from PD for long)",
        "", supports=(store_answers,), contradicts=(port_refused,), remedy=lambda _c: [],
        remedy_text="restore the network between the store and PD", prior=0.3,
    )
    missing_peers = Cause(
        "replicas_lost_with_store", "Replicas were lost with a dead store; PD repairs them once the store is Down",
        "", supports=(has_spares,), remedy=lambda c: _restart_dead(c),
        remedy_text="restart the dead store if something can; otherwise PD re-creates replicas after "
                    "max-store-down-time (a human may remove the store sooner)",
        prior=0.5,
    )
    return {
        "pd_unreachable": Runbook("pd_unreachable", "PD does not answer its HTTP API", (
            Cause("pd_down", "PD is down or unreachable", "Every PD member is down, or the network to it is.",
                  remedy=lambda _c: [], remedy_text="a human must bring PD back; no action goes through PD while "
                                                    "it is down", prior=1.0),
        )),
        "store_unreachable": Runbook("store_unreachable", "A store does not answer on its status port",
                                     (dead, hung, our_network)),
        "store_disconnected": Runbook("store_disconnected", "PD hears no heartbeats from a store",
                                      (partition, stalled)),
        "store_down": Runbook("store_down", "A store is Down (past max-store-down-time)", (down_dead, down_alive)),
        "regions_under_replicated": Runbook("regions_under_replicated", "Regions miss peers or have down peers",
                                            (missing_peers,)),
        "leader_imbalance": Runbook("leader_imbalance", "Leaders are unevenly spread", (
            Cause("balancer_off", "balance-leader-scheduler is off", "Nothing moves leaders to even them out.",
                  supports=(balance_leader_missing,), remedy=remedy_imbalance,
                  remedy_text="re-enable balance-leader-scheduler", expected_outcome="leaders spread out within "
                  "seconds to minutes", prior=0.4),
            Cause("grant_leader", "A grant-leader scheduler pins leaders on one store", "",
                  supports=(grant_present,), remedy=remedy_imbalance, remedy_text="remove the grant-leader scheduler",
                  prior=0.3),
            Cause("skewed_weights", "Store leader weights are uneven", "", supports=(weights_skewed,),
                  remedy=remedy_imbalance, remedy_text="reset the leader weight to 1", prior=0.3),
            Cause("rebalancing", "Leaders are still coming back after a restart", "",
                  supports=(recent_restart,), contradicts=(balance_leader_missing, grant_present),
                  remedy=remedy_imbalance, remedy_text="wait: balance-leader is moving them", prior=0.35),
        )),
        "leftover_evict_scheduler": Runbook("leftover_evict_scheduler",
                                            "An evict-leader scheduler keeps a healthy store at 0 leaders", (
            Cause("leftover", "A leftover evict-leader scheduler from finished maintenance",
                  "A rolling restart or manual drain added it and nothing removed it (tiup-cluster#141).",
                  supports=(store_healthy,), contradicts=(our_drain, recent_restart),
                  remedy=lambda c: [ActionRequest(name="remove_scheduler",
                                                  params={"name": f"evict-leader-scheduler-{sid(c)}"},
                                                  reason=f"store {sid(c)} is healthy but the scheduler keeps its "
                                                         "leaders away")],
                  remedy_text="remove the evict-leader scheduler for the store",
                  expected_outcome="the store takes leaders again through balance-leader",
                  risks="if a human is mid-maintenance, leaders return to the store early", prior=0.6),
            Cause("our_drain_outlived", "Our own drain of a slow store outlived the slowness", "",
                  supports=(our_drain, store_healthy),
                  remedy=lambda c: [ActionRequest(name="undrain_store", params={"store_id": sid(c)},
                                                  reason="the store recovered; give its leaders back now")],
                  remedy_text="undrain the store now", prior=0.3),
            Cause("maintenance", "Maintenance in progress (the store restarted moments ago)", "",
                  supports=(recent_restart,), contradicts=(our_drain,), remedy=lambda _c: [],
                  remedy_text="leave it to the human doing the maintenance", prior=0.2),
        )),
        "low_space": Runbook("low_space", "A store is running out of disk", (
            Cause("uneven_regions", "The store holds more than its share of regions", "",
                  supports=(region_share, region_weight_default), contradicts=(outside_usage,),
                  remedy=remedy_low_space, remedy_text="lower its region weight so PD moves regions off",
                  expected_outcome="regions move to other stores and free space", prior=0.5),
            Cause("outside_data", "The disk is full of data that is not the store's regions", "",
                  supports=(outside_usage,), remedy=lambda _c: [],
                  remedy_text="a human must free space or add capacity (moving regions cannot fix this)", prior=0.4),
        )),
        "high_latency": Runbook("high_latency", "Client p99 latency is over the SLO", (
            Cause("one_slow_store", "One store is much slower than the rest", "Its requests dominate the p99.",
                  supports=(latency_outlier,), remedy=remedy_latency_outlier,
                  remedy_text="drain the slow store's leaders and schedule the undrain",
                  expected_outcome="p99 falls back under the SLO once the slow store leads nothing", prior=0.4),
            Cause("failing_requests", "Requests fail (leaderless regions) and clients retry", "",
                  supports=(errors_present,), remedy=lambda _c: [],
                  remedy_text="fix the failing store first (see its own ticket)", prior=0.3),
            Cause("overload", "The cluster as a whole is overloaded", "Every store is slow alike.",
                  contradicts=(latency_outlier,), remedy=lambda _c: [],
                  remedy_text="scale out or shed load: no single store to act on", prior=0.35),
        )),
        "slow_store": Runbook("slow_store", "A slow store still leads regions", (
            Cause("slow_disk", "The store's disk or raftstore is slow", "TiKV's slow score rises when its I/O stalls.",
                  supports=(slow_score_high, store_p99_high), remedy=remedy_slow_store,
                  remedy_text="drain its leaders now and schedule the undrain", expected_outcome="the slow store "
                  "leads nothing, cluster p99 recovers; it gets its leaders back later",
                  risks="the other stores take its load", prior=0.6),
        )),
        "hot_store": Runbook("hot_store", "One store takes a disproportionate share of traffic", (
            Cause("hot_region", "A hot region concentrates traffic on the store", "",
                  supports=(hot_region,), remedy=remedy_hot_store,
                  remedy_text="split the hot region and move its leader to a less loaded store",
                  expected_outcome="the traffic spreads over several stores", prior=0.5),
            Cause("leader_pileup", "The store simply leads too many regions", "",
                  supports=(many_leaders,), contradicts=(hot_region,), remedy=remedy_imbalance,
                  remedy_text="rebalance leaders", prior=0.4),
        )),
    }


def _restart_dead(ctx: RunbookContext) -> list[ActionRequest]:
    if "restart_node" not in ctx.available_actions:
        return []
    for n in stores(ctx.observation):
        if n.metrics.get("probe_ok") == 0.0 and not tried(ctx, "restart_node"):
            return [ActionRequest(name="restart_node", params={"store_id": int(n.id)},
                                  reason=f"store {n.id} is down and holds the missing replicas")]
    return []
