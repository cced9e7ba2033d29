"""The store: schema migrations, refusal of files it cannot use, dedup, two processes at once."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from operator_tui.store import Store, StoreError, TickWrite
from operator_tui.store.db import split_statements
from operator_tui.store.evals import TRIAL_RUN
from operator_tui.store.schema import MIGRATIONS, SCHEMA_VERSION
from subjects.base import FaultRecord, Severity, TicketStatus, Violation


def violation(entity: str = "store:2", invariant: str = "store_unreachable") -> Violation:
    return Violation(invariant=invariant, entity=entity, severity=Severity.critical, summary=f"{entity} is gone",
                     evidence={"store_id": 2})


async def test_fresh_store_has_current_schema_and_wal(store: Store, db_path: Path) -> None:
    assert await store.db.scalar("PRAGMA user_version") == SCHEMA_VERSION
    assert await store.db.scalar("PRAGMA journal_mode") == "wal"
    assert await store.db.scalar("PRAGMA foreign_keys") == 1


async def test_migrates_an_older_schema_and_keeps_its_rows(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    for statement in split_statements(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs(kind, subject, started_at, status) VALUES ('headless','tikv','2026-01-01T00:00:00+00:00','completed')")
    conn.execute(
        "INSERT INTO tickets(run_id, invariant, entity, dedup_key, severity, status, summary, opened_at, last_seen_at,"
        " updated_at) VALUES (1,'store_down','store:1','store_down@store:1','critical','resolved','old',"
        "'2026-01-01T00:00:00+00:00','2026-01-01T00:00:00+00:00','2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    store = await Store.open(db_path)
    try:
        assert await store.db.scalar("PRAGMA user_version") == SCHEMA_VERSION
        [ticket] = await store.list_tickets()
        assert ticket.invariant == "store_down" and ticket.summary == "old"
        assert await store.verify_audit() == (True, 0, "")  # tables of later migrations exist and work
    finally:
        await store.close()


async def test_refuses_a_newer_schema_without_touching_it(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE future(x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match="newer than this operator-tui understands"):
        await Store.open(db_path)
    assert db_path.read_bytes() == before


async def test_refuses_a_corrupt_file_with_a_clear_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable operator-tui store"):
        await Store.open(db_path)


async def test_tickets_dedup_by_invariant_and_entity_within_a_run(store: Store) -> None:
    run = await store.start_run("test", "tikv")
    first = await store.apply_tick(TickWrite(run_id=run, open=[violation()]))
    again = await store.apply_tick(TickWrite(run_id=run, open=[violation()]))
    assert len(first.opened) == 1 and again.opened == []
    [ticket] = await store.active_tickets(run)
    assert ticket.occurrences == 2 and ticket.opened_at.tzinfo is not None
    other_run = await store.start_run("test", "tikv")
    assert len((await store.apply_tick(TickWrite(run_id=other_run, open=[violation()]))).opened) == 1
    resolved = await store.apply_tick(TickWrite(run_id=run, resolve=[(ticket.id, {"by": "monitor"})]))
    assert [t.status for t in resolved.resolved] == [TicketStatus.resolved]
    reopened = await store.apply_tick(TickWrite(run_id=run, open=[violation()]))
    assert len(reopened.opened) == 1 and reopened.opened[0].id != ticket.id
    kinds = [e.kind for e in await store.ticket_events(ticket.id)]
    assert kinds == ["opened", "resolved"]


async def test_an_incident_shows_cli_faults_of_its_subject_and_a_trial_only_its_own(store: Store) -> None:
    """Faults injected from the CLI and never reverted (their lab went down) stayed on every later
    incident timeline: another subject's, a later run's, and a trial's on a lab of its own,
    stretching the time axis to the old fault."""
    await store.record_fault(FaultRecord(subject="tikv", kind="kill_store", target="1"), "human:root")
    console, trial = await store.start_run("console", "tikv"), await store.start_run(TRIAL_RUN, "tikv")
    await store.record_fault(FaultRecord(subject="tikv", kind="kill_store", target="2"), "human:root")
    await store.record_fault(FaultRecord(subject="etcd", kind="kill_member", target="m1"), "human:root")
    own = await store.record_fault(FaultRecord(subject="tikv", kind="kill_store", target="4"), "harness", trial)
    for run in (console, trial):
        await store.apply_tick(TickWrite(run_id=run, open=[violation()]))
    [console_ticket], [trial_ticket] = await store.active_tickets(console), await store.active_tickets(trial)
    assert [(f.subject, f.target) for f in (await store.incident(console_ticket.id)).faults] == [("tikv", "2")]
    assert [f.id for f in (await store.incident(trial_ticket.id)).faults] == [own.id]


async def test_a_fault_whose_lab_went_down_ends_and_says_so_on_the_timeline(store: Store) -> None:
    run = await store.start_run("console", "etcd")
    fault = await store.record_fault(FaultRecord(subject="etcd", kind="kill_member", target="m1"), "human:root", run)
    await store.apply_tick(TickWrite(run_id=run, open=[violation()]))
    await store.mark_fault_ended(fault.id, "its lab went down", "human:root")
    [ticket] = await store.active_tickets(run)
    events = (await store.incident(ticket.id)).events
    assert [(e.kind, e.summary) for e in events if e.source == "fault"] == [
        ("injected", "kill_member on m1"), ("ended", "its lab went down")]
    assert await store.list_faults(active_only=True) == []
    assert (await store.get_fault(fault.id)).status == "ended"


async def test_samples_are_bounded(store: Store) -> None:
    run = await store.start_run("test", "tikv")
    store.sample_limit = 50
    for i in range(20):
        await store.apply_tick(TickWrite(run_id=run, samples=[("cluster", "qps", float(i))] * 5))
    await store.prune_samples(run)
    assert await store.db.scalar("SELECT count(*) FROM samples WHERE run_id = ?", (run,)) == 50
    series = await store.samples(run, "cluster", "qps", limit=3)
    assert [v for _, v in series] == [19.0, 19.0, 19.0]


WRITER = textwrap.dedent("""
    import asyncio, sys
    from operator_tui.store import Store, TickWrite
    from subjects.base import Severity, Violation
    async def main(path, tag):
        store = await Store.open(path)
        run = await store.start_run("writer", "tikv")
        for i in range(60):
            v = Violation(invariant="x", entity=f"{tag}:{i}", severity=Severity.warning, summary="s")
            await store.apply_tick(TickWrite(run_id=run, open=[v], samples=[("cluster", "qps", float(i))]))
            await store.audit("system", "test", "", {"i": i, "tag": tag})
        await store.close()
    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


async def test_two_processes_write_one_store(db_path: Path, tmp_path: Path) -> None:
    store = await Store.open(db_path)  # create the schema first
    await store.close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [await asyncio.create_subprocess_exec(sys.executable, str(script), str(db_path), tag)
             for tag in ("a", "b")]
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 120)
    assert codes == [0, 0]
    store = await Store.open(db_path)
    try:
        assert len(await store.list_tickets()) == 120
        ok, checked, problem = await store.verify_audit()
        assert ok, problem
        assert checked == 120
    finally:
        await store.close()


def test_migrations_are_well_formed() -> None:
    for script in MIGRATIONS:
        assert split_statements(script)


def test_store_closes_so_the_process_exits(db_path: Path) -> None:
    code = textwrap.dedent(f"""
        import asyncio
        from operator_tui.store import Store
        async def main():
            async with await Store.open({str(db_path)!r}) as s:
                await s.start_run("x", "tikv")
        asyncio.run(main())
    """)
    result = subprocess.run([sys.executable, "-c", code], timeout=30)
    assert result.returncode == 0


async def test_cancelling_a_writer_leaves_the_store_usable(store: Store) -> None:
    """A task cancelled mid-transaction (e.g. an agent session stopped at shutdown) must not leave
    the shared connection inside a transaction."""
    run = await store.start_run("test", "tikv")
    for delay in (0, 0.0001, 0.001, 0.005):
        writers = [asyncio.create_task(store.apply_tick(TickWrite(run_id=run, samples=[("c", "qps", 1.0)] * 50)))
                   for _ in range(5)]
        await asyncio.sleep(delay)
        for w in writers:
            w.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        await store.audit("system", "still writable", "", {"delay": delay})
    assert (await store.verify_audit())[0]
    assert not store.db.conn.in_transaction
