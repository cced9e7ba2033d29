"""A fault's revert always ends recorded: whatever an adapter's undo raises (a firewall, tmpfs,
PD or Docker error, not only the ValueError/RuntimeError of the contract), the fault ends
`revert_failed` with the error in its record, never stuck in `reverting` (which the integrity
count, `eval cleanup` and the browser would read as still in progress)."""

from __future__ import annotations

from typing import Any

from eval.trial import revert_one
from operator_tui.store import Store
from subjects.evaluation import Verdict
from subjects.netfault import NetFaultError


class UndoThatFails:
    """The two calls revert_one makes; the undo fails the way an iptables call does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def revert_fault(self, undo: dict[str, Any]) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise NetFaultError(f"iptables -D {undo['chain']}: Bad rule (does a matching rule exist in that chain?)")
        return f"chain {undo['chain']} removed"

    async def fault_reverted(self, undo: dict[str, Any]) -> Verdict:
        return Verdict(ok=self.calls > self.failures, detail="chain gone")


async def planned_fault(store: Store) -> int:
    campaign = await store.create_campaign("revert-record")
    scenario = await store.add_scenario(campaign, "s", "ratelimiter")
    variant = await store.add_variant(campaign, "baseline", "baseline", {})
    trial = await store.create_trial(campaign, scenario, variant, subject="ratelimiter", seed=1, ident="t1")
    return await store.add_eval_fault(trial.id, 1, "partition", "node:n2", {}, ["node:n2"], {"chain": "OPEVt1"})


async def fault_row(store: Store, fault_id: int) -> Any:
    row = await store.db.fetchone("SELECT trial_id FROM eval_faults WHERE id = ?", (fault_id,))
    return next(f for f in await store.eval_faults(row["trial_id"]) if f.id == fault_id)


async def test_an_undo_that_keeps_failing_ends_revert_failed_with_its_error(store: Store) -> None:
    fault_id = await planned_fault(store)
    adapter = UndoThatFails(failures=1000)
    ok = await revert_one(store, adapter, fault_id, {"chain": "OPEVt1"}, lambda: 1, deadline_s=1.2)  # type: ignore[arg-type]
    assert ok is False and adapter.calls >= 2
    fault = await fault_row(store, fault_id)
    assert fault.status == "revert_failed"
    assert fault.verify_json["revert"]["detail"].startswith("NetFaultError: iptables -D OPEVt1")
    assert fault.verify_json["revert"]["attempts"] == adapter.calls


async def test_an_undo_that_fails_once_is_tried_again_and_verified(store: Store) -> None:
    fault_id = await planned_fault(store)
    adapter = UndoThatFails(failures=1)
    ok = await revert_one(store, adapter, fault_id, {"chain": "OPEVt1"}, lambda: 1, deadline_s=10)  # type: ignore[arg-type]
    assert ok is True and adapter.calls == 2
    fault = await fault_row(store, fault_id)
    assert fault.status == "revert_verified" and fault.verify_json["revert"]["detail"] == "chain OPEVt1 removed"
