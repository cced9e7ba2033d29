"""The append-only, hash-chained audit log.

Each event's hash covers its own fields and the previous event's hash, and `audit_head` holds
the newest id and hash, so editing, removing or reordering any event (the newest included)
breaks verification at that event. Secrets are redacted before anything is written.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import aiosqlite

from operator_tui.store.db import Database, dumps, loads
from operator_tui.store.models import AuditEvent
from operator_tui.timeutil import now_text

GENESIS = "0" * 64
SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|authorization|credential)", re.I)
SECRET_VALUE = re.compile(r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9]{20,}|Bearer\s+[A-Za-z0-9._\-]{8,})")


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "[redacted]" if isinstance(k, str) and SECRET_KEY.search(k) else redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return SECRET_VALUE.sub("[redacted]", value)
    return value


def event_hash(event_id: int, at: str, run_id: int | None, actor: str, kind: str, ref: str, data: str,
               prev_hash: str) -> str:
    canonical = dumps([event_id, at, run_id, actor, kind, ref, data, prev_hash])
    return hashlib.sha256(canonical.encode()).hexdigest()


async def append_audit(conn: aiosqlite.Connection, actor: str, kind: str, ref: str, data: dict[str, Any],
                       run_id: int | None = None) -> int:
    """Append one event. Must run inside a write transaction (BEGIN IMMEDIATE) on `conn`."""
    async with conn.execute("SELECT last_id, last_hash FROM audit_head WHERE one = 1") as cur:
        head = await cur.fetchone()
    last_id, prev_hash = (0, GENESIS) if head is None else (head["last_id"], head["last_hash"])
    event_id = last_id + 1
    at = now_text()
    data_text = dumps(redact(data))
    digest = event_hash(event_id, at, run_id, actor, kind, ref, data_text, prev_hash)
    await conn.execute(
        "INSERT INTO audit_events(id, at, run_id, actor, kind, ref, data, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)",
        (event_id, at, run_id, actor, kind, ref, data_text, prev_hash, digest),
    )
    await conn.execute(
        "INSERT INTO audit_head(one, last_id, last_hash) VALUES (1, ?, ?) "
        "ON CONFLICT(one) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash",
        (event_id, digest),
    )
    return event_id


def audit_from_row(row: Any) -> AuditEvent:
    data = dict(row)
    data["data"] = loads(data["data"], {})
    return AuditEvent.model_validate(data)


class AuditRepo:
    db: Database

    async def audit(self, actor: str, kind: str, ref: str = "", data: dict[str, Any] | None = None,
                    run_id: int | None = None) -> int:
        async with self.db.transaction() as conn:
            return await append_audit(conn, actor, kind, ref, data or {}, run_id)

    async def list_audit(self, limit: int = 100, ref: str | None = None, after_id: int = 0) -> list[AuditEvent]:
        sql, params = "SELECT * FROM audit_events WHERE id > ?", [after_id]
        if ref:
            sql += " AND ref = ?"
            params.append(ref)
        rows = await self.db.fetchall(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [audit_from_row(r) for r in reversed(rows)]

    async def verify_audit(self) -> tuple[bool, int, str]:
        """Walk the chain. Returns (ok, events checked, first problem or '')."""
        prev_hash, expected_id, checked = GENESIS, 1, 0
        async with self.db.conn.execute(
            "SELECT id, at, run_id, actor, kind, ref, data, prev_hash, hash FROM audit_events ORDER BY id"
        ) as cur:
            async for row in cur:
                if row["id"] != expected_id:
                    return False, checked, f"event {expected_id} is missing (next present is {row['id']})"
                if row["prev_hash"] != prev_hash:
                    return False, checked, f"event {row['id']} does not follow event {row['id'] - 1} (prev_hash differs)"
                digest = event_hash(row["id"], row["at"], row["run_id"], row["actor"], row["kind"], row["ref"],
                                    row["data"], row["prev_hash"])
                if digest != row["hash"]:
                    return False, checked, f"event {row['id']} was altered (its hash does not match its content)"
                prev_hash, expected_id, checked = row["hash"], expected_id + 1, checked + 1
        head = await self.db.fetchone("SELECT last_id, last_hash FROM audit_head WHERE one = 1")
        if head is None:
            if checked:
                return False, checked, "the chain's head record is missing"
            return True, 0, ""
        if head["last_id"] != checked or head["last_hash"] != prev_hash:
            return False, checked, (
                f"event {checked + 1} is missing: the chain's head says the newest event is {head['last_id']}"
                if head["last_id"] > checked else "the chain's head does not match the newest event"
            )
        return True, checked, ""
