"""The TiKV subject: observation, invariants, runbooks and actions over PD's HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from subjects.base import ActionDef, Invariant, Observation, Runbook
from subjects.tikv.invariants import Thresholds, build_invariants
from subjects.tikv.observe import TiKVObserver
from subjects.tikv.pd_client import PDClient


class TiKVOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pd_url: str
    prometheus_url: str | None = None
    prometheus_window: str = "30s"
    probe_timeout: float = 1.0
    thresholds: Thresholds = Field(default_factory=Thresholds)
    host_agent: str | None = None  # a host agent that restarts or stops stores: offers restart_node/stop_node


class TiKVSubject:
    name = "tikv"

    def __init__(self, options: TiKVOptions, pd: PDClient, host_agent: PDClient | None):
        self.options = options
        self.pd = pd
        self.host_agent = host_agent
        self.display = f"TiKV via PD {options.pd_url}" + (" (with a host agent)" if host_agent else "")
        self.observer = TiKVObserver(pd, prometheus_url=options.prometheus_url,
                                     prometheus_window=options.prometheus_window,
                                     probe_timeout=options.probe_timeout,
                                     slow_score_threshold=options.thresholds.slow_score)
        self._invariants = build_invariants(options.thresholds)

    async def observe(self) -> Observation:
        return await self.observer.observe()

    def invariants(self) -> list[Invariant]:
        return list(self._invariants)

    def runbooks(self) -> dict[str, Runbook]:
        from subjects.tikv.runbooks import build_runbooks

        return build_runbooks(self.options.thresholds)

    def actions(self) -> list[ActionDef]:
        from subjects.tikv.actions import build_actions

        return build_actions(self.pd, host_agent=self.host_agent)

    async def aclose(self) -> None:
        await self.observer.aclose()
        await self.pd.aclose()
        if self.host_agent is not None:
            await self.host_agent.aclose()


async def build(options: dict[str, Any]) -> TiKVSubject:
    opts = TiKVOptions.model_validate(options)
    pd = PDClient(opts.pd_url, timeout=max(2.0, opts.probe_timeout * 2))
    host_agent = PDClient(opts.host_agent, timeout=5.0) if opts.host_agent else None
    return TiKVSubject(opts, pd, host_agent)
