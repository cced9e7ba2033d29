"""Wiring shared by the console, headless runs and CLI commands: the store, the subject (and the
embedded simulator when no endpoint is given), the run, the policy."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from operator_tui.config import Settings
from operator_tui.errors import UserError
from operator_tui.policy import human_actor, set_approval, set_mode
from operator_tui.store import Store
from subjects import registry
from subjects.base import Subject

log = logging.getLogger("operator_tui.runtime")


def subject_options(settings: Settings, pd_url: str | None = None) -> dict[str, Any]:
    if settings.subject == "tikv":
        t = settings.tikv
        return {
            "pd_url": pd_url or settings.pd,
            "prometheus_url": settings.prometheus,
            "prometheus_window": t.prometheus_window,
            "probe_timeout": t.probe_timeout,
            "thresholds": {"slo_p99_ms": t.slo_p99_ms, "graces": t.graces},
        }
    r = settings.ratelimiter
    return {
        "nodes": r.nodes,
        "redis": r.redis,
        "lab_dir": str(settings.lab_folder("ratelimiter")),
        "probe_timeout": r.probe_timeout,
        "thresholds": {"slo_p99_ms": r.slo_p99_ms, "graces": r.graces},
    }


def start_embedded_sim(settings: Settings) -> Any:
    from subjects.tikv.sim import SimConfig, start_sim_thread

    s = settings.sim
    return start_sim_thread(SimConfig(host="127.0.0.1", port=0, stores=s.stores, regions=s.regions,
                                      replicas=s.replicas, time_scale=s.time_scale, seed=s.seed))


@dataclass
class Runtime:
    settings: Settings
    store: Store
    subject: Subject
    run_id: int
    sim: Any = None  # the embedded simulator (a SimThread), when we started one
    closers: list[Any] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings, kind: str, *, with_subject: bool = True) -> Runtime:
        store = await Store.open(settings.db)
        sim = None
        try:
            pd_url = settings.pd
            if with_subject and settings.subject == "tikv" and not pd_url:
                sim = await asyncio.to_thread(start_embedded_sim, settings)
                pd_url = sim.pd_url
                log.info("embedded simulator listening on %s", pd_url)
                from subjects.tikv.lab import advertise_embedded

                if not await asyncio.to_thread(advertise_embedded, settings.lab_folder("tikv"), pd_url):
                    log.info("a TiKV lab already owns %s: the embedded simulator is not advertised there",
                             settings.lab_folder("tikv"))
            subject = await _build_subject(settings, pd_url) if with_subject else None
            run_id = await store.start_run(kind, settings.subject, _run_config(settings, pd_url))
            actor = human_actor()
            if settings.mode is not None:
                await set_mode(store, settings.mode, actor, run_id)
            if settings.approval is not None:
                await set_approval(store, settings.approval, actor, run_id)
            return cls(settings, store, subject, run_id, sim)
        except BaseException:
            if sim is not None:
                from subjects.tikv.lab import withdraw_embedded

                await asyncio.to_thread(withdraw_embedded, settings.lab_folder("tikv"))
                await asyncio.to_thread(sim.stop)
            await store.close()
            raise

    async def close(self, status: str = "completed") -> None:
        try:
            await self.store.end_run(self.run_id, status)
        finally:
            try:
                if self.subject is not None:
                    await self.subject.aclose()
            finally:
                if self.sim is not None:
                    from subjects.tikv.lab import withdraw_embedded

                    await asyncio.to_thread(withdraw_embedded, self.settings.lab_folder("tikv"))
                    await asyncio.to_thread(self.sim.stop)
                await self.store.close()


async def _build_subject(settings: Settings, pd_url: str | None) -> Subject:
    try:
        return await registry.build_subject(settings.subject, subject_options(settings, pd_url))
    except (ValueError, OSError) as e:
        raise UserError(f"cannot set up the {settings.subject} subject: {e}") from e


def _run_config(settings: Settings, pd_url: str | None) -> dict[str, Any]:
    return {"subject": settings.subject, "pd": pd_url, "prometheus": settings.prometheus,
            "agent": settings.agent, "interval": settings.interval}
