"""The vocabulary shared by the core and every subject.

A subject adapts one kind of system. The core (monitor, agent, action engine, console) only ever
sees what is defined here, so nothing in it names a particular system. Values that cross a
boundary (observations, violations, tickets, diagnoses) are pydantic models; behaviour that a
subject supplies (invariant checks, runbook signals, action execution) is plain callables held in
frozen dataclasses.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Severity(enum.StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


class RiskTier(enum.StrEnum):
    low = "low"
    high = "high"
    destructive = "destructive"


class NodeState(enum.StrEnum):
    up = "up"
    degraded = "degraded"  # serving, but something about it is wrong (slow, full, partitioned)
    down = "down"
    unknown = "unknown"  # we could not tell (e.g. the control plane is unreachable)
    removed = "removed"  # deliberately taken out (offline/tombstone)


# ---------------------------------------------------------------------------------------------
# Observation


class Node(BaseModel):
    """One member of the system: a store, a PD member, a service node, a Redis server."""

    id: str
    kind: str
    name: str = ""
    address: str = ""
    state: NodeState = NodeState.unknown
    state_detail: str = ""  # the system's own word for it: "Disconnected", "Down", "draining"
    role: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)

    @property
    def entity(self) -> str:
        return f"{self.kind}:{self.id}"


class Workload(BaseModel):
    """What clients of the system experience, over the last interval."""

    qps: float | None = None
    error_rate: float | None = None  # failed requests / all requests, 0..1
    p99_ms: float | None = None


class Observation(BaseModel):
    """One timestamped snapshot. Failure to observe is an observation too (reachable=False)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    subject: str
    at: datetime = Field(default_factory=utcnow)
    monotonic: float = 0.0
    reachable: bool = True
    error: str | None = None
    nodes: list[Node] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    workload: Workload = Field(default_factory=Workload)
    details: dict[str, Any] = Field(default_factory=dict)
    duration_ms: float = 0.0

    def node(self, entity_or_id: str, kind: str | None = None) -> Node | None:
        for n in self.nodes:
            if n.entity == entity_or_id or (n.id == entity_or_id and (kind is None or n.kind == kind)):
                return n
        return None


# ---------------------------------------------------------------------------------------------
# Invariants and tickets


class Violation(BaseModel):
    invariant: str
    entity: str  # "store:2", "cluster", "key:user:7", ...
    severity: Severity
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    # This violation's own grace, when its evidence is conclusive sooner than the invariant's
    # (a refused connection, against a timeout that may be a busy node). None: the invariant's.
    grace_s: float | None = None

    @property
    def dedup_key(self) -> str:
        return f"{self.invariant}@{self.entity}"


History = Sequence[Observation]  # oldest first; the current observation is not included


class NotEvaluated(BaseModel):
    """A check could not judge (part of) what it watches because its data is missing: Prometheus
    did not answer, a store's metrics page could not be read. Missing data is never "all clear":
    the monitor neither opens nor resolves the tickets it covers, and when the data stays missing
    it opens a `metrics_missing` ticket on `source` (one ticket per missing source, however many
    checks it starves)."""

    reason: str  # for people: "Prometheus at http://...:9090 did not answer within 2 s"
    entity: str | None = None  # None: every entity of the invariant
    source: str = "metrics"  # the missing data, as an entity of its own: "metrics:prometheus"
    # An invariant whose violation on the same entity explains the gap (a node that is down has no
    # metrics): while it fires, its ticket covers this and no metrics_missing ticket opens.
    explained_by: str | None = None


@dataclass
class CheckResult:
    """What a check found: the violations among what it could judge, and what it could not judge.

    A check may return a plain list of violations (everything was evaluated) or a CheckResult:

        if p99 is None:
            return CheckResult(not_evaluated=[NotEvaluated(reason="no latency metrics", entity="cluster",
                                                           source="metrics:prometheus")])
    """

    violations: list[Violation] = field(default_factory=list)
    not_evaluated: list[NotEvaluated] = field(default_factory=list)

    def evaluated(self, entity: str) -> bool:
        return not any(n.entity is None or n.entity == entity for n in self.not_evaluated)


def check_result(found: list[Violation] | CheckResult) -> CheckResult:
    return found if isinstance(found, CheckResult) else CheckResult(violations=list(found))


CheckFn = Callable[[Observation, History], "list[Violation] | CheckResult"]


@dataclass(frozen=True)
class Invariant:
    """Something that must hold. `check` returns one violation per offending entity."""

    name: str
    description: str
    severity: Severity
    entity_kind: str
    check: CheckFn
    grace_s: float = 0.0  # a violation must persist this long before a ticket opens
    # Alertmanager-style inhibition: while one of these fires on the same entity, this one is
    # the same incident seen later or from further away, so it opens no ticket of its own.
    inhibited_by: tuple[str, ...] = ()
    # ... and while one of these fires on any entity (a cluster-wide symptom of a node's fault).
    inhibited_by_any: tuple[str, ...] = ()
    # Checks the subject's reachability itself; it is the only kind evaluated on an
    # observation with reachable=False (which says nothing about anything else).
    on_unreachable: bool = False

    def evaluate(self, obs: Observation, history: History) -> CheckResult:
        """Run the check; a plain list of violations means everything was evaluated."""
        return check_result(self.check(obs, history))


class TicketStatus(enum.StrEnum):
    open = "open"
    investigating = "investigating"  # an agent session holds it
    escalated = "escalated"  # the agent gave up; a human must act
    resolved = "resolved"

    @classmethod
    def active(cls) -> tuple[TicketStatus, ...]:
        return (cls.open, cls.investigating, cls.escalated)


class Ticket(BaseModel):
    id: int
    run_id: int
    invariant: str
    entity: str
    severity: Severity
    status: TicketStatus
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None = None
    occurrences: int = 1
    resolution: dict[str, Any] | None = None
    claimed_by: str | None = None

    @property
    def dedup_key(self) -> str:
        return f"{self.invariant}@{self.entity}"


# ---------------------------------------------------------------------------------------------
# Actions


class ActionParams(BaseModel):
    """Base of every action's parameter model: unknown parameters are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class ActionFailed(Exception):
    """An action did not do what it was asked. `retryable` failures may succeed if tried again."""

    def __init__(self, reason: str, *, retryable: bool = False, data: dict[str, Any] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.data = data or {}


class ActionOutcome(BaseModel):
    detail: str  # one line for people: "leader of region 17 moved from store 1 to store 3"
    data: dict[str, Any] = Field(default_factory=dict)


class Reconciliation(BaseModel):
    """After an interruption (a crash, the kill switch, a timeout, a failure after the request was
    sent): did the action take effect? (None: cannot tell; a human must look)"""

    took_effect: bool | None
    detail: str


@dataclass
class ActionContext:
    """What an executing action may use besides its parameters."""

    progress: Callable[[str], None] = lambda _msg: None
    timeout_s: float = 120.0
    # The engine's clock, so waits inside actions can be driven by tests.
    sleep: Callable[[float], Awaitable[None]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The engine's hook behind `sending()`: records, durably, that a change may now be under way.
    on_send: Callable[[dict[str, Any] | None], Awaitable[None]] | None = None

    async def sending(self, checkpoint: dict[str, Any] | None = None) -> None:
        """Say so right before a request that may change the system. `checkpoint` is what a
        reconcile function needs to tell afterwards whether the change happened (e.g. a region's
        key range before a split); it is stored before this returns, so it survives a crash."""
        if self.on_send is not None:
            await self.on_send(checkpoint)


PrecheckFn = Callable[[Observation, Any], Awaitable[list[str]]]
ExecuteFn = Callable[[Any, ActionContext], Awaitable[ActionOutcome]]
# reconcile(obs, params); one that declares a keyword parameter `checkpoint` also receives what the
# action recorded with ctx.sending(checkpoint) (None when it recorded nothing).
ReconcileFn = Callable[..., Awaitable[Reconciliation]]


@dataclass(frozen=True)
class ActionDef:
    """One thing the operator can do to the system.

    `params` is a pydantic model whose JSON schema is what an LLM and the CLI see. `precheck`
    runs against a fresh observation right before execution and returns the problems it finds
    (empty: go). `execute` performs the change and waits until the system confirms it (or raises
    ActionFailed). `target` names the entity the action changes, for per-target locks.

    Once a request may have been sent, an interrupted action (killed, stopped by the kill switch,
    timed out, failed after sending) is `unknown` until `reconcile` says whether it took effect;
    a non-idempotent one is never sent again before that. `marks_sends`: `execute` calls
    `ctx.sending()` before every request that may change the system, so an interruption before
    the first call is known to have changed nothing. `risk_for` computes the risk from the
    parameters when it depends on them (removing a balancing scheduler is riskier than removing
    a leftover evict-leader one); `risk` is then the tier of the least risky parameters.
    """

    name: str
    description: str
    params: type[ActionParams]
    risk: RiskTier
    idempotent: bool
    target: Callable[[Any], str]
    precheck: PrecheckFn
    execute: ExecuteFn
    preview: Callable[[Any], str]  # what would be sent, for --dry-run and the approval modal
    reconcile: ReconcileFn | None = None
    undo: str | None = None  # the action that reverses this one, if any
    marks_sends: bool = False
    risk_for: Callable[[Any], RiskTier] | None = None

    def schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()

    def risk_of(self, params: Any) -> RiskTier:
        """The risk of running this action with these (validated) parameters."""
        return self.risk if self.risk_for is None else self.risk_for(params)


# ---------------------------------------------------------------------------------------------
# Runbooks: what the embedded diagnoser reasons over, and context for an LLM


@dataclass(frozen=True)
class RunbookContext:
    """What a runbook may look at when weighing a cause for one violation."""

    violation: Violation
    observation: Observation
    history: History
    available_actions: frozenset[str]
    ticket_age_s: float = 0.0
    attempt: int = 1  # 1 for the first diagnosis of this ticket
    previous_actions: tuple[dict[str, Any], ...] = ()  # what earlier attempts ran, with outcomes
    allow_destructive: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


class Finding(BaseModel):
    """The result of looking for one piece of evidence."""

    signal: str
    present: bool | None  # None: no data to tell
    reading: str  # what was seen, with values: "slow_score=100 (threshold 80)"
    value: float | str | None = None


class ActionRequest(BaseModel):
    """An action a runbook (or a model) recommends, with complete parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    delay_s: float = 0.0  # > 0: schedule it this long after the previous step succeeded


@dataclass(frozen=True)
class Signal:
    name: str
    description: str
    probe: Callable[[RunbookContext], Finding]
    weight: float = 1.0


@dataclass(frozen=True)
class Cause:
    name: str
    title: str
    description: str
    supports: tuple[Signal, ...] = ()
    contradicts: tuple[Signal, ...] = ()
    # Binds parameters from the evidence. Returns the ordered steps to run (a workflow), or []
    # when the right move is to hand the ticket to a human; `remedy_text` says which and why.
    remedy: Callable[[RunbookContext], list[ActionRequest]] = lambda _ctx: []
    remedy_text: str = ""
    prior: float = 0.5
    expected_outcome: str = ""
    risks: str = ""


@dataclass(frozen=True)
class Runbook:
    invariant: str
    summary: str
    causes: tuple[Cause, ...]


# ---------------------------------------------------------------------------------------------
# Subjects


class ClusterIdentity(BaseModel):
    """Which cluster a subject watches, so that records (runs, actions, approvals) made against
    one cluster are never applied to another, and so that policy can be stricter on real ones."""

    id: str  # stable for the cluster's life: "pd-cluster:7201...", "etcd-cluster:cdf8...", "lab:..."
    real: bool = True  # False: a simulator or a local lab, where defaults may be looser
    detail: str = ""  # for people: "PD http://10.0.0.1:2379, cluster id 7201..."


@runtime_checkable
class Subject(Protocol):
    """One system under watch. Implementations live in subjects/<system>/.

    Optional: `async def cluster_identity(self) -> ClusterIdentity | None` (see `identify`). A
    subject without it is treated as an unidentified, real cluster.
    """

    name: str  # "tikv"
    display: str  # "TiKV via PD http://127.0.0.1:2379"

    async def observe(self) -> Observation: ...

    def invariants(self) -> list[Invariant]: ...

    def runbooks(self) -> dict[str, Runbook]: ...

    def actions(self) -> list[ActionDef]: ...

    async def aclose(self) -> None: ...


async def identify(subject: Any) -> ClusterIdentity | None:
    """The subject's cluster identity, when it can tell (None: it cannot, right now or at all)."""
    method = getattr(subject, "cluster_identity", None)
    if method is None:
        return None
    try:
        return await method()
    except Exception:  # an identity that cannot be read is "unknown", never a crash
        return None


class FaultRecord(BaseModel):
    """An injected fault and exactly what undoes it, so that it can always be reverted."""

    subject: str
    kind: str
    target: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    undo: dict[str, Any] = Field(default_factory=dict)
    detail: str = ""
