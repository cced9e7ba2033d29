"""The one SQLite store behind the console, the CLI, headless runs and eval trials.

    store = await Store.open(path)
    try: ...
    finally: await store.close()   # always: an open aiosqlite connection hangs the process at exit
"""

from __future__ import annotations

from pathlib import Path

from operator_tui.store.actions import ActionsRepo
from operator_tui.store.agent import AgentRepo
from operator_tui.store.audit import AuditRepo
from operator_tui.store.db import Database, StoreError
from operator_tui.store.evals import EvalsRepo
from operator_tui.store.faults import FaultsRepo
from operator_tui.store.incident import Incident, IncidentEvent, IncidentRepo
from operator_tui.store.runs import RunsRepo
from operator_tui.store.settings import SettingsRepo
from operator_tui.store.tickets import TicketsRepo, TickResult, TickWrite

__all__ = ["Incident", "IncidentEvent", "Store", "StoreError", "TickResult", "TickWrite"]


class Store(RunsRepo, TicketsRepo, SettingsRepo, AuditRepo, ActionsRepo, AgentRepo, FaultsRepo, EvalsRepo,
            IncidentRepo):
    def __init__(self, db: Database):
        self.db = db

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        return cls(await Database.open(path))

    @property
    def path(self) -> Path:
        return self.db.path

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
