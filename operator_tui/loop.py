"""The operator's loop assembled from one runtime: monitor, action engine and agent.

Headless runs, the console and eval trials all build it here, so they behave the same; they only
differ in who listens to the events (a log, widgets, a scorer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from operator_tui.actions.engine import ActionEngine
from operator_tui.agent.loop import Agent, AgentEvent
from operator_tui.monitor import Monitor, OnTick
from operator_tui.runtime import Runtime
from operator_tui.store.models import ActionRecord


@dataclass
class OperatorLoop:
    runtime: Runtime
    monitor: Monitor
    engine: ActionEngine
    agent: Agent | None

    @classmethod
    def build(cls, runtime: Runtime, *, on_tick: OnTick | None = None,
              on_agent_event: Callable[[AgentEvent], None] | None = None,
              on_action: Callable[[ActionRecord], None] | None = None) -> OperatorLoop:
        settings = runtime.settings
        monitor = Monitor(runtime.subject, runtime.store, runtime.run_id, interval=settings.interval,
                          clear_after=settings.clear_after, on_tick=on_tick,
                          missing_grace_s=settings.missing_data_grace_s, cluster=runtime.cluster)
        engine = ActionEngine(runtime.store, runtime.subject, runtime.run_id, settings.actions, on_change=on_action,
                              cluster=runtime.cluster, run_scoped=runtime.attached)
        agent = None
        if settings.agent != "none":
            from operator_tui.agent.factory import make_diagnoser

            diagnoser = make_diagnoser(settings.agent, settings.agent_options, subject=runtime.subject,
                                       store=runtime.store, engine=engine, run_id=runtime.run_id)
            agent = Agent(runtime.store, runtime.subject, engine, runtime.run_id, diagnoser, settings.agent_options,
                          history=lambda: list(monitor.history), on_event=on_agent_event,
                          clear_after=settings.clear_after, verify_interval_s=settings.interval,
                          claim_scope=f"run:{runtime.run_id}" if runtime.attached else None,
                          memory="run" if runtime.attached else "all")
        return cls(runtime, monitor, engine, agent)

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        """Until `stop` is set or `duration` passes; then the agent and engine wind down cleanly."""
        await self.engine.start()
        agent_stop = asyncio.Event()
        agent_task = asyncio.create_task(self.agent.run(agent_stop)) if self.agent else None
        try:
            await self.monitor.run(stop, duration)
        finally:
            agent_stop.set()
            if agent_task is not None:
                await agent_task
            await self.engine.stop()
