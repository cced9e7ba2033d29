"""An incident from the store turned into the timeline widget's plain data: lanes for the fault,
the ticket, the agent and each action (coloured by its risk tier), a mark per event, and the
fault's active window shaded."""

from __future__ import annotations

from typing import Any

from operator_tui.store.incident import Incident
from widgets import format as fmt
from widgets.incident_timeline import Lane, ShadedWindow, TimelineEvent

TICKET_MARKS = {"opened": ("●", "ticket"), "open": ("↺", "ticket"), "resolved": ("✔", "good"),
                "escalated": ("▲", "bad")}
AGENT_KINDS = {"claimed": ("○", "agent", "claimed by the agent"), "diagnosed": ("◎", "agent", "diagnosed")}
ACTION_MARKS = {
    "proposed": ("·", "muted"), "validated": ("·", "muted"), "awaiting_approval": ("?", "approval"),
    "approved": ("✔", "approval"), "rejected": ("✘", "bad"), "scheduled": ("…", "muted"),
    "executing": ("▶", ""), "succeeded": ("✔", "good"), "failed": ("✘", "bad"), "cancelled": ("✘", "muted"),
    "expired": ("✘", "muted"), "unknown": ("?", "bad"),
}


def _human(actor: str) -> bool:
    return actor.startswith("human:")


def timeline_data(incident: Incident | dict[str, Any]) -> tuple[list[TimelineEvent], list[ShadedWindow], list[Lane]]:
    inc = incident if isinstance(incident, Incident) else Incident.model_validate(incident)
    ticket_lane = f"ticket #{inc.ticket.id}"
    lanes = [Lane("fault", "fault"), Lane(ticket_lane, "ticket"), Lane("agent", "agent")]
    names = {f"action:{a.id}": f"#{a.id} {a.name}" for a in inc.actions}
    lanes += [Lane(names[f"action:{a.id}"], a.risk) for a in inc.actions]
    events: list[TimelineEvent] = []
    for e in inc.events:
        if e.source == "fault":
            if e.kind == "injected":
                events.append(TimelineEvent(e.at, "fault", f"injected: {e.summary} (by {e.actor})", "fault", "✖"))
            else:
                ok = e.kind != "revert_failed"
                events.append(TimelineEvent(e.at, "fault", (f"{e.kind}: " if ok else "could not revert: ")
                                            + fmt.clip(e.summary, 100), "muted" if ok else "bad", "✔" if ok else "✘"))
        elif e.source == "ticket" and e.kind in AGENT_KINDS:
            mark, tone, text = AGENT_KINDS[e.kind]
            if e.kind == "diagnosed":
                conf = e.detail.get("confidence")
                text = f"diagnosed ({fmt.percent(conf)} confident): " if conf is not None else "diagnosed: "
                text += fmt.clip(e.summary, 100)
            elif e.detail.get("attempt"):
                text += f" (attempt {e.detail['attempt']})"
            events.append(TimelineEvent(e.at, "agent", text, tone, mark))
        elif e.source == "ticket":
            mark, tone = TICKET_MARKS.get(e.kind, ("•", "ticket"))
            text = {"open": "reopened for another attempt"}.get(e.kind, e.kind)
            by = f" by {e.actor}" if e.kind in ("resolved", "escalated") else ""
            events.append(TimelineEvent(e.at, ticket_lane, f"{text}{by}: {fmt.clip(e.summary, 100)}"
                                        if e.summary else f"{text}{by}", tone, mark))
        elif e.source == "action":
            mark, tone = ACTION_MARKS.get(e.kind, ("•", ""))
            state = e.kind.replace("_", " ")
            params = fmt.params(e.detail.get("params"), 40)
            if e.kind == "proposed":
                text = f"proposed by {e.actor}: {e.detail.get('name')} {params} [{e.risk}]"
            elif _human(e.actor):
                text = f"{state} by {e.actor}" + (f": {fmt.clip(e.summary, 90)}" if e.kind == "rejected" else "")
            else:
                text = f"{state}: {fmt.clip(e.summary, 90)}" if e.summary else state
            events.append(TimelineEvent(e.at, names.get(e.ref, e.ref), text, tone, mark))
        elif e.source == "verification":
            holds = e.kind == "holds"
            events.append(TimelineEvent(e.at, "agent", f"verified: {fmt.clip(e.summary, 100)}",
                                        "good" if holds else "bad", "✔" if holds else "✘"))
    windows = [ShadedWindow(f.injected_at, f.reverted_at,
                            f"fault #{f.id} {f.record.get('detail') or f.kind}") for f in inc.faults]
    used = {e.lane for e in events}
    return events, windows, [lane for lane in lanes if lane.name in used]
