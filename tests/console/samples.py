"""Fixed data for console tests: observations, tickets, actions, audit events, a diagnosis.

Every time is fixed, so snapshots never show a wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from operator_tui.config import Settings
from operator_tui.policy import Policy
from operator_tui.store.incident import Incident, IncidentEvent
from operator_tui.store.models import ActionRecord, ActionTransition, AuditEvent, FaultRow
from subjects.base import Node, Observation, Ticket, Workload

T0 = datetime(2025, 3, 14, 9, 26, 0, tzinfo=UTC)
SNAPSHOT_DB = Path("/var/lib/operator-tui/operator.db")  # shown in the status bar, never opened
PD_URL = "http://127.0.0.1:2379"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def frozen_clock() -> datetime:
    return at(90)


def settings(db: Path = SNAPSHOT_DB, **extra: Any) -> Settings:
    return Settings(db=db, **extra)


def store_node(i: int, *, state: str = "up", detail: str = "Up", leaders: int = 40, qps: float = 5000.0,
               p99: float = 6.0, free: float = 0.73, slow: float = 0.0) -> Node:
    capacity = 512 * 2**30
    metrics = {"leader_count": float(leaders), "region_count": 120.0, "capacity_bytes": float(capacity),
               "available_bytes": capacity * free, "available_ratio": free, "qps": qps, "p99_ms": p99,
               "probe_ok": 0.0 if state == "down" else 1.0}
    if slow:
        metrics["slow_score"] = slow
    if state == "down":
        metrics.pop("qps")
        metrics.pop("p99_ms")
    return Node(id=str(i), kind="store", name=f"store {i}", address=f"127.0.0.1:2016{i}", state=state,
                state_detail=detail, role="tikv", metrics=metrics)


def pd_node() -> Node:
    return Node(id="pd-0", kind="pd", name="pd pd-0", address=PD_URL, state="up", state_detail="healthy", role="pd")


def healthy_observation(second: float = 60, stores: int = 5) -> Observation:
    nodes = [store_node(i) for i in range(1, stores + 1)] + [pd_node()]
    return Observation(subject="tikv", at=at(second), nodes=nodes,
                       workload=Workload(qps=25000.0, error_rate=0.0, p99_ms=6.1), details={"pd_url": PD_URL})


def degraded_observation(second: float = 60) -> Observation:
    nodes = [store_node(1, leaders=50), store_node(2, state="down", detail="Up (status port: connection refused)",
                                                   leaders=0),
             store_node(3, leaders=50), store_node(4, state="degraded", detail="Up (slow)", slow=95.0, p99=48.0),
             store_node(5, leaders=50), pd_node()]
    return Observation(subject="tikv", at=at(second), nodes=nodes,
                       workload=Workload(qps=20000.0, error_rate=0.158, p99_ms=48.0), details={"pd_url": PD_URL})


def unreachable_observation(second: float = 60) -> Observation:
    nodes = [store_node(i).model_copy(update={"state": "unknown", "state_detail": "PD unreachable"})
             for i in range(1, 6)]
    return Observation(subject="tikv", at=at(second), reachable=False,
                       error=f"cannot connect to PD at {PD_URL}: connection refused", nodes=nodes)


def series(n: int = 60, *, dip_from: int | None = None) -> list[tuple[float, float | None, float | None, float | None]]:
    out = []
    for i in range(n):
        qps = 25000.0 + (i % 7) * 150
        err, p99 = 0.0, 6.0 + (i % 5) * 0.2
        if dip_from is not None and i >= dip_from:
            qps, err, p99 = 20000.0 + (i % 3) * 200, 0.158, 48.0
        out.append((at(i).timestamp(), qps, err, p99))
    return out


def ticket(tid: int, *, invariant: str = "store_unreachable", entity: str = "store:2", status: str = "open",
           severity: str = "critical", summary: str = "store 2 does not answer on its status port",
           opened: float = 30, resolved: float | None = None, seen: int = 7) -> Ticket:
    return Ticket(id=tid, run_id=1, invariant=invariant, entity=entity, severity=severity, status=status,
                  summary=summary, evidence={"status_port": "connection refused"}, opened_at=at(opened),
                  last_seen_at=at(opened + seen), resolved_at=at(resolved) if resolved is not None else None,
                  occurrences=seen)


def tickets_mixed() -> list[Ticket]:
    return [
        ticket(5, status="open"),
        ticket(4, invariant="slow_store", entity="store:4", status="investigating", severity="warning",
               summary="store 4 has slow score 95 and still leads 40 regions", opened=28),
        ticket(3, invariant="leader_imbalance", entity="cluster", status="escalated", severity="warning",
               summary="store 1 leads 50 regions, store 2 none", opened=20),
        ticket(2, invariant="low_space", entity="store:3", status="resolved", severity="warning",
               summary="store 3 has 12% of its capacity free", opened=5, resolved=15),
        ticket(1, invariant="store_down", entity="store:5", status="resolved",
               summary="store 5 is Down past max-store-down-time", opened=1, resolved=10),
    ]


def action(aid: int, *, state: str = "awaiting_approval", name: str = "restart_node", params: dict | None = None,
           ticket_id: int | None = 5, risk: str = "high", requested_by: str = "agent", reason: str | None = None,
           session_id: int | None = 1) -> ActionRecord:
    params = params if params is not None else {"store_id": 2}
    return ActionRecord(
        id=aid, run_id=1, ticket_id=ticket_id, session_id=session_id, name=name, params=params,
        target=f"store:{params['store_id']}" if "store_id" in params else f"region:{params.get('region_id')}", risk=risk, idempotent=True, state=state,
        reason=reason if reason is not None else ("approval required (mode execute, approval all)"
                                                  if state == "awaiting_approval" else state),
        requested_by=requested_by, created_at=at(31), updated_at=at(32), expires_at=at(931),
        preview=(f"POST /sim/v1/stores/{params['store_id']}/restart" if name == "restart_node"
                 else f"POST /pd/api/v1/operators {{\"name\": \"{name}\", ...}}"),
        result={"detail": "store 2 restarted; its status port answers"} if state == "succeeded" else None,
        decided_by="human:sre" if state in ("succeeded", "rejected") else None,
        decided_at=at(40) if state in ("succeeded", "rejected") else None,
    )


def actions_mixed() -> list[ActionRecord]:
    return [
        action(4, state="awaiting_approval"),
        action(3, state="rejected", name="evict_leader", params={"store_id": 4}, ticket_id=4,
               reason="rejected by human:sre: not during the batch window"),
        action(2, state="failed", name="transfer_leader", params={"region_id": 17, "to_store": 3}, ticket_id=3,
               risk="low", reason="store 3 refused: region 17 is merging"),
        action(1, state="succeeded", params={"store_id": 5}, ticket_id=1, reason="store 5 restarted"),
    ]


def transitions(action_id: int = 1) -> list[ActionTransition]:
    steps = [(None, "proposed", "agent", "requested"), ("proposed", "validated", "system", "parameters and precheck passed"),
             ("validated", "awaiting_approval", "system", "approval required (mode execute, approval all)"),
             ("awaiting_approval", "approved", "human:sre", "approved by human:sre"),
             ("approved", "executing", "system", "precheck passed on a fresh observation"),
             ("executing", "succeeded", "system", "store 5 restarted; its status port answers")]
    return [ActionTransition(id=i, action_id=action_id, at=at(30 + i), from_state=a, to_state=b, actor=who, reason=why)
            for i, (a, b, who, why) in enumerate(steps, start=1)]


DIAGNOSIS: dict[str, Any] = {
    "summary": "store 2 does not answer on its status port: most likely the store's TiKV process is dead",
    "root_cause": "The store's TiKV process is dead (status port: connection refused; restart_node is available)",
    "evidence": [{"signal": "status port", "reading": "connection refused on 127.0.0.1:20162", "value": None},
                 {"signal": "PD state", "reading": "state_name=Up (heartbeats stopped 12 s ago)", "value": "Up"}],
    "alternatives": [
        {"cause": "The store's TiKV process is dead", "supporting": ["status port refused"], "contradicting": [],
         "verdict": "chosen", "score": 2.5},
        {"cause": "The network between the operator and the store is broken", "supporting": [],
         "contradicting": ["peers report it down too"], "verdict": "rejected: peers report it down too (score 0.5 vs 2.5)",
         "score": 0.5},
        {"cause": "The store's process is hung", "supporting": [], "contradicting": ["the port refuses connections"],
         "verdict": "rejected: the port refuses connections (score 0.0 vs 2.5)", "score": 0.0},
    ],
    "recommended_actions": [{"name": "restart_node", "params": {"store_id": 2},
                             "reason": "bring the dead TiKV process back", "delay_s": 0.0}],
    "expected_outcome": "store_unreachable holds again for store:2",
    "risks": "a restart loop if the process keeps crashing",
    "confidence": 0.97,
    "escalate": False,
}


def ticket_detail(resolved: bool) -> dict[str, Any]:
    t = ticket(5, status="resolved" if resolved else "investigating", resolved=44 if resolved else None)
    detail = t.model_dump(mode="json")
    timeline = [("opened", "monitor", {"summary": t.summary}, 30), ("claimed", "agent", {"session_id": 1, "attempt": 1}, 30),
                ("diagnosed", "agent", {"summary": DIAGNOSIS["summary"]}, 31)]
    if resolved:
        timeline.append(("resolved", "agent", {"reason": "store_unreachable holds again for store:2"}, 44))
    detail["timeline"] = [{"id": i, "ticket_id": 5, "at": at(s).isoformat(), "kind": k, "status": None, "actor": who,
                           "detail": d} for i, (k, who, d, s) in enumerate(timeline, start=1)]
    detail["diagnosis"] = DIAGNOSIS
    detail["verification"] = ({"holds": True, "summary": "store_unreachable holds again for store:2",
                               "observed_at": at(44).isoformat()} if resolved else None)
    acts = [action(4, state="succeeded" if resolved else "awaiting_approval", reason="store 2 restarted"
                   if resolved else None)]
    detail["actions"] = [a.model_dump(mode="json") for a in acts]
    detail["sessions"] = []
    if resolved:
        detail["resolution"] = {"by": "agent", "reason": "store_unreachable holds again for store:2"}
    detail["incident"] = incident(resolved).model_dump(mode="json")
    return detail


def incident(resolved: bool = True) -> Incident:
    """Ticket 5's incident: store 2 killed, detected, diagnosed, restart approved by a human, verified."""
    t = ticket(5, status="resolved" if resolved else "investigating", resolved=44 if resolved else None)
    act = action(4, state="succeeded" if resolved else "awaiting_approval")

    def ev(second: float, source: str, kind: str, ref: str, actor: str, summary: str = "", **extra: Any) -> IncidentEvent:
        return IncidentEvent(at=at(second), source=source, kind=kind, ref=ref, actor=actor, summary=summary, **extra)

    steps = [(None, "proposed", "agent", "restart the dead TiKV process", 31.5),
             ("proposed", "validated", "system", "parameters and precheck passed", 31.6),
             ("validated", "awaiting_approval", "system", "approval required (mode execute, approval all)", 31.7)]
    if resolved:
        steps += [("awaiting_approval", "approved", "human:sre", "approved by human:sre", 38.0),
                  ("approved", "executing", "system", "precheck passed on a fresh observation", 38.2),
                  ("executing", "succeeded", "system", "store 2 restarted; its status port answers", 39.0)]
    events = [
        ev(29, "fault", "injected", "fault:1", "human:sre", "kill_store store_id=2", detail={"kind": "kill_store"}),
        ev(30, "ticket", "opened", "ticket:5", "monitor", t.summary),
        ev(30.2, "ticket", "claimed", "ticket:5", "agent", detail={"session_id": 1, "attempt": 1}),
        ev(31, "ticket", "diagnosed", "ticket:5", "agent", DIAGNOSIS["summary"], detail={"confidence": 0.97}),
        *(ev(second, "action", to, "action:4", who, why, risk="high",
             detail={"name": "restart_node", "params": {"store_id": 2}, "from": frm})
          for frm, to, who, why, second in steps),
    ]
    if resolved:
        events += [ev(44, "verification", "holds", "session:1", "agent", "store_unreachable holds again for store:2"),
                   ev(44, "ticket", "resolved", "ticket:5", "agent", "store_unreachable holds again for store:2")]
    return Incident(ticket=t, events=events, actions=[act], faults=[fault()])


def audit_events(n: int = 8) -> list[AuditEvent]:
    kinds = [("human:sre", "setting.changed", "setting:approval", {"from": None, "to": "all"}),
             ("human:sre", "fault.injected", "fault:1", {"kind": "kill_store", "target": "2"}),
             ("agent", "action.proposed", "action:4", {"name": "restart_node", "params": {"store_id": 2}}),
             ("system", "action.validated", "action:4", {"from": "proposed"}),
             ("system", "action.awaiting_approval", "action:4", {"from": "validated"}),
             ("human:sre", "action.approved", "action:4", {"from": "awaiting_approval"}),
             ("system", "action.executing", "action:4", {"from": "approved"}),
             ("system", "action.succeeded", "action:4", {"from": "executing"})]
    out = []
    for i in range(n):
        actor, kind, ref, data = kinds[i % len(kinds)]
        out.append(AuditEvent(id=i + 1, at=at(20 + i), run_id=1, actor=actor, kind=kind, ref=ref, data=data,
                              prev_hash=f"{i:064x}", hash=f"{i + 1:064x}"))
    return out


def fault(fid: int = 1) -> FaultRow:
    return FaultRow(id=fid, run_id=1, subject="tikv", kind="kill_store", target="2", params={"store_id": 2},
                    record={"detail": "kill_store store_id=2"}, status="active", injected_at=at(29), actor="human:sre")


def policy(**kw: Any) -> Policy:
    base = {"mode": "execute", "approval": "all"}
    base.update(kw)
    return Policy(**base)
