"""Helpers shared by the CLI commands: settings, opening the store, printing tables and JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from operator_tui.config import CoreSettings, load_settings, read_audit_key
from operator_tui.errors import UserError

T = TypeVar("T")


def settings_from(args: argparse.Namespace) -> CoreSettings:
    return load_settings(args)


async def open_existing_store(settings: CoreSettings) -> Any:
    """Open the store for reading; a missing file is a user error, not a new empty store."""
    from operator_tui.store import Store

    if not settings.db.exists():
        raise UserError(f"no store at {settings.db} (pass --db, or start `operator-tui run` first)")
    return await Store.open(settings.db, audit_key=read_audit_key(settings))


def run_with_store(settings: CoreSettings, body: Callable[[Any], Awaitable[T]], *, create: bool = False) -> T:
    async def main() -> T:
        from operator_tui.store import Store

        store = await (Store.open(settings.db, audit_key=read_audit_key(settings)) if create
                       else open_existing_store(settings))
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_json(value: Any) -> None:
    json.dump(to_jsonable(value), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def short_time(dt: datetime | None) -> str:
    return "-" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> None:
    cells = [[str(c) if c is not None else "-" for c in row] for row in rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in row] for row in cells]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    line = "  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers))
    print(line.rstrip())
    for row in cells:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
