"""The TiKV subject: observation, invariants, runbooks and actions over PD's HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from subjects.base import ActionDef, ClusterIdentity, Invariant, Observation, Runbook
from subjects.tikv.invariants import Thresholds, build_invariants
from subjects.tikv.observe import TiKVObserver
from subjects.tikv.pd_client import PDClient, PDError, PDUnreachable
from subjects.tikv.tls import TLSOptions, client_context


class TiKVOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pd_url: str
    prometheus_url: str | None = None
    prometheus_window: str = "30s"
    probe_timeout: float = 1.0
    thresholds: Thresholds = Field(default_factory=Thresholds)
    host_agent: str | None = None  # a host agent that restarts or stops stores: offers restart_node/stop_node
    # Told that the cluster is a simulator (the embedded one, or one whose admin API the settings
    # name): PD's port itself never says so, as a real PD would not.
    simulated: bool = False
    tls: TLSOptions | None = None


class TiKVSubject:
    name = "tikv"

    def __init__(self, options: TiKVOptions, pd: PDClient, host_agent: PDClient | None, ssl_context: Any = None):
        self.options = options
        self.pd = pd
        self.host_agent = host_agent
        self.display = f"TiKV via PD {options.pd_url}" + (" (with a host agent)" if host_agent else "")
        self.observer = TiKVObserver(pd, prometheus_url=options.prometheus_url,
                                     prometheus_window=options.prometheus_window,
                                     probe_timeout=options.probe_timeout,
                                     slow_score_threshold=options.thresholds.slow_score, ssl_context=ssl_context)
        self._invariants = build_invariants(options.thresholds)
        self._identity: ClusterIdentity | None = None

    async def cluster_identity(self) -> ClusterIdentity | None:
        """PD's cluster id (GET /cluster). A simulator's id comes from its seed, so its URL is part
        of its identity: two simulators are never the same cluster."""
        if self._identity is None:
            try:
                body = await self.pd.get_json("cluster")
            except (PDError, PDUnreachable):
                return None
            cluster_id = body.get("id") if isinstance(body, dict) else None
            if cluster_id is None:
                return None
            if self.options.simulated:
                self._identity = ClusterIdentity(id=f"tikv-sim:{self.options.pd_url}:{cluster_id}", real=False,
                                                 detail=f"simulated TiKV at {self.options.pd_url}")
            else:
                self._identity = ClusterIdentity(id=f"pd-cluster:{cluster_id}", real=True,
                                                 detail=f"TiKV via PD {self.options.pd_url}, cluster id {cluster_id}")
        return self._identity

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
    context = client_context(opts.tls)
    pd = PDClient(opts.pd_url, timeout=max(2.0, opts.probe_timeout * 2), ssl_context=context)
    host_agent = PDClient(opts.host_agent, timeout=5.0, ssl_context=context) if opts.host_agent else None
    return TiKVSubject(opts, pd, host_agent, context)
