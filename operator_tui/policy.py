"""The operator's policy, persisted in the store so that every process honours the same one."""

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


async def load_policy(store: Store) -> Policy:
    values = await store.get_settings()
    ks = values.get("killswitch") or {}
    return Policy(
        mode=values.get("mode", DEFAULT_MODE),
        approval=values.get("approval", DEFAULT_APPROVAL),
        killswitch=bool(ks.get("engaged")),
        killswitch_by=ks.get("by"),
    )


async def set_mode(store: Store, mode: str, actor: str, run_id: int | None = None) -> str | None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return await store.set_setting("mode", mode, actor, run_id)


async def set_approval(store: Store, approval: str, actor: str, run_id: int | None = None) -> str | None:
    if approval not in APPROVALS:
        raise ValueError(f"unknown approval policy {approval!r}; choose one of {', '.join(APPROVALS)}")
    return await store.set_setting("approval", approval, actor, run_id)


async def set_killswitch(store: Store, engaged: bool, actor: str, run_id: int | None = None) -> None:
    await store.set_setting("killswitch", {"engaged": engaged, "by": actor}, actor, run_id)
