"""Settings: defaults < config file (TOML) < environment (OPERATOR_TUI_*) < command-line flags.

Every top-level key has an environment variable OPERATOR_TUI_<KEY>; nested keys use a double
underscore (OPERATOR_TUI_AGENT_OPTIONS__VERIFY_DELAY_S=2). The config file is --config, else
$OPERATOR_TUI_CONFIG, else $XDG_CONFIG_HOME/operator-tui/config.toml when it exists.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from operator_tui.errors import UserError
from operator_tui.paths import default_db, default_lab_dir

ENV_PREFIX = "OPERATOR_TUI_"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimSettings(Strict):
    """The embedded simulator started when no PD endpoint is given."""

    stores: int = Field(5, ge=1)
    regions: int = Field(200, ge=1)
    replicas: int = Field(3, ge=1)
    time_scale: float = Field(10.0, gt=0)
    seed: int = 0


class TiKVSettings(Strict):
    probe_timeout: float = Field(1.0, gt=0)
    prometheus_window: str = "30s"
    slo_p99_ms: float = Field(50.0, gt=0)
    graces: dict[str, float] = Field(default_factory=dict)


class RateLimiterSettings(Strict):
    nodes: list[str] = Field(default_factory=list)  # node URLs; empty: read them from the local lab
    redis: str | None = None
    probe_timeout: float = Field(1.0, gt=0)
    slo_p99_ms: float = Field(100.0, gt=0)
    graces: dict[str, float] = Field(default_factory=dict)


class ActionSettings(Strict):
    rate_limit_per_minute: int = Field(20, ge=1)
    max_retries: int = Field(3, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    approval_timeout_s: float = Field(900.0, gt=0)
    timeout_s: float = Field(120.0, gt=0)


class ClaudeSettings(Strict):
    model: str = "claude-sonnet-5-5"  # claude-sonnet-4-5 reaches end of life on 2026-11-30
    max_turns: int = Field(12, ge=1)
    max_tokens: int = Field(60_000, ge=1000)  # input + output over a session
    max_seconds: float = Field(120.0, gt=0)
    system_prompt: str | None = None
    tools: list[str] | None = None  # None: all tools
    enable_shell: bool = False


class AgentSettings(Strict):
    verify_delay_s: float = Field(5.0, ge=0)
    max_attempts: int = Field(3, ge=1)
    max_ticket_seconds: float = Field(900.0, gt=0)
    allow_destructive: bool = False
    claude: ClaudeSettings = Field(default_factory=ClaudeSettings)


class Settings(Strict):
    db: Path = Field(default_factory=default_db)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    subject: Literal["tikv", "ratelimiter"] = "tikv"
    pd: str | None = None
    prometheus: str | None = None
    lab_dir: Path | None = None
    agent: Literal["embedded", "claude", "none"] = "embedded"
    mode: Literal["observe", "propose", "execute"] | None = None  # None: keep what the store holds
    approval: Literal["off", "risky", "all"] | None = None
    interval: float = Field(1.0, gt=0)
    clear_after: int = Field(3, ge=1)
    sim: SimSettings = Field(default_factory=SimSettings)
    tikv: TiKVSettings = Field(default_factory=TiKVSettings)
    ratelimiter: RateLimiterSettings = Field(default_factory=RateLimiterSettings)
    actions: ActionSettings = Field(default_factory=ActionSettings)
    agent_options: AgentSettings = Field(default_factory=AgentSettings)

    def lab_folder(self, subject: str | None = None) -> Path:
        name = subject or self.subject
        return (self.lab_dir / name) if self.lab_dir else default_lab_dir(name)


FLAG_KEYS = ("db", "log_level", "subject", "pd", "prometheus", "lab_dir", "agent", "mode", "approval", "interval")


def _config_path(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        return path
    env = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if env:
        return _config_path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    default = base / "operator-tui" / "config.toml"
    return default if default.is_file() else None


def _from_env() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in os.environ.items():
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(e: ValidationError, origin: str) -> str:
    problems = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return f"invalid settings ({origin}): " + "; ".join(problems)


def load_settings(args: argparse.Namespace | None = None, **overrides: Any) -> Settings:
    data: dict[str, Any] = {}
    origin = ["defaults"]
    path = _config_path(getattr(args, "config", None) if args else None)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise UserError(f"cannot read config file {path}: {e}") from e
        origin.append(str(path))
    env = _from_env()
    if env:
        data = _merge(data, env)
        origin.append("environment")
    if args is not None:
        flags = {k: getattr(args, k) for k in FLAG_KEYS if getattr(args, k, None) is not None}
        data = _merge(data, flags)
    data = _merge(data, overrides)
    for key in ("db", "lab_dir"):
        if isinstance(data.get(key), str):
            data[key] = os.path.expanduser(data[key])
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise UserError(_describe(e, ", ".join(origin))) from e
