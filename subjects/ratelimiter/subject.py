"""The rate limiter subject: N stateless nodes sharing one Redis, observed node by node and in Redis.

Options: the node URLs and/or a lab folder to read them from (``lab up ratelimiter`` writes it),
and the Redis URL (from the lab when not given). With a lab, the nodes' processes can also be
restarted (``restart_node``); without one, that action is not offered.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from subjects.base import ActionDef, ClusterIdentity, Invariant, Observation, Runbook
from subjects.ratelimiter.invariants import Thresholds, build_invariants
from subjects.ratelimiter.observe import RateLimiterObserver


class RateLimiterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: list[str] = Field(default_factory=list, description="node URLs; more are found in Redis's registry")
    redis: str | None = Field(None, description="Redis URL; default: the lab's")
    lab_dir: str | None = Field(None, description="a lab's run folder (state.json): node URLs, Redis, restarts")
    probe_timeout: float = Field(1.0, gt=0, le=30)
    max_keys: int = Field(200, ge=1, le=10_000)  # most active keys whose counters are compared each tick
    latency_window_s: float = Field(5.0, gt=0, le=300)
    thresholds: Thresholds = Field(default_factory=Thresholds)


class RateLimiterSubject:
    name = "ratelimiter"

    def __init__(self, options: RateLimiterOptions, lab: Any = None):
        self.options = options
        self.lab = lab
        redis_url = options.redis or (lab.redis_url() if lab is not None else None)
        self.observer = RateLimiterObserver(nodes=options.nodes, redis_url=options.redis, lab=lab,
                                            probe_timeout=options.probe_timeout, max_keys=options.max_keys,
                                            latency_window_s=options.latency_window_s)
        count = len(lab.node_ids()) if lab is not None else len(options.nodes)
        where = f"lab {lab.run_dir}" if lab is not None else ", ".join(options.nodes) or "the registry"
        self.display = f"rate limiter: {count} node{'s' if count != 1 else ''} ({where}), Redis {redis_url}"
        self._invariants = build_invariants(options.thresholds)
        self._http = httpx.AsyncClient()

    async def observe(self) -> Observation:
        return await self.observer.observe()

    async def cluster_identity(self) -> ClusterIdentity | None:
        """A rate limiter is its shared Redis: the nodes that count in one Redis are one cluster."""
        url = self.observer.current_redis_url()
        if not url:
            return None
        parts = urlsplit(url)
        where = f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
        if self.lab is not None:
            return ClusterIdentity(id=f"ratelimiter-lab:{self.lab.run_dir}:{where}", real=False,
                                   detail=f"local rate limiter lab {self.lab.run_dir} (Redis {where})")
        return ClusterIdentity(id=f"ratelimiter:redis://{where}", detail=f"rate limiter sharing Redis {where}")

    def invariants(self) -> list[Invariant]:
        return list(self._invariants)

    def runbooks(self) -> dict[str, Runbook]:
        from subjects.ratelimiter.runbooks import build_runbooks

        return build_runbooks(self.options.thresholds)

    def actions(self) -> list[ActionDef]:
        from subjects.ratelimiter.actions import Catalogue, NodeAPI

        api = NodeAPI(self.observer.node_url, self._http)
        return Catalogue(api, latest=lambda: self.observer.latest, lab=self.lab, quiet=self.observer.quiet).build()

    async def aclose(self) -> None:
        await self.observer.aclose()
        await self._http.aclose()


def _load_lab(lab_dir: str | None) -> Any:
    if not lab_dir:
        return None
    from subjects.ratelimiter.lab import LabError, RateLimiterLab

    try:
        lab = RateLimiterLab.load(lab_dir)
    except LabError:
        return None
    return lab if lab.is_up() else None


async def build(options: dict[str, Any]) -> RateLimiterSubject:
    opts = RateLimiterOptions.model_validate(options)
    lab = _load_lab(opts.lab_dir)
    if lab is None and not opts.nodes and not opts.redis:
        where = f" (no lab is up in {opts.lab_dir})" if opts.lab_dir else ""
        raise ValueError("no rate limiter to watch: give its node URLs and/or Redis URL, or start the local lab "
                         f"with `operator-tui lab up ratelimiter`{where}")
    if lab is None and not opts.redis:
        # Without Redis the counters cannot be compared; the nodes know where it is only by their
        # own configuration, so it has to be given.
        raise ValueError("the rate limiter's Redis URL is needed (the nodes' counters live there)")
    return RateLimiterSubject(opts, lab)
