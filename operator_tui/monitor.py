"""The monitor: one observation per interval, invariants checked, tickets opened and resolved.

Rules that keep it honest:
- An observation that failed (reachable=False) is checked only by the invariants that look at
  reachability; every other ticket keeps its state (unreachable is not "all clear").
- A violation opens a ticket only after it has persisted for its invariant's grace period; while
  its ticket is active, repeats only count occurrences (dedup by invariant + entity).
- A ticket resolves only after its invariant has been evaluated and found clear on `clear_after`
  consecutive observations (hysteresis), and not while an agent session holds it: the session's
  own verification closes it then.
- A check whose data is missing says so (subjects.base.NotEvaluated): for what it could not judge
  it neither opens nor clears anything (and a ticket's run of clear observations starts over).
  Data that stays missing for `missing_grace_s` is a `metrics_missing` ticket of its own, one per
  missing source, resolved once the data is back on `clear_after` observations; not while a
  firing violation explains the gap (a node that is down has no metrics: its own ticket says so).
- Tickets of a run that died while watching the same cluster are adopted (store.adopt_orphan_tickets).
- Samples and ticket changes of one tick are written in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from operator_tui.store import Store, TickWrite
from subjects.base import (
    Invariant,
    NotEvaluated,
    Observation,
    Severity,
    Subject,
    Ticket,
    TicketStatus,
    Violation,
)

log = logging.getLogger("operator_tui.monitor")

METRICS_MISSING = "metrics_missing"
MISSING_GRACE_S = 30.0
ADOPT_EVERY = 5  # ticks between looks for tickets of runs that died

NODE_SAMPLE_METRICS = ("leader_count", "region_count", "qps", "p99_ms", "slow_score", "available_ratio")
SAMPLES_PER_TICK_BUDGET = 400


@dataclass
class TickReport:
    observation: Observation
    violations: list[Violation]  # after inhibition, before grace
    opened: list[Ticket] = field(default_factory=list)
    resolved: list[Ticket] = field(default_factory=list)
    pending: dict[str, float] = field(default_factory=dict)  # dedup key -> seconds until it opens
    active: list[Ticket] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    not_evaluated: list[tuple[str, NotEvaluated]] = field(default_factory=list)  # (invariant, what)
    tick_ms: float = 0.0
    number: int = 0


OnTick = Callable[[TickReport], Awaitable[None] | None]


class Monitor:
    def __init__(self, subject: Subject, store: Store, run_id: int, *, interval: float = 1.0,
                 clear_after: int = 3, history_size: int = 120, on_tick: OnTick | None = None,
                 clock: Callable[[], float] = time.monotonic, missing_grace_s: float = MISSING_GRACE_S,
                 cluster: str | None = None):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.subject = subject
        self.store = store
        self.run_id = run_id
        self.interval = interval
        self.clear_after = max(1, clear_after)
        self.on_tick = on_tick
        self.clock = clock
        self.cluster = cluster  # whose orphaned tickets this run may adopt
        self.invariants: dict[str, Invariant] = {i.name: i for i in subject.invariants()}
        self.invariants.setdefault(METRICS_MISSING, Invariant(
            METRICS_MISSING, "the data the checks need keeps arriving (metrics, scrapes)", Severity.warning,
            "data", lambda _obs, _h: [], missing_grace_s))
        self.history: deque[Observation] = deque(maxlen=history_size)
        self.latest: Observation | None = None
        self._pending: dict[str, float] = {}  # dedup key -> monotonic time first seen
        self._clear_counts: dict[int, int] = {}  # ticket id -> consecutive clear observations
        self.not_evaluated: list[tuple[str, NotEvaluated]] = []  # of the latest tick
        self._ticks = 0

    def evaluate(self, obs: Observation) -> tuple[list[Violation], set[str], list[str]]:
        """Run the invariants that apply to this observation. Returns (violations, evaluated, errors);
        what the checks could not judge is in `self.not_evaluated` (invariant, NotEvaluated)."""
        violations: list[Violation] = []
        evaluated: set[str] = set()
        errors: list[str] = []
        self.not_evaluated = []
        history = list(self.history)
        for inv in self.invariants.values():
            if inv.name == METRICS_MISSING or (not obs.reachable and not inv.on_unreachable):
                continue
            try:
                found = inv.evaluate(obs, history)
            except Exception as e:  # a broken check must not read as "clear"
                log.exception("invariant %s failed", inv.name)
                errors.append(f"invariant {inv.name} could not be checked: {type(e).__name__}: {e}")
                continue
            evaluated.add(inv.name)
            violations.extend(found.violations)
            self.not_evaluated.extend((inv.name, n) for n in found.not_evaluated)
        if obs.reachable:  # an unreachable system says nothing about its metrics either way
            evaluated.add(METRICS_MISSING)
            violations.extend(self._missing(obs, {(v.invariant, v.entity) for v in violations}))
        return violations, evaluated, errors

    def _missing(self, obs: Observation, firing: set[tuple[str, str]]) -> list[Violation]:
        """One metrics_missing violation per missing data source (its grace decides when it opens),
        unless a firing violation explains the gap (the node is down)."""
        by_source: dict[str, list[tuple[str, NotEvaluated]]] = {}
        for inv, n in self.not_evaluated:
            if n.explained_by is None or (n.explained_by, n.entity) not in firing:
                by_source.setdefault(n.source, []).append((inv, n))
        out = []
        for source, items in sorted(by_source.items()):
            checks = sorted({f"{inv}@{n.entity or '*'}" for inv, n in items})
            reason = items[0][1].reason
            out.append(Violation(invariant=METRICS_MISSING, entity=source, severity=Severity.warning,
                                 summary=f"{source} missing: {reason}; not evaluated: {', '.join(checks)}",
                                 evidence={"source": source, "reason": reason, "not_evaluated": checks,
                                           "observed_at": obs.at.isoformat()}))
        return out

    def judged(self, evaluated: set[str], invariant: str, entity: str) -> bool:
        """Whether this tick's checks judged this invariant for this entity (ran, and had the data)."""
        return invariant in evaluated and not any(
            inv == invariant and (n.entity is None or n.entity == entity) for inv, n in self.not_evaluated)

    def inhibit(self, violations: list[Violation]) -> list[Violation]:
        firing = {(v.invariant, v.entity) for v in violations}
        firing_anywhere = {v.invariant for v in violations}
        kept = []
        for v in violations:
            inv = self.invariants.get(v.invariant)
            if inv and (any((other, v.entity) in firing for other in inv.inhibited_by)
                        or any(other in firing_anywhere for other in inv.inhibited_by_any)):
                continue
            kept.append(v)
        return kept

    def _samples(self, obs: Observation) -> list[tuple[str, str, float]]:
        out: list[tuple[str, str, float]] = []
        w = obs.workload
        for name, value in (("qps", w.qps), ("error_rate", w.error_rate), ("p99_ms", w.p99_ms)):
            if value is not None:
                out.append(("cluster", name, float(value)))
        per_tick = max(1, len(obs.nodes) * len(NODE_SAMPLE_METRICS) // SAMPLES_PER_TICK_BUDGET + 1)
        if self._ticks % per_tick == 0:  # large clusters: node series at a lower rate, same budget
            for n in obs.nodes:
                for name in NODE_SAMPLE_METRICS:
                    if name in n.metrics:
                        out.append((n.entity, name, float(n.metrics[name])))
        return out

    async def observe(self) -> Observation:
        try:
            return await self.subject.observe()
        except Exception as e:  # the contract says observe() reports failure; be safe if it raises
            log.exception("observe() raised")
            return Observation(subject=self.subject.name, reachable=False,
                               error=f"observation failed: {type(e).__name__}: {e}", monotonic=self.clock())

    async def tick(self) -> TickReport:
        t0 = time.monotonic()
        if self._ticks % ADOPT_EVERY == 0:
            await self.adopt_orphans()
        obs = await self.observe()
        now = self.clock()
        raw, evaluated, errors = self.evaluate(obs)
        violations = self.inhibit(raw)
        violated_now = {v.dedup_key for v in raw}  # inhibited ones still count as "not clear"
        active = {t.dedup_key: t for t in await self.store.active_tickets(self.run_id)}

        write = TickWrite(run_id=self.run_id, samples=self._samples(obs))
        pending_left: dict[str, float] = {}
        for v in violations:
            key = v.dedup_key
            if key in active:
                write.seen.append((active[key].id, v))
                continue
            first = self._pending.setdefault(key, now)
            grace = self.invariants[v.invariant].grace_s if v.grace_s is None else v.grace_s
            if now - first >= grace:
                write.open.append(v)
            else:
                pending_left[key] = grace - (now - first)
        opening = {v.dedup_key for v in write.open}
        current_keys = {v.dedup_key for v in violations}
        for key in list(self._pending):
            invariant, _, entity = key.partition("@")
            if key in opening or (self.judged(evaluated, invariant, entity) and key not in current_keys):
                del self._pending[key]

        for key, ticket in active.items():
            if ticket.invariant not in evaluated:
                continue  # nothing learned about it this tick (e.g. the subject was unreachable)
            if not self.judged(evaluated, ticket.invariant, ticket.entity):
                self._clear_counts[ticket.id] = 0  # its data is missing: a gap, not a clear reading
                continue
            if key in violated_now:
                self._clear_counts[ticket.id] = 0
                continue
            count = self._clear_counts.get(ticket.id, 0) + 1
            self._clear_counts[ticket.id] = count
            # An agent session holds it: its verification closes it (with its evidence); the
            # monitor steps in once the session ends without doing so.
            if count >= self.clear_after and ticket.status != TicketStatus.investigating:
                write.resolve.append((ticket.id, {
                    "by": "monitor",
                    "reason": f"{ticket.invariant} held on {count} consecutive observations",
                    "clear_observations": count,
                    "observed_at": obs.at.isoformat(),
                }))

        result = await self.store.apply_tick(write)
        for t in result.resolved:
            self._clear_counts.pop(t.id, None)
        self._ticks += 1
        if self._ticks % 500 == 0:
            await self.store.prune_samples(self.run_id)
        self.latest = obs
        self.history.append(obs)
        report = TickReport(
            observation=obs, violations=violations, opened=result.opened, resolved=result.resolved,
            pending=pending_left, errors=errors, tick_ms=(time.monotonic() - t0) * 1000, number=self._ticks,
            not_evaluated=list(self.not_evaluated),
        )
        report.active = await self.store.active_tickets(self.run_id)
        if self.on_tick is not None:
            outcome = self.on_tick(report)
            if asyncio.iscoroutine(outcome):
                await outcome
        return report

    async def adopt_orphans(self) -> None:
        """Carry on with the tickets of runs that died while watching the same cluster."""
        await self.store.reap_dead_runs()
        for ticket_id, outcome in await self.store.adopt_orphan_tickets(self.run_id, self.subject.name, self.cluster):
            log.info("ticket #%d of a run that died: %s by run %d", ticket_id, outcome, self.run_id)

    async def run(self, stop: asyncio.Event | None = None, duration: float | None = None) -> None:
        """Tick at a fixed rate until `stop` is set, `duration` passes, or the task is cancelled."""
        stop = stop or asyncio.Event()
        start = time.monotonic()
        next_at = start
        while not stop.is_set():
            if duration is not None and time.monotonic() - start >= duration:
                return
            await self.tick()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # overran: skip the missed slots instead of bursting to catch up
                missed = int(-delay // self.interval) + 1
                next_at += missed * self.interval
                delay = next_at - time.monotonic()
            if duration is not None:
                delay = min(delay, max(0.0, start + duration - time.monotonic()))
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, delay))
            except TimeoutError:
                pass


def describe_tick(report: TickReport) -> list[str]:
    """One concise line per event, for logs."""
    lines = []
    for t in report.opened:
        lines.append(f"ticket #{t.id} opened: {t.invariant} on {t.entity} [{t.severity}] {t.summary}")
    for t in report.resolved:
        lines.append(f"ticket #{t.id} resolved: {t.invariant} on {t.entity}")
    lines.extend(report.errors)
    return lines
