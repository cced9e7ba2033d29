"""The one SQLite store behind the console, the CLI, headless runs and eval trials.

    store = await Store.open(path)
    try: ...
    finally: await store.close()   # always: an open aiosqlite connection hangs the process at exit
"""

from __future__ import annotations

from pathlib import Path

from operator_tui.store.actions import ActionsRepo
from operator_tui.store.agent import AgentRepo
from operator_tui.store.audit import AuditRepo, set_audit_key
from operator_tui.store.db import Database, StoreError
from operator_tui.store.evals import EvalsRepo
from operator_tui.store.faults import FaultsRepo
from operator_tui.store.incident import Incident, IncidentEvent, IncidentRepo
from operator_tui.store.runs import RunsRepo
from operator_tui.store.settings import SettingsRepo
from operator_tui.store.tickets import TicketsRepo, TickResult, TickWrite

__all__ = ["Incident", "IncidentEvent", "Store", "StoreError", "TickResult", "TickWrite"]


class Store(RunsRepo, TicketsRepo, SettingsRepo, AuditRepo, ActionsRepo, AgentRepo, FaultsRepo, IncidentRepo,
            EvalsRepo):
    def __init__(self, db: Database):
        self.db = db

    @classmethod
    async def open(cls, path: str | Path, *, audit_key: bytes | None = None) -> Store:
        """`audit_key`: sign every audit event this process appends (see store/audit.py)."""
        store = cls(await Database.open(path))
        if audit_key:
            set_audit_key(store.db.conn, audit_key)
        return store

    @property
    def path(self) -> Path:
        return self.db.path

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
