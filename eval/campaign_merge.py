"""`eval merge STORE...`: the shards of a campaign, run as CI jobs on separate machines, become one
campaign in one store.

Each source store's campaigns are grouped by spec hash (the same file, prompts and defaults, so
the same plan and seeds). A group becomes one campaign in the target store (created, or the one an
earlier merge made), holding every trial of every shard. Everything a trial owns is copied with
new ids: its run, the trial row, its faults, events, oracle checks and workload buckets, and the
run's tickets, actions, agent sessions and samples (found through the schema's foreign keys, so
columns added later come along). The target's report then equals an unsharded run's: the same
plan, the same trial keys and seeds, every trial's stored outcome and scores.

Audit events are not copied: the audit log is one hash chain per store, and splicing another
store's chain in would break it. Each source's chain is verified before anything is copied (a
broken one stops the merge), every trial's own audit check is in its scores already, and the
merge appends one audit event of its own naming the sources and their verified chain heads.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT_TABLES = ("eval_campaigns", "eval_variants", "eval_scenarios", "eval_trials", "runs")
SKIP_TABLES = {"audit_events", "audit_head", "settings", "sqlite_sequence", "eval_comparisons"}
# references the schema does not declare as foreign keys
EXTRA_REFS = {("actions", "session_id"): "agent_sessions", ("audit_events", "run_id"): "runs",
              ("faults", "run_id"): "runs"}


def _fks(conn: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """table -> {column: referenced table} for every integer reference between tables."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for t in tables:
        for row in conn.execute(f"PRAGMA foreign_key_list({t})"):
            out[t][row[3]] = row[2]
    for (t, col), ref in EXTRA_REFS.items():
        if t in tables:
            out[t][col] = ref
    return out


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _order(fks: dict[str, dict[str, str]], tables: list[str]) -> list[str]:
    """Tables with the ones they reference first."""
    done: list[str] = []
    pending = set(tables)
    while pending:
        ready = sorted(t for t in pending if all(r == t or r not in pending for r in fks.get(t, {}).values()))
        if not ready:  # a cycle: take the rest as they come
            ready = sorted(pending)
        done += ready
        pending -= set(ready)
    return done


def _select(src: sqlite3.Connection, fks: dict[str, dict[str, str]], campaign_ids: list[int]) -> dict[str, list[dict]]:
    """Every row that belongs to these campaigns, by table."""
    src.row_factory = sqlite3.Row
    rows: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    marks = ",".join("?" * len(campaign_ids))
    for r in src.execute(f"SELECT * FROM eval_campaigns WHERE id IN ({marks})", campaign_ids):
        rows["eval_campaigns"][r["id"]] = dict(r)
    for t in ("eval_variants", "eval_scenarios", "eval_trials"):
        for r in src.execute(f"SELECT * FROM {t} WHERE campaign_id IN ({marks})", campaign_ids):
            rows[t][r["id"]] = dict(r)
    run_ids = [r["run_id"] for r in rows["eval_trials"].values()]
    for i in range(0, len(run_ids), 500):
        chunk = run_ids[i:i + 500]
        for r in src.execute(f"SELECT * FROM runs WHERE id IN ({','.join('?' * len(chunk))})", chunk):
            rows["runs"][r["id"]] = dict(r)
    tables = [t for t in fks if t not in SKIP_TABLES]
    changed = True
    while changed:  # follow references into the selected rows until nothing new turns up
        changed = False
        for t in tables:
            if t in ("eval_campaigns", "runs") or t in SKIP_TABLES:
                continue
            for col, ref in fks.get(t, {}).items():
                ids = list(rows.get(ref, {}))
                if not ids:
                    continue
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    for r in src.execute(f"SELECT * FROM {t} WHERE {col} IN ({','.join('?' * len(chunk))})", chunk):
                        if r["id"] not in rows[t]:
                            rows[t][r["id"]] = dict(r)
                            changed = True
    return {t: list(v.values()) for t, v in rows.items()}


def _all_tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


def _insert(dst: sqlite3.Connection, table: str, row: dict[str, Any], columns: list[str]) -> int:
    cols = [c for c in columns if c != "id" and c in row]
    cur = dst.execute(f"INSERT INTO {table}({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                      [row[c] for c in cols])
    return int(cur.lastrowid or 0)


def _verify_chain(path: Path) -> str:
    async def check() -> str:
        from operator_tui.store import Store

        store = await Store.open(path)
        try:
            ok, count, detail = await store.verify_audit()
        finally:
            await store.close()
        if not ok:
            raise ValueError(f"{path}: the audit chain is broken ({detail}); refusing to merge it")
        return f"{count} events, {detail}" if detail else f"{count} events"

    return asyncio.run(check())


def _merge_sync(target: Path, sources: list[Path]) -> dict[str, Any]:
    from eval.campaign_store import host as host_info

    chains = {str(s): _verify_chain(s) for s in sources}
    dst = sqlite3.connect(target, timeout=30)
    dst.row_factory = sqlite3.Row
    dst.execute("PRAGMA foreign_keys = ON")
    fks = _fks(dst)
    dst_columns = {t: _columns(dst, t) for t in _all_tables(dst)}
    groups: dict[str, dict[str, Any]] = {}
    try:
        dst.execute("BEGIN IMMEDIATE")
        for source in sources:
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
            src.row_factory = sqlite3.Row
            try:
                if src.execute("PRAGMA user_version").fetchone()[0] != dst.execute("PRAGMA user_version").fetchone()[0]:
                    raise ValueError(f"{source}: another schema version than {target}; open it once with this "
                                     "operator-tui (any `eval report`) to migrate it")
                for camp in src.execute("SELECT * FROM eval_campaigns ORDER BY id").fetchall():
                    if not camp["spec_sha256"]:
                        continue  # ad hoc `eval run` campaigns have no spec to merge on
                    g = groups.setdefault(camp["spec_sha256"], {"name": camp["name"], "sources": [], "trials": 0})
                    cid = g.get("target_id")
                    if cid is None:
                        cid = _target_campaign(dst, dict(camp), dst_columns, host_info)
                        g["target_id"] = cid
                    n = _copy_campaign(src, dst, fks, dst_columns, camp["id"], cid)
                    h = json.loads(camp["host_json"] or "{}")
                    shard = (h.get("campaign") or {}).get("shard") or "1/1"
                    g["sources"].append(f"{source}#campaign {camp['id']} shard {shard}")
                    g["trials"] += n
            finally:
                src.close()
        for sha, g in groups.items():
            row = dst.execute("SELECT host_json FROM eval_campaigns WHERE id = ?", (g["target_id"],)).fetchone()
            h = json.loads(row["host_json"] or "{}")
            h.setdefault("campaign", {})
            h["campaign"]["merged_from"] = [*h["campaign"].get("merged_from", []), *g["sources"]]
            h["campaign"]["shard"] = "1/1"
            dst.execute("UPDATE eval_campaigns SET host_json = ?, status = 'merged' WHERE id = ?",
                        (json.dumps(h), g["target_id"]))
            g["spec_sha256"] = sha
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    finally:
        dst.close()
    return {"chains": chains, "groups": groups}


def _target_campaign(dst: sqlite3.Connection, camp: dict[str, Any], columns: dict[str, list[str]],
                     host_info: Any) -> int:
    """The campaign a group merges into: one an earlier merge made, or a new one."""
    for row in dst.execute("SELECT id, host_json FROM eval_campaigns WHERE spec_sha256 = ? ORDER BY id",
                           (camp["spec_sha256"],)):
        if (json.loads(row["host_json"] or "{}").get("campaign") or {}).get("merged_from"):
            return int(row["id"])
    extra = (json.loads(camp["host_json"] or "{}").get("campaign") or {})
    new = {**camp, "status": "merged", "resumed_from": None, "host_json": json.dumps(host_info({"file": extra.get("file"), "shard": "1/1",
                                                                          "merged_from": []}))}
    return _insert(dst, "eval_campaigns", new, columns["eval_campaigns"])


def _copy_campaign(src: sqlite3.Connection, dst: sqlite3.Connection, fks: dict[str, dict[str, str]],
                   columns: dict[str, list[str]], campaign_id: int, target_id: int) -> int:
    rows = _select(src, fks, [campaign_id])
    ids: dict[str, dict[int, int]] = defaultdict(dict)
    ids["eval_campaigns"][campaign_id] = target_id
    # variants and scenarios: the target campaign's own, by name (a second shard reuses the first's)
    for t in ("eval_variants", "eval_scenarios"):
        existing = {r["name"]: r["id"] for r in dst.execute(f"SELECT id, name FROM {t} WHERE campaign_id = ?",
                                                             (target_id,))}
        for r in rows.get(t, []):
            if r["name"] in existing:
                ids[t][r["id"]] = existing[r["name"]]
            else:
                ids[t][r["id"]] = _insert(dst, t, {**r, "campaign_id": target_id}, columns[t])
    for t in _order(fks, [t for t in rows if t not in ("eval_campaigns", "eval_variants", "eval_scenarios")]):
        for r in sorted(rows[t], key=lambda x: x["id"]):
            new = dict(r)
            for col, ref in fks.get(t, {}).items():
                if new.get(col) is not None and ref in ids:
                    new[col] = ids[ref].get(new[col], new[col])
            ids[t][r["id"]] = _insert(dst, t, new, columns[t])
    return len(rows.get("eval_trials", []))


async def merge_stores(target: Path, sources: list[Path]) -> dict[str, Any]:
    """Merge the campaigns of `sources` into the store at `target` (created when missing)."""
    from operator_tui.store import Store

    store = await Store.open(target)  # creates or migrates the target
    await store.close()
    for s in sources:  # migrate the sources forward too, so the schemas match
        src = await Store.open(s)
        await src.close()
    out = await asyncio.to_thread(_merge_sync, target, sources)
    from eval.campaign_plan import plan_campaign
    from eval.campaign_store import load, results

    store = await Store.open(target)
    try:
        summary = []
        for sha, g in out["groups"].items():
            campaign, _ = await load(store, g["target_id"], check_hash=False)
            plan = plan_campaign(campaign, adapter_of=None, allow_over_budget=True)
            res = await results(store, g["target_id"], campaign, plan)
            summary.append({"campaign_id": g["target_id"], "name": g["name"], "spec_sha256": sha,
                            "sources": g["sources"], "trials": sum(1 for r in res if r.outcome != "missing"),
                            "missing": sum(1 for r in res if r.outcome == "missing")})
        await store.audit("eval-merge", "eval_merge", ref=",".join(f"campaign:{c['campaign_id']}" for c in summary),
                          data={"sources": [str(s) for s in sources], "source_chains": out["chains"],
                                "campaigns": [c["campaign_id"] for c in summary]})
    finally:
        await store.close()
    return {"target": str(target), "campaigns": summary}
