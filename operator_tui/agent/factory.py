"""Which diagnoser the agent uses: `--agent embedded` (the default) or `--agent claude`."""

from __future__ import annotations

from operator_tui.actions.engine import ActionEngine
from operator_tui.agent.embedded import EmbeddedDiagnoser
from operator_tui.agent.loop import Diagnoser
from operator_tui.config import AgentSettings
from operator_tui.store import Store
from subjects.base import Subject

DIAGNOSERS = ("embedded", "claude")


def make_diagnoser(name: str, settings: AgentSettings, *, subject: Subject, store: Store, engine: ActionEngine,
                   run_id: int) -> Diagnoser:
    """The diagnoser called `name`. ValueError for "none" (no agent runs at all) and unknown names,
    and for a Claude configuration that cannot work (unknown tools, run_shell without its sandbox)."""
    if name == "embedded":
        return EmbeddedDiagnoser()
    if name == "claude":
        # claude.py imports the anthropic SDK only when a diagnosis starts: cheap to import here.
        from operator_tui.agent.claude import ClaudeDiagnoser
        from operator_tui.agent.shell import SandboxUnavailable, Shell, register_shell_action

        shell = None
        if settings.claude.enable_shell:
            shell = Shell(sandbox=settings.claude.shell_sandbox)
            try:
                shell.check()
            except SandboxUnavailable as e:
                raise ValueError(f"agent.claude.enable_shell is on but {e}") from e
            register_shell_action(engine.catalogue, shell)
        return ClaudeDiagnoser(settings.claude, subject=subject, store=store, engine=engine, run_id=run_id,
                               shell=shell)
    if name == "none":
        raise ValueError("agent 'none' has no diagnoser: do not start the agent")
    raise ValueError(f"unknown agent {name!r}; choose one of {', '.join((*DIAGNOSERS, 'none'))}")
