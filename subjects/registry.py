"""Which subjects exist: one line each, naming the module that holds its `PLUGIN`.

The core imports this registry and `subjects.base` only, never a subject package (an
import-linter contract says so). Adding a subject is its own package plus one line here.
Plugin modules use the standard library only, so listing them is cheap (`--help` does it).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from subjects.plugin import PluginError, SubjectPlugin, load

PLUGINS: dict[str, str] = {
    "tikv": "subjects.tikv.plugin",
    "ratelimiter": "subjects.ratelimiter.plugin",
    "etcd": "subjects.etcd.plugin",
}
DEFAULT = "tikv"  # the console's embedded default cluster


def names() -> list[str]:
    return list(PLUGINS)


@cache
def plugin(name: str) -> SubjectPlugin:
    if name not in PLUGINS:
        raise PluginError(f"unknown subject {name!r}; known: {', '.join(PLUGINS)}")
    return importlib.import_module(PLUGINS[name]).PLUGIN


def plugins() -> list[SubjectPlugin]:
    return [plugin(name) for name in PLUGINS]


def chaos(name: str) -> Any:
    return load(plugin(name).chaos)


def settings_model(name: str) -> Any:
    return load(plugin(name).settings)


async def build_subject(name: str, options: dict[str, Any]) -> Any:
    """Build a subject straight from its own options model (benchmarks and tests), bypassing
    settings: `subjects.<name>.subject:build(options)`."""
    plugin(name)  # unknown names fail the same way everywhere
    module = importlib.import_module(f"subjects.{name}.subject")
    return await module.build(options)
