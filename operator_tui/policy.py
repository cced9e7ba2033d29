"""The operator's policy, persisted in the store so that every process honours the same one.

The policy is global (keys `mode`, `approval`, `killswitch`), and a run may have its own mode,
approval and kill switch on top (keys `run:<id>:<name>`), as each eval trial does: a run's own
mode and approval replace the global ones for that run, and either kill switch stops it, so the
global switch still stops everything while one trial's switch never stops its neighbour."""

from __future__ import annotations

import getpass
from typing import Literal

from pydantic import BaseModel

from operator_tui.store import Store

Mode = Literal["observe", "propose", "execute"]
Approval = Literal["off", "risky", "all"]
MODES: tuple[str, ...] = ("observe", "propose", "execute")
APPROVALS: tuple[str, ...] = ("off", "risky", "all")
DEFAULT_MODE: Mode = "execute"
DEFAULT_APPROVAL: Approval = "off"  # the product's roadmap: approval is opt-in


def human_actor() -> str:
    try:
        return f"human:{getpass.getuser()}"
    except (KeyError, OSError):
        return "human:unknown"


class Policy(BaseModel):
    mode: Mode = DEFAULT_MODE
    approval: Approval = DEFAULT_APPROVAL
    killswitch: bool = False
    killswitch_by: str | None = None

    def needs_approval(self, risk: str) -> bool:
        if self.approval == "all":
            return True
        return self.approval == "risky" and risk in ("high", "destructive")


def run_key(run_id: int | None, name: str) -> str:
    """The settings key of `name` (mode, approval, killswitch): global, or of one run."""
    return name if run_id is None else f"run:{run_id}:{name}"


async def load_policy(store: Store, run_id: int | None = None) -> Policy:
    """The global policy, or the one run `run_id` obeys: its own mode and approval when set, and
    engaged when either its own or the global kill switch is."""
    names = ("mode", "approval", "killswitch")
    keys = [*names, *(run_key(run_id, n) for n in names if run_id is not None)]
    values = await store.get_settings(keys)
    ks = values.get("killswitch") or {}
    policy = Policy(
        mode=values.get("mode", DEFAULT_MODE),
        approval=values.get("approval", DEFAULT_APPROVAL),
        killswitch=bool(ks.get("engaged")),
        killswitch_by=ks.get("by"),
    )
    if run_id is None:
        return policy
    run_ks = values.get(run_key(run_id, "killswitch")) or {}
    return Policy(
        mode=values.get(run_key(run_id, "mode"), policy.mode),
        approval=values.get(run_key(run_id, "approval"), policy.approval),
        killswitch=policy.killswitch or bool(run_ks.get("engaged")),
        killswitch_by=policy.killswitch_by if policy.killswitch else run_ks.get("by"),
    )


async def set_mode(store: Store, mode: str, actor: str, run_id: int | None = None, *,
                   for_run: int | None = None) -> str | None:
    """Set the global mode, or run `for_run`'s own; `run_id` is the run the change is audited under."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return await store.set_setting(run_key(for_run, "mode"), mode, actor, run_id)


async def set_approval(store: Store, approval: str, actor: str, run_id: int | None = None, *,
                       for_run: int | None = None) -> str | None:
    if approval not in APPROVALS:
        raise ValueError(f"unknown approval policy {approval!r}; choose one of {', '.join(APPROVALS)}")
    return await store.set_setting(run_key(for_run, "approval"), approval, actor, run_id)


async def set_killswitch(store: Store, engaged: bool, actor: str, run_id: int | None = None, *,
                         for_run: int | None = None) -> None:
    await store.set_setting(run_key(for_run, "killswitch"), {"engaged": engaged, "by": actor}, actor, run_id)
