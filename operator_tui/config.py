"""Settings: defaults < config file (TOML) < environment (OPERATOR_TUI_*) < command-line flags.

Every key has an environment variable OPERATOR_TUI_<KEY>; nested keys use a double underscore
(OPERATOR_TUI_AGENT_OPTIONS__VERIFY_DELAY_S=2, OPERATOR_TUI_TIKV__PD=http://...). Values keep
their real types: lists and tables are JSON (OPERATOR_TUI_RATELIMITER__NODES='["http://..."]').
The config file is --config, else $OPERATOR_TUI_CONFIG, else $XDG_CONFIG_HOME/operator-tui/config.toml
when it exists. Each subject adds its own section ([tikv], [ratelimiter], ...), declared by its
plugin: the core names no subject here.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from operator_tui.errors import UserError
from operator_tui.paths import default_db, default_lab_dir
from subjects import registry
from subjects.plugin import Flag

ENV_PREFIX = "OPERATOR_TUI_"
_FILE_DATA: ContextVar[dict[str, Any] | None] = ContextVar("operator_tui_config_file", default=None)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionSettings(Strict):
    rate_limit_per_minute: int = Field(20, ge=1)
    max_retries: int = Field(3, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    approval_timeout_s: float = Field(900.0, gt=0)
    timeout_s: float = Field(120.0, gt=0)


class ClaudeSettings(Strict):
    model: str = "claude-sonnet-5-5"  # claude-sonnet-4-5 reached end of life on 2026-11-30
    max_turns: int = Field(12, ge=1)
    max_tokens: int = Field(60_000, ge=1000)  # input + output over a session
    max_seconds: float = Field(120.0, gt=0)
    system_prompt: str | None = None
    tools: list[str] | None = None  # None: all tools
    enable_shell: bool = False
    # Where run_shell runs: bwrap (read-only host root) or docker (a throw-away container per command
    # from the read-only operator-tui/shell image, on DOCKER_HOST or the project's local engine).
    shell_sandbox: Literal["bwrap", "docker"] = "bwrap"


class AgentSettings(Strict):
    verify_delay_s: float = Field(5.0, ge=0)
    max_attempts: int = Field(3, ge=1)
    max_ticket_seconds: float = Field(900.0, gt=0)
    allow_destructive: bool = False
    claude: ClaudeSettings = Field(default_factory=ClaudeSettings)


class _FileSource(PydanticBaseSettingsSource):
    """The config file's values, below the environment and the flags."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get() or {})


class CoreSettings(BaseSettings):
    """What the core itself reads; each subject's section is added from its plugin (`Settings`)."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      case_sensitive=False)

    db: Path = Field(default_factory=default_db)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    subject: str = registry.DEFAULT
    lab_dir: Path | None = None
    sim: bool = False  # watch the subject's embedded simulated cluster when no endpoint is given
    agent: Literal["embedded", "claude", "none"] = "embedded"
    mode: Literal["observe", "propose", "execute"] | None = None  # None: keep what the store holds
    approval: Literal["off", "risky", "all"] | None = None
    interval: float = Field(1.0, gt=0)
    clear_after: int = Field(3, ge=1)
    # A check's data missing this long (Prometheus down, unreadable metrics) opens a metrics_missing ticket.
    missing_data_grace_s: float = Field(30.0, ge=0)
    # Sign audit events with the key in this file (kept outside the store); `audit verify` checks it.
    audit_key_file: Path | None = None
    actions: ActionSettings = Field(default_factory=ActionSettings)
    agent_options: AgentSettings = Field(default_factory=AgentSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileSource(settings_cls)

    @field_validator("subject")
    @classmethod
    def _known_subject(cls, value: str) -> str:
        if value not in registry.PLUGINS:
            raise ValueError(f"unknown subject {value!r}; known: {', '.join(registry.PLUGINS)}")
        return value

    @field_validator("db", "lab_dir", "audit_key_file", mode="before")
    @classmethod
    def _expand_user(cls, value: Any) -> Any:
        return os.path.expanduser(value) if isinstance(value, str) else value

    def lab_folder(self, subject: str | None = None) -> Path:
        name = subject or self.subject
        return (self.lab_dir / name) if self.lab_dir else default_lab_dir(name)

    def section(self, subject: str | None = None) -> Any:
        """The subject's own settings ([tikv], [ratelimiter], ...)."""
        return getattr(self, subject or self.subject)


def _settings_class() -> type[CoreSettings]:
    sections: dict[str, Any] = {}
    for plugin in registry.plugins():
        model = registry.settings_model(plugin.name)
        sections[plugin.name] = (model, Field(default_factory=model))
    return create_model("Settings", __base__=CoreSettings, **sections)


Settings = _settings_class()

# Flags of the core (argparse dest -> settings key); each subject's flags come from its plugin.
FLAG_KEYS = ("db", "log_level", "subject", "lab_dir", "agent", "mode", "approval", "interval", "sim", "audit_key_file")
MIN_AUDIT_KEY_BYTES = 16


def read_audit_key(settings: CoreSettings) -> bytes | None:
    """The audit HMAC key from `audit_key_file` (None when not configured). A key inside the store's
    own folder would be rewritten by whoever rewrites the store: refused."""
    path = settings.audit_key_file
    if path is None:
        return None
    if path.resolve().parent == settings.db.resolve().parent:
        raise UserError(f"the audit key file {path} is in the store's folder: keep it elsewhere, or whoever can "
                        "rewrite the store can read the key and rebuild the chain with it")
    try:
        key = path.read_bytes().strip()
    except OSError as e:
        raise UserError(f"cannot read the audit key file {path}: {e.strerror or e}") from e
    if len(key) < MIN_AUDIT_KEY_BYTES:
        raise UserError(f"the audit key in {path} is {len(key)} bytes; use at least {MIN_AUDIT_KEY_BYTES} "
                        "(e.g. `head -c 32 /dev/urandom | base64 > FILE`)")
    return key


def flag_dest(subject: str, flag: Flag) -> str:
    """The argparse destination of a subject's flag (unique across subjects)."""
    return f"{subject}__{flag.key.replace('.', '__')}"


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


def _check_environment() -> None:
    """An OPERATOR_TUI_* variable that names no setting is a mistake to report, not to ignore."""
    known = set(Settings.model_fields) | {"config"}
    for name in os.environ:
        if name.upper().startswith(ENV_PREFIX):
            top = name[len(ENV_PREFIX):].lower().split("__", 1)[0]
            if top not in known:
                raise UserError(f"unknown setting in the environment: {name} (known: "
                                f"{', '.join(ENV_PREFIX + k.upper() for k in sorted(known))})")


def _put(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in FLAG_KEYS:
        value = getattr(args, key, None)
        if value is not None and value is not False:
            out[key] = value
    for plugin in registry.plugins():
        for flag in plugin.flags:
            value = getattr(args, flag_dest(plugin.name, flag), None)
            if value is not None:
                _put(out, f"{plugin.name}.{flag.key}", value)
    return out


def _describe(e: ValidationError, origin: str) -> str:
    problems = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return f"invalid settings ({origin}): " + "; ".join(problems)


def load_settings(args: argparse.Namespace | None = None, **overrides: Any) -> CoreSettings:
    origin = ["defaults"]
    file_data: dict[str, Any] = {}
    path = _config_path(getattr(args, "config", None) if args else None)
    if path is not None:
        try:
            file_data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise UserError(f"cannot read config file {path}: {e}") from e
        origin.append(str(path))
    _check_environment()
    if any(n.upper().startswith(ENV_PREFIX) and n.upper() != f"{ENV_PREFIX}CONFIG" for n in os.environ):
        origin.append("environment")
    init = _flags(args) if args is not None else {}
    for key, value in overrides.items():
        _put(init, key, value)
    if init:
        origin.append("flags")
    token = _FILE_DATA.set(file_data)
    try:
        settings = Settings(**init)
    except ValidationError as e:
        raise UserError(_describe(e, ", ".join(origin))) from e
    finally:
        _FILE_DATA.reset(token)
    _check_subject_flags(settings, init)
    return settings


def _check_subject_flags(settings: CoreSettings, given: dict[str, Any]) -> None:
    """`--pd` with `--subject ratelimiter` is a mistake: say so rather than ignore the flag."""
    for plugin in registry.plugins():
        if plugin.name != settings.subject and isinstance(given.get(plugin.name), dict):
            options = [f.option for f in plugin.flags if f.key.split(".")[0] in given[plugin.name]]
            if options:
                raise UserError(f"{', '.join(options)} {'is a' if len(options) == 1 else 'are'} {plugin.name} "
                                f"option{'s' if len(options) > 1 else ''}; the subject is {settings.subject} "
                                f"(add --subject {plugin.name})")
