"""The console's state: what every screen renders from.

The app folds each worker message into one `ConsoleState`; screens turn it into widget views.
Nothing here touches Textual, so it is cheap to update while rendering is paused (a modal is
open) and easy to test.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from widgets import format as fmt
from widgets.agent_log import FeedLine
from widgets.narration import NarrationView
from widgets.node_grid import Line, TileView, spans
from widgets.status import NavView, StatusView
from widgets.workload import WorkloadPoint

if TYPE_CHECKING:
    from operator_tui.demo.director import Progress
    from operator_tui.policy import Policy
    from operator_tui.store.models import ActionRecord, FaultRow
    from subjects.base import Node, Observation, Ticket

ACTIVE_TICKET = ("open", "investigating", "escalated")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
KIND_ORDER = {"store": 0, "pd": 1}


def _id_order(node: Node) -> tuple[int, int, str]:
    return (KIND_ORDER.get(node.kind, 2), int(node.id) if node.id.isdigit() else 1 << 30, node.id)


def short_detail(detail: str) -> str:
    """'Down (status port not answering)' -> 'Down'."""
    return detail.split(" (", 1)[0].strip()


@dataclass
class ConsoleState:
    subject: str = ""
    subject_display: str = ""
    store_path: str = ""
    endpoint: str | None = None
    run_id: int | None = None
    phase: str = "starting"  # starting | running | stopping | offline | failed
    phase_detail: str = ""
    tick: int = 0
    observation: Observation | None = None
    unreachable_since: datetime | None = None
    active: list[Ticket] = field(default_factory=list)
    series: tuple[tuple[float, float | None, float | None, float | None], ...] = ()
    tickets: list[Ticket] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    awaiting: list[ActionRecord] = field(default_factory=list)
    faults: list[FaultRow] = field(default_factory=list)
    policy: Policy | None = None
    feed: deque[FeedLine] = field(default_factory=lambda: deque(maxlen=500))
    feed_seq: int = 0
    trouble: dict[str, str] = field(default_factory=dict)  # worker -> what went wrong
    demo_mode: bool = False  # the console plays a demo (its narration is the "demo" mode's screen)
    demo: Progress | None = None  # the demo director's latest progress
    # entity -> (what its tile depends on, the tile): a tick rebuilds only the tiles that changed
    _tiles: dict[str, tuple[tuple[Any, ...], TileView]] = field(default_factory=dict, repr=False)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    # -- folding messages in ----------------------------------------------------------------------

    def apply_cluster(self, observation: Observation, tick: int, active: Sequence[Ticket],
                      series: Sequence[tuple[float, float | None, float | None, float | None]]) -> None:
        if not observation.reachable:
            if self.unreachable_since is None:
                self.unreachable_since = observation.at
        else:
            self.unreachable_since = None
        self.observation = observation
        self.tick = tick
        self.active = list(active)
        self.series = tuple(series)
        if self.phase == "starting":
            self.phase = "running"

    def add_feed(self, kind: str, title: str, *, ticket_id: int | None = None, entity: str = "",
                 detail: Iterable[str] = (), tone: str = "") -> FeedLine:
        self.feed_seq += 1
        line = FeedLine(self.feed_seq, fmt.clock(self.clock()), ticket_id, entity, kind, title, tuple(detail), tone)
        self.feed.append(line)
        return line

    def add_agent_event(self, ticket_id: int, entity: str, kind: str, title: str, content: Any) -> FeedLine:
        detail, tone = describe_event(kind, content)
        return self.add_feed(kind, title, ticket_id=ticket_id, entity=entity, detail=detail, tone=tone)

    # -- derived views ----------------------------------------------------------------------------

    @property
    def reachable(self) -> bool:
        return self.observation is None or self.observation.reachable

    @property
    def open_tickets(self) -> list[Ticket]:
        return [t for t in self.active if t.status in ACTIVE_TICKET]

    def tickets_by_entity(self) -> dict[str, Ticket]:
        """The most severe active ticket per entity (newest on a tie)."""
        out: dict[str, Ticket] = {}
        for t in self.open_tickets:
            held = out.get(t.entity)
            if held is None or (SEVERITY_RANK.get(t.severity, 0), t.id) > (SEVERITY_RANK.get(held.severity, 0), held.id):
                out[t.entity] = t
        return out

    @property
    def degraded(self) -> bool:
        obs = self.observation
        if obs is None:
            return False
        if not obs.reachable or self.open_tickets:
            return True
        return any(n.state in ("down", "degraded") for n in obs.nodes)

    def tile_views(self) -> list[TileView]:
        obs = self.observation
        if obs is None:
            return []
        tickets = self.tickets_by_entity()
        cache = self._tiles
        if len(cache) > 2 * len(obs.nodes) + 50:
            cache.clear()
        views = []
        for n in sorted(obs.nodes, key=_id_order):
            ticket = tickets.get(n.entity)
            key = (n.state, n.state_detail, n.name, n.address, n.role, tuple(n.metrics.items()),
                   ticket.id if ticket else None, ticket.severity if ticket else None,
                   ticket.invariant if ticket else None)
            cached = cache.get(n.entity)
            if cached is None or cached[0] != key:
                cached = (key, tile_view(n, ticket, obs.reachable))
                cache[n.entity] = cached
            views.append(cached[1])
        return views

    def workload_points(self) -> list[WorkloadPoint]:
        if not self.series:
            return []
        newest = self.series[-1][0]
        return [WorkloadPoint(at - newest, qps, err, p99) for at, qps, err, p99 in self.series]

    def status_view(self) -> StatusView:
        p = self.policy
        phase = "waiting for data" if self.phase == "running" and not self.tick else self.phase
        return StatusView(
            mode=p.mode if p else "-", approval=p.approval if p else "-", killswitch=bool(p and p.killswitch),
            subject=self.subject_display or self.subject, store=self.store_path, endpoint=self.endpoint,
            tick=self.tick, phase=phase, awaiting=len(self.awaiting),
            trouble="; ".join(f"{k}: {v}" for k, v in sorted(self.trouble.items())),
        )

    def nav_view(self, active: str) -> NavView:
        return NavView(active=active, open_tickets=len(self.open_tickets), awaiting=len(self.awaiting),
                       demo=self.demo_mode)

    def narration_view(self) -> NarrationView | None:
        p = self.demo
        if p is None:
            return None
        c = p.chapter
        lines: list[tuple[str, str]] = []
        detail: tuple[str, ...] = ()
        narration = c.narration
        if p.phase == "starting":
            lines.append((f"⏳ {p.note}", "wait"))
        elif p.note:
            lines.append((p.note, "note"))
        if p.phase == "countdown" and c.fault is not None:
            target = f" on {c.fault.target}" if c.fault.target else ""
            lines.append((f"Fault in {p.countdown} s: {c.fault.kind}{target}", "countdown"))
        elif p.phase == "waiting":
            lines.append((f"⏳ Waiting for {p.waiting_for} · {p.waited_s} s of {p.timeout_s} s", "wait"))
            if not p.autoplay:
                lines.append(("space moves on without waiting", "dim"))
        if p.happened is not None:
            mark, tone = ("✔", "good") if p.happened.ok else ("✘", "bad")
            lines.append((f"{mark} {fmt.clock(p.happened.at)}  {p.happened.summary}", tone))
            detail = p.happened.detail
        if p.problem:
            lines.append(("✘ Not as planned: see the narration", "bad"))
            narration += f"\n\n---\n\n**Not as planned.** {p.problem}"
        if p.finished:
            hint = "the demo is over · q quits"
        elif p.autoplay and p.next_in is not None:
            hint = (f"autoplay · the demo ends in {p.next_in} s" if p.index + 1 == p.total
                    else f"autoplay · next in {p.next_in} s · q quits")
        elif p.next_in is not None and p.index + 1 < p.total:
            hint = f"next in {p.next_in} s · space now · ← back"
        elif p.autoplay:
            hint = "autoplay · q quits"
        elif p.index + 1 == p.total:
            hint = "last chapter · ← back · q quit"
        else:
            hint = "space/→ next · ← back · q quit"
        segments = tuple("current" if i == p.index else phase if phase in ("done", "missed") else "todo"
                         for i, phase in enumerate(p.phases))
        return NarrationView(p.title, p.index + 1, p.total, c.title, narration, segments, tuple(lines), detail,
                             p.countdown if p.phase == "countdown" else None, hint)

    def killswitch_text(self) -> str | None:
        p = self.policy
        if p is None or not p.killswitch:
            return None
        # "stopped", not "cancelled": a running action whose request was sent is reconciled (see the feed).
        return (f"KILL SWITCH ENGAGED by {p.killswitch_by or 'unknown'}: nothing new runs; pending actions are "
                "cancelled, running ones stopped.  Press ctrl+k to release.")

    def unreachable_text(self) -> str | None:
        obs = self.observation
        if obs is None or obs.reachable:
            return None
        since = fmt.clock(self.unreachable_since)
        return (f"{self.subject_display or self.subject} is UNREACHABLE since {since} UTC: {obs.error or 'no answer'}."
                "  Tiles show the last known nodes as unknown; tickets keep their state.")


def tile_view(node: Node, ticket: Ticket | None, reachable: bool) -> TileView:
    m = node.metrics
    state = node.state.value if hasattr(node.state, "value") else str(node.state)
    lines: list[Line] = []
    if node.kind == "store":
        lines.append(spans("ldr ", (fmt.count(m.get("leader_count")), "bold"), "  rgn ",
                           (fmt.count(m.get("region_count")), "bold")))
        if "capacity_bytes" in m:
            lines.append(spans(f"free {fmt.percent(m.get('available_ratio'))} of {fmt.size(m.get('capacity_bytes'))}"))
        else:
            lines.append(spans("capacity -"))
        lines.append(spans(f"qps {fmt.count(m.get('qps'))}  p99 {fmt.ms(m.get('p99_ms'))}"))
    elif node.kind == "pd":
        address = node.address.split("://", 1)[-1]
        lines.append(spans((fmt.clip(address or node.role or "pd", 20), "dim")))
        lines.append(spans(node.state_detail or state))
    else:
        shown = list(m.items())[:3]
        if node.role:  # e.g. which etcd member leads
            lines.append(spans((fmt.clip(node.role, 20), "bold")))
            shown = shown[:2]
        lines.extend(spans(f"{fmt.clip(k, 10)} {fmt.count(v)}") for k, v in shown)
    if ticket is not None:
        lines.append(spans((f"#{ticket.id} {fmt.clip(ticket.invariant, 16)}", "bold")))
    elif state != "up" and node.state_detail and node.kind != "pd":
        lines.append(spans(fmt.clip(short_detail(node.state_detail), 20)))
    subtitle = f"#{ticket.id} {ticket.severity}" if ticket is not None else state
    return TileView(key=node.entity, title=node.name or node.entity, state=state, lines=tuple(lines[:4]),
                    subtitle=subtitle, ticket=ticket.id if ticket else None,
                    severity=ticket.severity if ticket else "")


def describe_event(kind: str, content: Any) -> tuple[list[str], str]:
    """Extra lines and tone for one agent step in the live panel."""
    detail: list[str] = []
    tone = ""
    if kind == "diagnosis" and isinstance(content, dict):
        conf = content.get("confidence")
        if conf is not None:
            detail.append(f"confidence {fmt.percent(conf)} · {fmt.clip(content.get('summary', ''), 120)}")
        rejected = [a.get("cause", "") for a in content.get("alternatives") or [] if a.get("verdict") != "chosen"]
        if rejected:
            detail.append("ruled out: " + fmt.clip(", ".join(rejected), 110))
        for a in content.get("recommended_actions") or []:
            detail.append(f"→ {a.get('name')} {fmt.params(a.get('params'))}")
        if content.get("escalate"):
            detail.append("no action fixes this: a human must act")
    elif kind == "actions" and isinstance(content, list):
        for a in content:
            delay = f" in {a.get('delay_s'):g}s" if a.get("delay_s") else ""
            detail.append(f"→ #{a.get('id')} {a.get('name')} {fmt.params(a.get('params'))}{delay}")
    elif kind == "action_results" and isinstance(content, list):
        for a in content:
            detail.append(f"#{a.get('id')} {a.get('name')}: {a.get('state')} {fmt.clip(a.get('reason') or '', 80)}")
        tone = "good" if content and all(a.get("state") == "succeeded" for a in content) else "bad"
    elif kind == "verification" and isinstance(content, dict):
        tone = "good" if content.get("holds") else "bad"
    elif kind == "end" and isinstance(content, dict):
        tone = "good" if content.get("ticket_status") == "resolved" else (
            "bad" if content.get("ticket_status") == "escalated" else "")
    elif kind == "error":
        tone = "bad"
        if isinstance(content, dict) and content.get("problems"):
            detail.extend(fmt.clip(p, 120) for p in content["problems"])
    elif kind.startswith("tool") and content is not None:
        detail.append(fmt.clip(content if isinstance(content, str) else repr(content), 140))
    return detail, tone
