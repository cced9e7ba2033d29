"""The append-only, hash-chained audit log.

Each event's hash covers its own fields and the previous event's hash, and `audit_head` holds
the newest id and hash, so editing, removing or reordering any event (the newest included)
breaks verification at that event. Secrets are redacted before anything is written.

A hash chain proves order and integrity only against someone who cannot write the file: anyone
who can may rebuild the whole chain. With an audit key (a secret kept outside the store, e.g.
`--audit-key-file`), every event and the head also carry an HMAC of their hash under that key;
`audit verify` with the key then detects a rebuilt chain, since nobody without the key can
compute the MACs. Events written before the key was first used carry none: they are covered by
the first keyed event, whose hash chains over them. What a key cannot detect: rolling the
whole file back to an earlier copy of itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import weakref
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


_KEYS: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def set_audit_key(conn: aiosqlite.Connection, key: bytes | None) -> None:
    """Sign every event appended through this connection with `key` (None: stop signing)."""
    if key:
        _KEYS[conn] = key
    else:
        _KEYS.pop(conn, None)


def event_mac(key: bytes, digest: str) -> str:
    return hmac.new(key, b"event:" + digest.encode(), hashlib.sha256).hexdigest()


def head_mac(key: bytes, last_id: int, last_hash: str) -> str:
    return hmac.new(key, f"head:{last_id}:{last_hash}".encode(), hashlib.sha256).hexdigest()


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
    key = _KEYS.get(conn)
    await conn.execute(
        "INSERT INTO audit_events(id, at, run_id, actor, kind, ref, data, prev_hash, hash, mac)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)",
        (event_id, at, run_id, actor, kind, ref, data_text, prev_hash, digest,
         event_mac(key, digest) if key else None),
    )
    await conn.execute(
        "INSERT INTO audit_head(one, last_id, last_hash, mac) VALUES (1, ?, ?, ?) "
        "ON CONFLICT(one) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash, mac = excluded.mac",
        (event_id, digest, head_mac(key, event_id, digest) if key else None),
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

    async def verify_audit(self, key: bytes | None = None) -> tuple[bool, int, str]:
        """Walk the chain (and, with the audit key, every MAC). Returns (ok, events checked, first
        problem or ''). The key defaults to the one this store signs with, if any."""
        key = key if key is not None else _KEYS.get(self.db.conn)
        prev_hash, expected_id, checked = GENESIS, 1, 0
        first_signed: int | None = None
        async with self.db.conn.execute(
            "SELECT id, at, run_id, actor, kind, ref, data, prev_hash, hash, mac FROM audit_events ORDER BY id"
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
                if key is not None:
                    if row["mac"] is None:
                        if first_signed is not None:
                            return False, checked, (f"event {row['id']} carries no MAC although event {first_signed} "
                                                    "did: it was rewritten, or written by a process without the key")
                    elif not hmac.compare_digest(row["mac"], event_mac(key, digest)):
                        return False, checked, (f"event {row['id']}'s MAC does not match: the chain was rebuilt from "
                                                "there, or it was signed with another key")
                    elif first_signed is None:
                        first_signed = row["id"]
                prev_hash, expected_id, checked = row["hash"], expected_id + 1, checked + 1
        head = await self.db.fetchone("SELECT last_id, last_hash, mac FROM audit_head WHERE one = 1")
        if head is None:
            if checked:
                return False, checked, "the chain's head record is missing"
            return True, 0, ""
        if head["last_id"] != checked or head["last_hash"] != prev_hash:
            return False, checked, (
                f"event {checked + 1} is missing: the chain's head says the newest event is {head['last_id']}"
                if head["last_id"] > checked else "the chain's head does not match the newest event"
            )
        if key is not None and checked:
            if first_signed is None:
                return False, checked, ("no event carries a MAC: written without the audit key, or the MACs were "
                                        "removed when the chain was rebuilt")
            if head["mac"] is None or not hmac.compare_digest(head["mac"], head_mac(key, head["last_id"],
                                                                                  head["last_hash"])):
                return False, checked, "the chain's head MAC does not match: its newest events were removed or rebuilt"
        return True, checked, ""

    async def first_signed_event(self) -> int | None:
        """The first audit event that carries a MAC (events before it were written without a key)."""
        return await self.db.scalar("SELECT min(id) FROM audit_events WHERE mac IS NOT NULL")
