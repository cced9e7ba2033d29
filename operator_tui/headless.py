"""`operator-tui run --headless`: the monitor (and agent) with no screen, for daemons and CI."""

from __future__ import annotations

import asyncio
import logging
import signal

from operator_tui.agent.loop import AgentEvent
from operator_tui.config import CoreSettings
from operator_tui.loop import OperatorLoop
from operator_tui.monitor import TickReport, describe_tick
from operator_tui.runtime import Runtime
from operator_tui.store.models import ActionRecord

log = logging.getLogger("operator_tui.headless")


class TickLogger:
    """One concise line per event; reachability changes logged once, not every tick."""

    def __init__(self) -> None:
        self.reachable: bool | None = None

    def __call__(self, report: TickReport) -> None:
        obs = report.observation
        if obs.reachable != self.reachable:
            if obs.reachable:
                log.info("%s observed: %d nodes in %.0f ms", obs.subject, len(obs.nodes), obs.duration_ms)
            else:
                log.warning("%s unreachable: %s", obs.subject, obs.error)
            self.reachable = obs.reachable
        for line in describe_tick(report):
            log.info("%s", line)


def log_agent_event(event: AgentEvent) -> None:
    if event.kind in ("diagnosis", "verification", "end", "error"):
        log.info("ticket #%d agent %s: %s", event.ticket_id, event.kind, event.title)


def log_action(action: ActionRecord) -> None:
    log.info("action #%d %s %s: %s", action.id, action.name, action.state, action.reason)


async def run_headless(settings: CoreSettings, duration: float | None, attach_run: int | None = None) -> int:
    runtime = await Runtime.open(settings, "headless", attach_run=attach_run)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen: list[int] = []

    def on_signal(signum: int) -> None:
        signals_seen.append(signum)
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    status = "completed"
    try:
        log.info("run %d: watching %s (db %s, interval %gs, agent %s)", runtime.run_id, runtime.subject.display,
                 settings.db, settings.interval, settings.agent)
        loop_ = OperatorLoop.build(runtime, on_tick=TickLogger(), on_agent_event=log_agent_event,
                                   on_action=log_action)
        await loop_.run(stop, duration)
        if signals_seen:
            status = "interrupted"
    except BaseException:
        status = "crashed"
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runtime.close(status)
        log.info("run %d %s", runtime.run_id, status)
    return 0
