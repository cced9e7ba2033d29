"""A rate limiter node's `/api/stats` body, checked where it enters the operator.

The observer reads dozens of its fields; a node that answers with something else (a proxy's error
page as JSON, a half-written body, another service on the port) is a node that does not answer
usefully, said in one line, never a crash of the whole observation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class KeyStats(_Lenient):
    limit: int | None = None
    window_ms: int = 0
    admitted_in_window: int = 0
    local_count: int | None = None


class CacheStats(_Lenient):
    enabled: bool = False
    ttl_ms: int = 0
    entries: int = 0


class NodeStats(_Lenient):
    node_id: str | int | None = None
    address: str = ""
    pid: int | None = None
    started_ms: int = 0
    redis_ok: bool = False
    redis_error: str | None = None
    fail_mode: str = "closed"
    draining: bool = False
    cache: CacheStats = Field(default_factory=CacheStats)
    checks: dict[str, float] = Field(default_factory=dict)
    keys: dict[str, KeyStats] = Field(default_factory=dict)


class StatsBodyError(ValueError):
    pass


def read_stats(body: Any) -> dict[str, Any]:
    """The body as the observer reads it (plain dicts), or StatsBodyError saying what is wrong."""
    try:
        stats = NodeStats.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "the body"
        raise StatsBodyError(f"/api/stats answered with something that is not a node's stats: {where}: "
                             f"{first['msg']}") from None
    return stats.model_dump()
