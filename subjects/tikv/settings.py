"""The `[tikv]` settings section and how the core builds the TiKV subject from it."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from subjects.plugin import PluginError, SubjectContext
from subjects.tikv.tls import TLSOptions


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimSettings(Strict):
    """The embedded simulator started when no PD endpoint is given (the console, or --sim)."""

    stores: int = Field(5, ge=1)
    regions: int = Field(200, ge=1)
    replicas: int = Field(3, ge=1)
    time_scale: float = Field(10.0, gt=0)
    seed: int = 0


class TiKVSettings(Strict):
    pd: str | None = None  # PD endpoint; None: the embedded simulator (console, --sim)
    prometheus: str | None = None  # read metrics through this Prometheus server instead of scraping
    host_agent: str | None = None  # restarts or stops a store's process: offers restart_node and stop_node
    sim_admin: str | None = None  # a simulator's admin API: where `chaos` sends faults (never the operator)
    probe_timeout: float = Field(1.0, gt=0)
    prometheus_window: str = "30s"
    slo_p99_ms: float = Field(50.0, gt=0)
    graces: dict[str, float] = Field(default_factory=dict)
    sim: SimSettings = Field(default_factory=SimSettings)
    # HTTPS to PD, the status ports and Prometheus: [tikv.tls] ca, cert, key (--tls-ca/-cert/-key)
    tls: TLSOptions | None = None


def subject_options(section: TiKVSettings) -> dict[str, Any]:
    return {
        "pd_url": section.pd,
        "prometheus_url": section.prometheus,
        "prometheus_window": section.prometheus_window,
        "probe_timeout": section.probe_timeout,
        "host_agent": section.host_agent,
        "simulated": section.sim_admin is not None,
        "thresholds": {"slo_p99_ms": section.slo_p99_ms, "graces": section.graces},
        "tls": section.tls.model_dump() if section.tls is not None else None,
    }


async def build(section: TiKVSettings, ctx: SubjectContext) -> Any:
    from subjects.tikv.subject import build as build_subject

    if not section.pd:
        raise PluginError(Embedded().missing(section) or "no PD endpoint")
    return await build_subject(subject_options(section))


class EmbeddedSim:
    """A simulator running in this process, advertised in the lab folder so `chaos` finds it."""

    def __init__(self, sim: Any, section: TiKVSettings, lab_dir: Any):
        self.sim = sim
        self.admin_url = sim.admin_url
        self.section = section
        self.endpoint = sim.pd_url
        self.lab_dir = lab_dir

    async def stop(self) -> None:
        from subjects.tikv.lab import withdraw_embedded

        await asyncio.to_thread(withdraw_embedded, self.lab_dir)
        await asyncio.to_thread(self.sim.stop)


class Embedded:
    def missing(self, section: TiKVSettings) -> str | None:
        if section.pd:
            return None
        return ("watching or acting on a TiKV cluster needs its PD endpoint: pass --pd URL "
                "(or --sim for the embedded simulator)")

    async def start(self, section: TiKVSettings, ctx: SubjectContext) -> EmbeddedSim:
        import logging

        from subjects.tikv.lab import advertise_embedded
        from subjects.tikv.sim import SimConfig, start_sim_thread

        s = section.sim
        sim = await asyncio.to_thread(start_sim_thread, SimConfig(
            host="127.0.0.1", port=0, stores=s.stores, regions=s.regions, replicas=s.replicas,
            time_scale=s.time_scale, seed=s.seed))
        if not await asyncio.to_thread(advertise_embedded, ctx.lab_dir, sim.pd_url, sim.admin_url,
                                       sim.host_agent_url):
            logging.getLogger("subjects.tikv").info(
                "a TiKV lab already owns %s: the embedded simulator is not advertised there", ctx.lab_dir)
        return EmbeddedSim(sim, section.model_copy(update={"pd": sim.pd_url, "host_agent": sim.host_agent_url,
                                                           "sim_admin": sim.admin_url}), ctx.lab_dir)
