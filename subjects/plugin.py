"""How a subject plugs into Operator: one `SubjectPlugin` per subject, listed in `subjects/registry.py`.

A plugin tells the core, the CLI and the evaluation harness everything they need without the core
naming a system: the subject's settings section, its command-line flags, how to build it from
those settings, its lab, its chaos kinds, an embedded default cluster where it has one, a
simulator command, and its evaluation adapter.

This module uses the standard library only, and so must every `subjects/<name>/plugin.py`:
`operator-tui --help` lists every subject's flags without importing pydantic, an HTTP client or
the subject itself. Everything heavy is named by "package.module:attribute" and imported when used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PluginError(Exception):
    """A problem with a subject, its lab or its faults that the user can act on (one line, no
    traceback): a lab already up, a port taken, no cluster to watch, a fault that cannot apply."""


@dataclass(frozen=True)
class Flag:
    """One command-line option a subject adds. Its value lands in the subject's settings section
    (for `flags`) or in the options handed to the lab (for `lab_flags`) under `key`."""

    option: str  # "--pd"
    key: str  # "pd", or a dotted path into the section: "sim.stores"
    help: str
    metavar: str | None = None
    type: Callable[[str], Any] | None = None  # str when None (ignored for store_true)
    choices: tuple[str, ...] | None = None
    store_true: bool = False
    default: Any = None  # only for tools (a simulator command); other flags default to "not given"


@dataclass(frozen=True)
class Tool:
    """A command of the subject's own, e.g. `operator-tui sim tikv`: `run(options) -> exit code`,
    where options maps each flag's key to its value."""

    help: str
    description: str
    run: str  # "subjects.tikv.sim.command:run"
    flags: tuple[Flag, ...] = ()


@dataclass
class LabReport:
    """What a lab command did or found: lines for people, data for --json."""

    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubjectContext:
    """Where a subject's local state lives (its lab folder) and how it is being used."""

    lab_dir: Path
    purpose: str = "cli"  # console | headless | cli | demo | eval


@dataclass(frozen=True)
class SubjectPlugin:
    """Everything the core needs to know about one subject.

    Named attributes (strings "module:attribute") and what they must provide:

    settings   a pydantic model (extra="forbid") of the subject's config section: `[tikv]` in the
               TOML file, OPERATOR_TUI_TIKV__* in the environment, `flags` on the command line.
    build      `async build(section, ctx: SubjectContext) -> subjects.base.Subject`; raises
               PluginError (or ValueError) when the section names nothing to watch.
    chaos      a module with `kinds() -> dict[str, str]`,
               `options(section, ctx) -> dict` (where the faults go; PluginError when nowhere),
               `async inject(options, kind, target, params) -> FaultRecord`,
               `async revert(options, record) -> str`, `of_lab(lab_dir, record) -> bool` (does
               this fault act on the lab in lab_dir; asked before `lab down`, whose faults end
               with it), and `ChaosError` (a PluginError).
    lab        an object with `up(run_dir, options) -> LabReport`, `down(run_dir) -> LabReport`,
               `status(run_dir) -> LabReport` (data["up"]: bool); options hold the `lab_flags`
               keys the user gave, and `free_ports: True` when the caller wants the lab on free
               ports rather than its defaults (the demo). Optionally `load(run_dir, on: bool) ->
               LabReport`: start or stop the lab's load generator (the demo's traffic chapter).
               Raises PluginError for what the user can fix.
    embedded   an object for the embedded default cluster (the console's simulator):
               `missing(section) -> str | None`: None when the section names a cluster to
               watch, else what to pass instead (one line); `async start(section, ctx) ->
               handle` with `handle.section` (the section pointing at it), `handle.endpoint`
               (for display) and `async handle.stop()`.
    evaluation the subject's adapter for the evaluation harness: an object following
               `subjects.evaluation.EvaluationAdapter` ("subjects.<name>.evaluation:ADAPTER").
    """

    name: str
    summary: str
    settings: str
    build: str
    chaos: str
    flags: tuple[Flag, ...] = ()
    lab: str | None = None
    lab_flags: tuple[Flag, ...] = ()
    embedded: str | None = None
    simulator: Tool | None = None
    evaluation: str | None = None


def load(reference: str) -> Any:
    """Import "package.module:attribute" (or a whole module when there is no colon)."""
    import importlib

    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module
