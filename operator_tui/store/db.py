"""The connection to the one SQLite file behind everything, and its migrations.

WAL so that readers never block the writer, a busy timeout so that two processes (the console
and `operator-tui actions approve`) take turns instead of failing, foreign keys on, and every
write in an explicit `BEGIN IMMEDIATE` transaction. A Store must be closed: aiosqlite's worker
thread keeps the process alive until it is.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from operator_tui.errors import UserError
from operator_tui.store.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 10_000


class StoreError(UserError):
    """The store file cannot be used as it is (corrupt, newer, unwritable)."""


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    return json.loads(text)


def split_statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit a pending transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement in migration: {current.strip()[:80]}")
    return statements


async def _finish(begin: asyncio.Future[object] | None, conn: aiosqlite.Connection, statement: str) -> None:
    """Wait (uncancellably) for a pending BEGIN, then end the transaction it may have opened."""
    async def end() -> None:
        if begin is not None:
            try:
                await begin
            except sqlite3.Error:
                return  # BEGIN failed: no transaction to end
        try:
            await conn.execute(statement)
        except sqlite3.OperationalError:
            pass  # no transaction is active (e.g. SQLite already rolled back after an error)

    await asyncio.shield(asyncio.ensure_future(end()))


class Database:
    """One aiosqlite connection with a write lock, shared by every repository of a Store."""

    def __init__(self, path: Path, conn: aiosqlite.Connection):
        self.path = path
        self.conn = conn
        self._write_lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None  # the task inside `_exclusive`, which may re-enter
        self._closed = False
        self.run_locks: dict[int, Any] = {}  # run id -> the RunLock this process holds for it

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        path = Path(path)  # callers expand ~ (config does)
        try:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store's folder {path.parent}: {e.strerror}") from e
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {path}: {e}") from e
        db = cls(path, conn)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA foreign_keys = ON")
            await db._check_version()  # before WAL: switching modes rewrites the file header
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await db._migrate()
        except sqlite3.DatabaseError as e:
            await db.close()
            raise StoreError(f"{path} is not a usable operator-tui store ({e}); nothing was changed") from e
        except BaseException:
            await db.close()
            raise
        return db

    async def _check_version(self) -> int:
        version = await self.scalar("PRAGMA user_version")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this operator-tui understands "
                f"({SCHEMA_VERSION}); upgrade operator-tui or use another --db. Nothing was changed."
            )
        return version

    async def _migrate(self) -> None:
        version = await self._check_version()
        if version == SCHEMA_VERSION:
            return
        async with self.transaction():
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = await self.scalar("PRAGMA user_version")
            for number in range(version, SCHEMA_VERSION):
                for statement in split_statements(MIGRATIONS[number]):
                    await self.conn.execute(statement)
                await self.conn.execute(f"PRAGMA user_version = {number + 1}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A run still open when its store closes has nobody left to drive it: its lock goes (the
        # file stays, unlocked), so other processes see it as dead and take over its work.
        for lock in self.run_locks.values():
            lock.release(remove=False)
        self.run_locks.clear()
        await self.conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """One statement group at a time on the shared connection. A read keeps its statement (and
        so its snapshot) open between aiosqlite calls; a BEGIN IMMEDIATE issued meanwhile by
        another task of this process, after another process committed, fails at once with
        "database is locked" (SQLite cannot upgrade a stale snapshot, and skips the busy timeout).
        Reads and transactions therefore take turns; the task that holds the turn may re-enter."""
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            yield
            return
        async with self._write_lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, safe to cancel at any point.

        aiosqlite runs each statement on its own thread, so a cancelled await does not stop the
        statement: a BEGIN may still open the transaction after we stopped waiting for it. BEGIN,
        COMMIT and ROLLBACK are therefore shielded and always paired, or the shared connection
        would be left inside a transaction and every later write would fail.
        """
        async with self._exclusive():
            begin = asyncio.ensure_future(self.conn.execute("BEGIN IMMEDIATE"))
            try:
                await asyncio.shield(begin)
            except BaseException:
                await _finish(begin, self.conn, "ROLLBACK")
                raise
            try:
                yield self.conn
            except BaseException:
                await _finish(None, self.conn, "ROLLBACK")
                raise
            else:
                await asyncio.shield(self.conn.execute("COMMIT"))

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._exclusive(), self.conn.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._exclusive(), self.conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def write(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement in its own transaction; returns lastrowid."""
        async with self.transaction() as conn:
            cur = await conn.execute(sql, tuple(params))
            return cur.lastrowid or 0
