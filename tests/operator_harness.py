"""The whole loop in process for end-to-end tests: monitor, engine and agent (embedded
diagnoser) over one subject and store, plus polling helpers that say what they saw on failure."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from operator_tui.actions.engine import ActionEngine
from operator_tui.agent.embedded import EmbeddedDiagnoser
from operator_tui.agent.loop import Agent, AgentEvent
from operator_tui.config import ActionSettings, AgentSettings
from operator_tui.monitor import Monitor
from operator_tui.store import Store
from subjects.base import Subject


class Running:
    def __init__(self, store: Store, monitor: Monitor, engine: ActionEngine, agent: Agent, subject: Subject,
                 events: list[AgentEvent]):
        self.store, self.monitor, self.engine, self.agent = store, monitor, engine, agent
        self.subject, self.events = subject, events

    async def until(self, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await predicate()
            if value:
                return value
            await asyncio.sleep(0.2)
        tickets = [(t.id, t.invariant, t.entity, t.status, t.summary) for t in await self.store.list_tickets()]
        actions = [(a.id, a.name, a.params, a.state, a.reason) for a in await self.store.list_actions()]
        raise AssertionError(f"{what} not reached in {timeout} s; tickets {tickets}; actions {actions}")

    async def ticket(self, invariant: str, status: str | None = None, entity: str | None = None,
                     timeout: float = 60.0) -> Any:
        async def find() -> Any:
            for t in await self.store.list_tickets():
                if t.invariant == invariant and (status is None or t.status == status) \
                        and (entity is None or t.entity == entity):
                    return t
            return None
        return await self.until(find, timeout, f"ticket {invariant} {entity or ''} {status or ''}")


@contextlib.asynccontextmanager
async def run_operator(subject: Subject, store: Store, *, interval: float = 0.5,
                       agent_settings: AgentSettings | None = None,
                       runbook_settings: dict[str, Any] | None = None) -> AsyncIterator[Running]:
    """Run the loop until the block ends; the subject stays the caller's to close."""
    run_id = await store.start_run("test", subject.name)
    monitor = Monitor(subject, store, run_id, interval=interval, clear_after=3)
    engine = ActionEngine(store, subject, run_id, ActionSettings(), poll_interval=0.05)
    events: list[AgentEvent] = []
    agent = Agent(store, subject, engine, run_id, EmbeddedDiagnoser(),
                  agent_settings or AgentSettings(verify_delay_s=1.5, max_attempts=3),
                  history=lambda: list(monitor.history), on_event=events.append, poll_interval=0.2)
    agent.runbook_settings.update(runbook_settings or {})
    stop = asyncio.Event()
    await engine.start()
    tasks = [asyncio.create_task(monitor.run(stop)), asyncio.create_task(agent.run(stop))]
    try:
        yield Running(store, monitor, engine, agent, subject, events)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await engine.stop()
