"""Shapes at the node's boundaries: its start-up settings and the bodies clients send."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

from subjects.ratelimiter.service.schema import key_problem

MAX_LIMIT = 1_000_000
MAX_WINDOW_MS = 86_400_000  # a day: longer windows make the log (and its memory) unbounded in practice
MAX_CACHE_TTL_MS = 3_600_000

FailMode = Literal["closed", "open"]
NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeSettings(Strict):
    node_id: str = Field(pattern=NODE_ID_PATTERN)
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    redis_url: str
    advertise: str | None = None  # host:port others should use; default host:port
    source_address: str | None = None  # local address of its connections to Redis; default: the kernel's choice
    fail_mode: FailMode = "closed"
    cache_ttl_ms: int = Field(default=0, ge=0, le=MAX_CACHE_TTL_MS)
    default_limit: int = Field(default=100, gt=0, le=MAX_LIMIT)
    default_window_ms: int = Field(default=1000, gt=0, le=MAX_WINDOW_MS)
    heartbeat_ms: int = Field(default=1000, ge=50, le=60_000)
    node_ttl_ms: int = Field(default=3000, ge=100, le=600_000)
    redis_timeout_ms: int = Field(default=500, ge=10, le=30_000)
    max_tracked_keys: int = Field(default=1000, ge=1, le=100_000)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("node_ttl_ms")
    @classmethod
    def _ttl_above_heartbeat(cls, v: int, info) -> int:
        beat = info.data.get("heartbeat_ms")
        if beat is not None and v <= beat:
            raise ValueError(
                "node_ttl_ms must be longer than heartbeat_ms, or a live node would flap to down"
            )
        return v


class CheckRequest(Strict):
    key: StrictStr
    limit: StrictInt | None = Field(default=None, gt=0, le=MAX_LIMIT)
    window_ms: StrictInt | None = Field(default=None, gt=0, le=MAX_WINDOW_MS)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        problem = key_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class LimitBody(Strict):
    limit: StrictInt = Field(gt=0, le=MAX_LIMIT)
    window_ms: StrictInt | None = Field(default=None, gt=0, le=MAX_WINDOW_MS)


class ConfigPatch(Strict):
    fail_mode: FailMode | None = None
    cache_ttl_ms: StrictInt | None = Field(default=None, ge=0, le=MAX_CACHE_TTL_MS)


def describe(error: ValidationError) -> dict:
    """The first problem as `{"error", "field"}`, plus every problem under `details`."""
    details = []
    for e in error.errors(include_url=False):
        field = ".".join(str(p) for p in e["loc"]) or None
        message = e["msg"]
        if e["type"] == "missing":
            message = "is required"
        elif e["type"] == "extra_forbidden":
            message = "is not a known field"
        elif e["type"] == "value_error" and "error" in e.get("ctx", {}):
            message = str(e["ctx"]["error"])
        details.append({"field": field, "error": message})
    first = details[0] if details else {"field": None, "error": "invalid request"}
    text = f"{first['field']}: {first['error']}" if first["field"] else first["error"]
    return {"error": text, "field": first["field"], "details": details}
