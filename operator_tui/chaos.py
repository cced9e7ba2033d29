"""Faults for any subject, injected through its chaos module and recorded in the store with
exactly what undoes them; the CLI and the console's palette both go through here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from operator_tui.errors import UserError
from operator_tui.store import Store
from operator_tui.store.faults import DONE
from operator_tui.store.models import FaultRow
from subjects import registry
from subjects.base import FaultRecord


class ChaosRefused(UserError):
    pass


async def inject_fault(store: Store, subject: str, options: dict[str, Any], kind: str, target: str | None,
                       params: dict[str, Any], actor: str, run_id: int | None = None) -> FaultRow:
    module = registry.chaos(subject)
    try:
        record = await module.inject(options, kind, target, params)
    except (ValueError, module.ChaosError) as e:
        await store.audit(actor, "fault.refused", "", {"subject": subject, "kind": kind, "target": target,
                                                        "error": str(e)}, run_id)
        raise ChaosRefused(str(e)) from e
    return await store.record_fault(record, actor, run_id)


async def revert_faults(store: Store, rows: list[FaultRow], options_for: Callable[[str], dict[str, Any]],
                        actor: str) -> list[tuple[FaultRow, bool, str]]:
    """Revert each active fault with what its record says; (row, reverted, what happened) each."""
    out = []
    for row in rows:
        if row.status in DONE:
            out.append((row, True, f"already {row.status} at {row.reverted_at}"))
            continue
        record = FaultRecord.model_validate(row.record)
        module = registry.chaos(record.subject)
        try:
            detail = await module.revert(options_for(record.subject), record)
        except (ValueError, module.ChaosError, UserError) as e:
            await store.mark_fault_reverted(row.id, str(e), actor, ok=False)
            out.append((row, False, str(e)))
            continue
        await store.mark_fault_reverted(row.id, detail, actor)
        out.append((row, True, detail))
    return out


def faults_of_lab(rows: list[FaultRow], subject: str, lab_dir: Path) -> list[FaultRow]:
    """The faults among `rows` that act on the subject's lab in `lab_dir` (ask before it goes down)."""
    module = registry.chaos(subject)
    return [r for r in rows if r.subject == subject and module.of_lab(lab_dir, FaultRecord.model_validate(r.record))]
