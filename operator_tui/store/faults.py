"""Injected faults, each recorded with exactly what undoes it."""

from __future__ import annotations

from typing import Any

from operator_tui.store.audit import append_audit
from operator_tui.store.db import Database, dumps, loads
from operator_tui.store.models import FaultRow
from operator_tui.timeutil import now_text
from subjects.base import FaultRecord

DONE = ("reverted", "ended")  # every other status (active, revert_failed) may still act on a cluster


def fault_from_row(row: Any) -> FaultRow:
    data = dict(row)
    data["params"] = loads(data["params"], {})
    data["record"] = loads(data["record"], {})
    return FaultRow.model_validate(data)


class FaultsRepo:
    db: Database

    async def record_fault(self, record: FaultRecord, actor: str, run_id: int | None = None) -> FaultRow:
        at = now_text()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO faults(run_id, subject, kind, target, params, record, status, injected_at, actor)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (run_id, record.subject, record.kind, record.target, dumps(record.params),
                 record.model_dump_json(), "active", at, actor),
            )
            fault_id = cur.lastrowid
            await append_audit(conn, actor, "fault.injected", f"fault:{fault_id}", record.model_dump(), run_id)
            async with conn.execute("SELECT * FROM faults WHERE id = ?", (fault_id,)) as c:
                return fault_from_row(await c.fetchone())

    async def mark_fault_reverted(self, fault_id: int, detail: str, actor: str, ok: bool = True) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE faults SET status = ?, reverted_at = ?, revert_detail = ? WHERE id = ?",
                ("reverted" if ok else "revert_failed", now_text(), detail, fault_id),
            )
            await append_audit(conn, actor, "fault.reverted" if ok else "fault.revert_failed", f"fault:{fault_id}",
                               {"detail": detail})

    async def mark_fault_ended(self, fault_id: int, detail: str, actor: str) -> None:
        """The fault stopped acting without a revert: what it acted on is gone (its lab went down)."""
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE faults SET status = 'ended', reverted_at = ?, revert_detail = ? WHERE id = ?",
                               (now_text(), detail, fault_id))
            await append_audit(conn, actor, "fault.ended", f"fault:{fault_id}", {"detail": detail})

    async def get_fault(self, fault_id: int) -> FaultRow | None:
        row = await self.db.fetchone("SELECT * FROM faults WHERE id = ?", (fault_id,))
        return None if row is None else fault_from_row(row)

    async def list_faults(self, active_only: bool = False, subject: str | None = None) -> list[FaultRow]:
        sql, params = "SELECT * FROM faults WHERE 1=1", []
        if active_only:
            sql += f" AND status NOT IN {DONE}"
        if subject:
            sql += " AND subject = ?"
            params.append(subject)
        rows = await self.db.fetchall(sql + " ORDER BY id", params)
        return [fault_from_row(r) for r in rows]
