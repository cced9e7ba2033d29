"""The messages of the console.

Workers (the monitor, the agent, the engine, the store poller) never touch widgets: each posts
one of these to the app, which folds it into the console's state and re-renders the visible
screen. Snapshot messages carry whole snapshots, so a newer one may replace an older one still
waiting in the queue (`can_replace`) without losing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from operator_tui.demo.director import Progress
    from operator_tui.policy import Policy
    from operator_tui.store.incident import Incident
    from operator_tui.store.models import ActionRecord, ActionTransition, AuditEvent, FaultRow
    from subjects.base import Observation, Ticket


# (epoch seconds, qps, error rate, p99 ms), oldest first
SeriesPoint = tuple[float, float | None, float | None, float | None]


@dataclass
class ClusterUpdate(Message):
    """One monitor tick: the observation, the active tickets and the workload series so far."""

    observation: Observation
    tick: int
    active: Sequence[Ticket] = ()
    opened: Sequence[Ticket] = ()
    resolved: Sequence[Ticket] = ()
    series: Sequence[SeriesPoint] = ()
    errors: Sequence[str] = ()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ClusterUpdate) and not self.opened and not self.resolved


@dataclass
class StoreUpdate(Message):
    """What the store holds now: policy, this run's tickets and actions, approvals waiting anywhere."""

    policy: Policy
    tickets: Sequence[Ticket] = ()
    actions: Sequence[ActionRecord] = ()
    awaiting: Sequence[ActionRecord] = ()
    faults: Sequence[FaultRow] = ()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StoreUpdate)


@dataclass
class AgentActivity(Message):
    """One step of an agent session (operator_tui.agent.loop.AgentEvent)."""

    session_id: int
    ticket_id: int
    entity: str
    kind: str
    title: str
    content: Any = None


@dataclass
class ActionChanged(Message):
    """The engine moved an action (sent so the console refreshes at once instead of at the next poll)."""

    action: ActionRecord


@dataclass
class ConsoleStarted(Message):
    """The runtime is up: store open, subject built, run started."""

    run_id: int | None
    subject: str
    subject_display: str
    store_path: str
    endpoint: str | None = None


@dataclass
class ConsoleNote(Message):
    """A line for the agent panel from the console itself (a decision, a fault, a worker restart)."""

    kind: str
    title: str
    detail: Sequence[str] = ()
    tone: str = ""


@dataclass
class DemoUpdate(Message):
    """The demo director's progress: the chapter, what it did, waits for or found."""

    progress: Progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DemoUpdate)


# -- intents: screens ask, the app decides and writes ---------------------------------------------


@dataclass
class OpenTicket(Message):
    ticket_id: int


@dataclass
class DemoKey(Message):
    """The presenter moves through the demo: "next" or "back"."""

    key: str


@dataclass
class ReviewAction(Message):
    """Open the approval dialog for this action (from the actions table)."""

    action_id: int


@dataclass
class CancelAction(Message):
    action_id: int


# -- data loaded for one view -----------------------------------------------------------------------


@dataclass
class TicketDetailLoaded(Message):
    ticket_id: int
    detail: dict[str, Any] | None
    error: str = ""


@dataclass
class IncidentLoaded(Message):
    """One ticket's incident, read from the store, for a timeline."""

    ticket_id: int
    incident: Incident | None
    error: str = ""


@dataclass
class AuditLoaded(Message):
    events: Sequence[AuditEvent]
    chain_ok: bool | None = None
    checked: int = 0
    problem: str = ""


@dataclass
class ActionHistoryLoaded(Message):
    action_id: int
    transitions: Sequence[ActionTransition] = field(default_factory=list)


@dataclass
class ApprovalContext(Message):
    """What the approval dialog shows besides the action: the diagnosis that asked for it and a
    dry run through the engine (precheck on a fresh observation, policy)."""

    action_id: int
    action_name: str = ""
    diagnosis: dict[str, Any] | None = None
    ticket: Ticket | None = None
    dry_run: dict[str, Any] | None = None
    problem: str = ""


# -- the eval browser: each screen's one-shot poll posts what it read -------------------------------


@dataclass
class EvalCampaignsLoaded(Message):
    rows: list[Any]  # eval.browse.CampaignRow
    error: str = ""


@dataclass
class EvalThresholdsLoaded(Message):
    """A campaign's threshold results (its analysis), for the badges of the campaign list."""

    campaign_id: int
    version: tuple[Any, ...]
    thresholds: list[dict[str, Any]]
    exit_code: int


@dataclass
class EvalCampaignLoaded(Message):
    campaign_id: int
    view: Any  # eval.browse.CampaignView, None with an error
    error: str = ""


@dataclass
class EvalAnalysisLoaded(Message):
    campaign_id: int
    version: tuple[Any, ...]
    analysis: Any  # eval.campaign_analysis.Analysis


@dataclass
class EvalComparisonLoaded(Message):
    campaign_id: int
    a: str
    b: str
    rows: list[dict[str, Any]]


@dataclass
class EvalTrialLoaded(Message):
    trial_id: int
    view: Any  # eval.browse.TrialView, None with an error
    error: str = ""
