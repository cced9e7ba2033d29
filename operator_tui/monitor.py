"""The monitor: one observation per interval, invariants checked, tickets opened and resolved.

Rules that keep it honest:
- An observation that failed (reachable=False) is checked only by the invariants that look at
  reachability; every other ticket keeps its state (unreachable is not "all clear").
- A violation opens a ticket only after it has persisted for its invariant's grace period; while
  its ticket is active, repeats only count occurrences (dedup by invariant + entity).
- A ticket resolves only after its invariant has been evaluated and found clear on `clear_after`
  consecutive observations (hysteresis), and not while an agent session holds it: the session's
  own verification closes it then.
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
from subjects.base import Invariant, Observation, Subject, Ticket, TicketStatus, Violation

log = logging.getLogger("operator_tui.monitor")

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
    tick_ms: float = 0.0
    number: int = 0


OnTick = Callable[[TickReport], Awaitable[None] | None]


class Monitor:
    def __init__(self, subject: Subject, store: Store, run_id: int, *, interval: float = 1.0,
                 clear_after: int = 3, history_size: int = 120, on_tick: OnTick | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.subject = subject
        self.store = store
        self.run_id = run_id
        self.interval = interval
        self.clear_after = max(1, clear_after)
        self.on_tick = on_tick
        self.clock = clock
        self.invariants: dict[str, Invariant] = {i.name: i for i in subject.invariants()}
        self.history: deque[Observation] = deque(maxlen=history_size)
        self.latest: Observation | None = None
        self._pending: dict[str, float] = {}  # dedup key -> monotonic time first seen
        self._clear_counts: dict[int, int] = {}  # ticket id -> consecutive clear observations
        self._ticks = 0

    def evaluate(self, obs: Observation) -> tuple[list[Violation], set[str], list[str]]:
        """Run the invariants that apply to this observation. Returns (violations, evaluated, errors)."""
        violations: list[Violation] = []
        evaluated: set[str] = set()
        errors: list[str] = []
        history = list(self.history)
        for inv in self.invariants.values():
            if not obs.reachable and not inv.on_unreachable:
                continue
            try:
                found = inv.check(obs, history)
            except Exception as e:  # a broken check must not read as "clear"
                log.exception("invariant %s failed", inv.name)
                errors.append(f"invariant {inv.name} could not be checked: {type(e).__name__}: {e}")
                continue
            evaluated.add(inv.name)
            violations.extend(found)
        return violations, evaluated, errors

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
            grace = self.invariants[v.invariant].grace_s
            if now - first >= grace:
                write.open.append(v)
            else:
                pending_left[key] = grace - (now - first)
        opening = {v.dedup_key for v in write.open}
        current_keys = {v.dedup_key for v in violations}
        for key in list(self._pending):
            invariant = key.split("@", 1)[0]
            if key in opening or (invariant in evaluated and key not in current_keys):
                del self._pending[key]

        for key, ticket in active.items():
            if ticket.invariant not in evaluated:
                continue  # nothing learned about it this tick (e.g. the subject was unreachable)
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
        )
        report.active = await self.store.active_tickets(self.run_id)
        if self.on_tick is not None:
            outcome = self.on_tick(report)
            if asyncio.iscoroutine(outcome):
                await outcome
        return report

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
