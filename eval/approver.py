"""The harness approver: the campaign's stand-in for the human who answers approval requests.

A variant with an approval policy (`approval: risky | all`) needs someone to answer, or every
gated action waits until it expires. The approver watches one trial's run (never another's) for
actions awaiting approval and answers each after a delay drawn from the variant's `delay_s`:
`approve`, `reject`, `mixed` (approve with probability `approve_fraction`) or `expire` (never
answers). Its random stream is derived from the trial seed, so the same trial gets the same
decisions and delays whichever slot runs it. It decides through the same compare-and-set as a
human (`operator_tui.actions.decisions`), so every decision is audited as `eval-approver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from eval.spec import derive_seed

log = logging.getLogger("eval.approver")

ACTOR = "eval-approver"
POLL_S = 0.2


class Approver:
    def __init__(self, store: Any, run_id: int, config: dict[str, Any], seed: int) -> None:
        self.store, self.run_id, self.config = store, run_id, config
        self.rng = random.Random(derive_seed(seed, "approver"))
        self.decisions: list[dict[str, Any]] = []
        self._seen: set[int] = set()
        self._pending: set[asyncio.Task[None]] = set()

    def _draw(self) -> tuple[str, float]:
        lo, hi = self.config.get("delay_s") or (0.0, 0.0)
        delay = self.rng.uniform(float(lo), float(hi))
        decision = self.config.get("decision", "approve")
        if decision == "mixed":
            decision = "approve" if self.rng.random() < float(self.config.get("approve_fraction") or 0.0) else "reject"
        return decision, delay

    async def _decide(self, action_id: int, decision: str, delay: float) -> None:
        from operator_tui.actions import decisions

        await asyncio.sleep(delay)
        try:
            if decision == "approve":
                await decisions.approve(self.store, action_id, ACTOR)
            else:
                await decisions.reject(self.store, action_id, ACTOR, "harness approver (seeded)")
            self.decisions.append({"action_id": action_id, "decision": decision, "delay_s": round(delay, 3)})
        except decisions.DecisionError as e:  # cancelled, expired or decided meanwhile
            self.decisions.append({"action_id": action_id, "decision": "too_late", "detail": str(e)})

    async def run(self) -> None:
        """Answer requests until cancelled."""
        try:
            while True:
                for a in await self.store.list_actions(states=["awaiting_approval"], run_id=self.run_id):
                    if a.id in self._seen:
                        continue
                    self._seen.add(a.id)
                    decision, delay = self._draw()
                    if decision == "expire":
                        self.decisions.append({"action_id": a.id, "decision": "expire"})
                        continue
                    task = asyncio.create_task(self._decide(a.id, decision, delay))
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
                await asyncio.sleep(POLL_S)
        finally:
            for t in list(self._pending):
                t.cancel()
            for t in list(self._pending):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for d in self.decisions:
            counts[d["decision"]] = counts.get(d["decision"], 0) + 1
        return {"requests": len(self._seen), **counts}
