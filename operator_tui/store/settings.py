"""Settings shared by every process on the store: mode, approval policy, kill switch."""

from __future__ import annotations

from typing import Any

from operator_tui.store.audit import append_audit
from operator_tui.store.db import Database, dumps, loads
from operator_tui.timeutil import now_text


class SettingsRepo:
    db: Database

    async def get_setting(self, key: str, default: Any = None) -> Any:
        row = await self.db.fetchone("SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else loads(row["value"])

    async def get_settings(self, keys: list[str] | None = None) -> dict[str, Any]:
        """Every setting, or only `keys` (those that exist)."""
        if keys is not None:
            rows = await self.db.fetchall(f"SELECT key, value FROM settings WHERE key IN ({','.join('?' * len(keys))})",
                                          keys)
            return {r["key"]: loads(r["value"]) for r in rows}
        rows = await self.db.fetchall("SELECT key, value FROM settings")
        return {r["key"]: loads(r["value"]) for r in rows}

    async def set_setting(self, key: str, value: Any, actor: str, run_id: int | None = None) -> Any:
        """Set a value and audit the change in one transaction; returns the previous value."""
        async with self.db.transaction() as conn:
            async with conn.execute("SELECT value FROM settings WHERE key = ?", (key,)) as cur:
                row = await cur.fetchone()
            previous = None if row is None else loads(row["value"])
            await conn.execute(
                "INSERT INTO settings(key, value, updated_at, updated_by) VALUES (?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, "
                "updated_by = excluded.updated_by",
                (key, dumps(value), now_text(), actor),
            )
            if previous != value:
                await append_audit(
                    conn, actor, "setting.changed", f"setting:{key}", {"key": key, "from": previous, "to": value},
                    run_id,
                )
        return previous
