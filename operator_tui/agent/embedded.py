"""The embedded diagnoser: deterministic, offline, a differential diagnosis over runbooks.

For the ticket's invariant, every candidate cause in the subject's runbook is scored against the
evidence (each signal probed on the current observation and history): supporting readings add
their weight, contradicting ones subtract it. The best-scoring cause is chosen; the others are
rejected with the readings that tell against them. The chosen cause's remedy binds the action
parameters from the evidence. Supporting evidence that is looked for and found absent counts half
against the cause (an expected finding that is missing is evidence too); unknown data (a signal
that cannot tell) counts for nothing.
"""

from __future__ import annotations

from operator_tui.agent.context import AgentContext
from operator_tui.agent.diagnosis import Alternative, Diagnosis, EvidenceItem, RecommendedAction
from subjects.base import Cause, Finding, RunbookContext

NAME = "embedded"


def score_cause(cause: Cause, ctx: RunbookContext) -> tuple[float, list[Finding], list[Finding]]:
    supporting = [sig.probe(ctx) for sig in cause.supports]
    contradicting = [sig.probe(ctx) for sig in cause.contradicts]
    score = cause.prior
    for sig, f in zip(cause.supports, supporting, strict=True):
        if f.present is True:
            score += sig.weight
        elif f.present is False:
            score -= sig.weight / 2
    for sig, f in zip(cause.contradicts, contradicting, strict=True):
        if f.present is True:
            score -= sig.weight
    return score, supporting, contradicting


class EmbeddedDiagnoser:
    name = NAME

    async def diagnose(self, context: AgentContext, record: object = None) -> Diagnosis:
        runbook = context.runbook
        ctx = context.runbook_context()
        if runbook is None or not runbook.causes:
            return Diagnosis(
                summary=context.ticket.summary,
                root_cause=f"no runbook covers {context.ticket.invariant}; a human must look",
                confidence=0.0, escalate=True,
                evidence=[EvidenceItem(signal=k, reading=f"{k}={v}", value=v if isinstance(v, int | float | str)
                                       else None) for k, v in context.ticket.evidence.items()],
            )
        scored = [(score_cause(c, ctx), c) for c in runbook.causes]
        # Highest score wins; on a tie the runbook's order (most common cause first) decides.
        order = sorted(range(len(scored)), key=lambda i: (-scored[i][0][0], i))
        best_index = order[0]
        (best_score, best_support, _), best = scored[best_index]

        evidence: list[EvidenceItem] = []
        seen: set[str] = set()
        for (_, support, against), _cause in scored:
            for f in (*support, *against):
                if f.signal not in seen and f.present is not None:
                    seen.add(f.signal)
                    evidence.append(EvidenceItem(signal=f.signal, reading=f.reading, value=f.value))

        alternatives = []
        for i in order:
            (score, support, against), cause = scored[i]
            pro = [f.reading for f in support if f.present]
            con = [f.reading for f in against if f.present]
            if i == best_index:
                verdict = "chosen"
            else:
                missing = [f.reading for f in support if f.present is False]
                why = con or missing or ["weaker evidence"]
                verdict = f"rejected: {'; '.join(why[:2])} (score {score:.1f} vs {best_score:.1f})"
            alternatives.append(Alternative(cause=cause.title, supporting=pro, contradicting=con, verdict=verdict,
                                            score=round(score, 2)))

        steps = best.remedy(ctx)
        actions = [RecommendedAction(name=s.name, params=s.params, reason=s.reason, delay_s=s.delay_s) for s in steps]
        runner_up = scored[order[1]][0][0] if len(order) > 1 else best_score - 2.0
        margin = best_score - runner_up
        confidence = round(max(0.05, min(0.97, 0.5 + margin / 4)), 2)
        pro = [f.reading for f in best_support if f.present]
        outcome = best.expected_outcome or f"{context.ticket.invariant} holds again for {context.ticket.entity}"
        return Diagnosis(
            summary=f"{context.ticket.summary}: most likely {best.title.lower()}",
            root_cause=best.title + (f" ({'; '.join(pro[:3])})" if pro else ""),
            evidence=evidence,
            alternatives=alternatives,
            recommended_actions=actions,
            expected_outcome=outcome if actions else (best.remedy_text or "a human decides what to do"),
            risks=best.risks,
            confidence=confidence,
            escalate=not actions,
        )
