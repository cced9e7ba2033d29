"""Parallel trials share one store: every slot's harness and operator write to it at once. A read
left open on a connection while another task of the same process begins a write used to fail at
once with "database is locked" whenever another process had committed in between (SQLite cannot
upgrade a stale snapshot and skips the busy timeout); it crashed operators in parallel campaigns.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from operator_tui.store import Store

WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    conn.execute("INSERT INTO samples(run_id, at, entity, metric, value) VALUES (1, 'x', 'other', 'm', 1)")
"""


async def test_reads_and_writes_of_one_process_survive_another_process_writing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = await Store.open(db)
    run_id = await store.start_run("test", "tikv")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), "4"])
    errors: list[str] = []
    try:
        async def reads() -> None:
            while writer.poll() is None:
                await store.db.fetchall("SELECT id, value FROM samples ORDER BY id DESC LIMIT 50")

        async def writes() -> None:
            while writer.poll() is None:
                try:
                    await store.db.write("INSERT INTO samples(run_id, at, entity, metric, value) VALUES (?,?,?,?,?)",
                                         (run_id, "t", "mine", "m", 2.0))
                except sqlite3.OperationalError as e:
                    errors.append(str(e))
                await asyncio.sleep(0)

        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(reads(), reads(), writes()), 30)
        assert time.monotonic() - started > 1
    finally:
        writer.kill()
        writer.wait()
        await store.close()
    assert errors == []
    mine = sqlite3.connect(db).execute("SELECT count(*) FROM samples WHERE entity = 'mine'").fetchone()[0]
    assert mine > 10
