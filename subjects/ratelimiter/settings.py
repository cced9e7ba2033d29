"""The `[ratelimiter]` settings section and how the core builds the rate limiter subject from it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from subjects.plugin import SubjectContext


class RateLimiterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: list[str] = Field(default_factory=list)  # node URLs; empty: read them from the local lab
    redis: str | None = None
    lab_dir: str | None = None  # a lab's run folder (state.json); empty: the lab folder of --lab-dir
    probe_timeout: float = Field(1.0, gt=0)
    slo_p99_ms: float = Field(100.0, gt=0)
    graces: dict[str, float] = Field(default_factory=dict)


async def build(section: RateLimiterSettings, ctx: SubjectContext) -> Any:
    from subjects.ratelimiter.subject import build as build_subject

    return await build_subject({
        "nodes": section.nodes,
        "redis": section.redis,
        "lab_dir": section.lab_dir or str(ctx.lab_dir),
        "probe_timeout": section.probe_timeout,
        "thresholds": {"slo_p99_ms": section.slo_p99_ms, "graces": section.graces},
    })
