"""One trial: its phases on a bar; its timeline (the incident-timeline widget the ticket detail
uses) with the fault window shaded (to the edge when never reverted), the workload's good and bad
requests and p99 as bars, the oracle's clean/dirty strip, and marks for the ticket, the diagnosis,
each action (coloured by its risk tier), approvals, mitigation and the kill switch; beside it the
scores, the agent's diagnosis with the alternatives it weighed and, for a Claude variant, its
tool calls. A trial still running is read again until it ends."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static
from textual.worker import Worker

from eval.clock import NS
from screens.base import ConsoleScreen
from screens.eval_poll import Poller
from screens.incident import timeline_data
from screens.messages import EvalTrialLoaded
from screens.state import ConsoleState
from screens.tickets import _md
from widgets import format as fmt
from widgets.incident_timeline import IncidentTimeline, Lane, ShadedWindow, TimelineEvent, ValueLane
from widgets.phase_bar import Phase, PhaseBar

OUTCOME_MARKUP = {"success": "$success", "failure": "$error", "timeout": "$error", "harmful": "$error",
                  "invalid": "$warning", "skipped": "$text-muted"}


def trial_timeline(view: Any) -> tuple[list[TimelineEvent], list[ShadedWindow], list[Lane], list[ValueLane]]:
    """The trial as the timeline widget's data, on the trial's clock."""
    events: list[TimelineEvent] = []
    windows: list[ShadedWindow] = []
    lanes = [Lane("fault", "fault")]
    at = view.at
    for f in view.faults:
        what = f"{f.kind}" + (f" on {f.target_entity}" if f.target_entity else "")
        start = at(f.applied_ns)
        if start is None:
            if f.status == "not_landed":
                events.append(TimelineEvent(at(f.invoke_ns) or view.origin, "fault", f"{what}: did not land",
                                            "bad", "✘"))
            continue
        events.append(TimelineEvent(start, "fault", f"injected: {what}", "fault", "✖"))
        end = at(f.reverted_ns)
        if end is not None:
            ok = f.status == "revert_verified"
            events.append(TimelineEvent(end, "fault", f"reverted: {what}" + ("" if ok else f" ({f.status})"),
                                        "muted" if ok else "bad", "✔" if ok else "✘"))
        windows.append(ShadedWindow(start, end, f"{what} ({f.status})"))
    for incident in view.incidents:
        inc_events, _, inc_lanes = timeline_data(incident)  # the trial's faults come from the harness's record
        events += inc_events
        lanes += [lane for lane in inc_lanes if lane.name not in {x.name for x in lanes}]
    m = view.metrics
    t0 = m.get("t0_s")
    if t0 is not None and m.get("ttm_s") is not None and not m.get("ttm_censored"):
        events.append(TimelineEvent(at((t0 + m["ttm_s"]) * NS), "harness", f"mitigated: {m.get('reason') or ''}",
                                    "good", "✔"))
    for e in view.events:
        payload = e.get("payload") or {}
        if e["kind"] == "quiesce":
            latency = payload.get("latency_ms") or 0.0
            held = payload.get("held")
            events.append(TimelineEvent(at(e["t_mono_ns"] - latency * 1e6), "harness",
                                        f"kill switch engaged (held {'in ' + str(latency) + ' ms' if held else 'NOT'})",
                                        "approval" if held else "bad", "⏻"))
        elif e["kind"] == "observe_end" and "mitigated" not in str(payload.get("why", "")):
            events.append(TimelineEvent(at(e["t_mono_ns"]), "harness", f"observation ended: {payload.get('why')}",
                                        "bad", "■"))
    lanes.append(Lane("harness", "agent"))
    buckets = view.buckets
    values = []
    if buckets:
        values += [
            ValueLane("good", tuple((at(b["t_bucket_ns"]), float(b["ok"])) for b in buckets), "good", unit="/s"),
            ValueLane("bad", tuple((at(b["t_bucket_ns"]), float(b["fail"] + b.get("indeterminate", 0)))
                                   for b in buckets), "bad", unit="/s"),
            ValueLane("p99", tuple((at(b["t_bucket_ns"]), b["lat_p99_ms"]) for b in buckets), "ticket", unit=" ms"),
        ]
    if view.oracle:
        values.append(ValueLane("oracle", tuple((at(t), 1.0 if ok else 0.0) for t, ok in view.oracle), kind="state"))
    events = [e for e in events if e.at is not None]
    events.sort(key=lambda e: e.at)
    used = {e.lane for e in events}
    return events, windows, [lane for lane in lanes if lane.name in used], values


def phases_of(view: Any) -> list[Phase]:
    return [Phase(p["phase"], float(p["start_s"]), None if p.get("end_s") is None else float(p["end_s"]), p.get("ok"))
            for p in view.phases]


def _secs(value: Any, censored: Any = False) -> str:
    if value is None:
        return "-"
    return f"> {value:.1f} s (censored)" if censored else f"{value:.2f} s"


def trial_markdown(view: Any) -> str:
    t, m = view.trial, view.metrics
    outcome = t.outcome or f"running ({t.phase})"
    if t.outcome == "success" and m.get("self_healed"):
        outcome = "success (self-healed: the fault ended by itself)"
    lines = [f"## Trial {t.id} · {_md(outcome)}", "",
             f"{_md(view.scenario)} ({_md(view.subject)}) · variant **{_md(view.variant)}** ({view.variant_kind}"
             + (f", {_md(view.diagnoser)}" if view.diagnoser else "") + f") · seed {t.seed} · slot {t.slot} · "
             f"attempt {t.attempt} · run {t.run_id}", ""]
    if m.get("reason"):
        lines += [f"> {_md(m['reason'])}", ""]
    if t.error_json:
        err = t.error_json
        lines += [f"**Invalid**: {_md(err.get('phase') or err.get('type') or '')}: "
                  f"{_md(err.get('reason') or err.get('message') or '')}", ""]
    if m:
        acts = m.get("actions") or {}
        av = m.get("availability") or {}
        agent = m.get("agent") or {}
        lines += ["| score | value |", "|---|---|",
                  f"| TTD | {_secs(m.get('ttd_s'), m.get('ttd_censored'))} |",
                  f"| TTM | {_secs(m.get('ttm_s'), m.get('ttm_censored'))} |",
                  f"| actions | {acts.get('executed', 0)} executed {_md(fmt.params(acts.get('by_risk'), 40))}: "
                  f"{_md(', '.join(acts.get('names') or []) or '-')} |",
                  f"| availability | {fmt.percent(av.get('success_ratio'), 1)} ok, {av.get('seconds_outside_slo', '-')} "
                  f"s outside the SLO, worst p99 {fmt.ms(av.get('worst_p99_ms'))} |",
                  f"| agent | {agent.get('sessions', 0)} sessions, {agent.get('turns', 0)} turns, "
                  f"{agent.get('input_tokens', 0)}+{agent.get('output_tokens', 0)} tokens |", ""]
    if not view.sessions:
        lines += ["## Diagnosis", "", "_No agent session_" + (" (the baseline has no agent)."
                                                             if view.variant_kind == "baseline" else "."), ""]
    for s in view.sessions:
        d = s.get("diagnosis") or {}
        conf = d.get("confidence")
        lines += [f"## Diagnosis · ticket #{s['ticket_id']} · {_md(s['diagnoser'])} attempt {s['attempt']}"
                  + (f" ({fmt.percent(conf)} confident)" if conf is not None else ""), ""]
        if not d:
            lines += [f"_No diagnosis ({_md(s.get('outcome') or s.get('status'))})._", ""]
        else:
            lines += [_md(d.get("root_cause", "")), ""]
            alternatives = d.get("alternatives") or []
            if alternatives:
                lines += ["### Alternatives weighed", ""]
                for a in alternatives:
                    verdict = a.get("verdict", "")
                    mark = "✔" if verdict == "chosen" else "✘"
                    lines.append(f"- {mark} **{_md(a.get('cause', ''))}**: {_md(fmt.clip(verdict, 120))}")
                lines.append("")
            recommended = d.get("recommended_actions") or []
            if recommended:
                lines += ["### Recommended", ""]
                lines += [f"{i}. `{a.get('name')}` {_md(fmt.params(a.get('params'), 60))}"
                          for i, a in enumerate(recommended, start=1)]
                lines.append("")
        v = s.get("verification")
        if v:
            lines += [f"**Verification**: {'✔ holds' if v.get('holds') else '✘ not fixed'}: "
                      f"{_md(fmt.clip(v.get('summary', ''), 160))}", ""]
        calls = s.get("tool_calls") or []
        if calls or view.diagnoser == "claude":
            lines += [f"### Tool calls ({len(calls)})", ""]
            if calls:
                lines += ["| t | tool | input |", "|---|---|---|"]
                for c in calls:
                    offset = (c["at"] - view.origin).total_seconds() if view.origin else 0.0
                    lines.append(f"| +{offset:.1f}s | `{_md(c['name'])}` | {_md(fmt.clip(str(c['input'] or ''), 70))} |")
            else:
                lines.append("_none_")
            lines.append("")
    return "\n".join(lines)


class TrialScreen(ConsoleScreen):
    MODE = "eval"

    BINDINGS = [Binding("escape,backspace", "back", "Back to the campaign")]

    def __init__(self, trial_id: int) -> None:
        super().__init__()
        self.trial_id = trial_id
        self.view: Any = None
        self.poller = Poller(self, self._read, lambda: self.app.poll_interval, f"eval-trial-{trial_id}")

    def compose_body(self) -> ComposeResult:
        from textual.widgets import Markdown  # markdown-it is slow to import: only when a trial is opened

        with Vertical(id="trial-body"):
            yield Static(f"trial {self.trial_id}: loading…", id="trial-title")
            yield PhaseBar(id="trial-phases")
            with Horizontal(id="trial-main"):
                with VerticalScroll(id="trial-side"):
                    yield IncidentTimeline(id="trial-timeline")
                with VerticalScroll(id="trial-doc"):
                    yield Markdown("loading…", id="trial-markdown")

    def on_mount(self) -> None:
        self.query_one("#trial-side").border_title = "Timeline (trial clock)"
        self.query_one("#trial-doc").border_title = "Scores and the agent"
        self.query_one("#trial-phases").border_title = "Phases"
        self.poller.start()

    def on_unmount(self) -> None:
        self.poller.stop()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.poller.finished(event)

    def render_body(self, state: ConsoleState, what: str) -> None:
        pass

    async def _read(self) -> None:
        from eval.browse import trial_view

        store = self.host.store
        if store is None or (self.view is not None and self.view.ended):
            return  # an ended trial does not change: read once
        try:
            view = await trial_view(store, self.trial_id)
        except Exception as e:
            self.post_message(EvalTrialLoaded(self.trial_id, None, f"{type(e).__name__}: {e}"))
            return
        self.post_message(EvalTrialLoaded(self.trial_id, view, "" if view is not None else
                                          f"no trial {self.trial_id} in this store"))

    @on(EvalTrialLoaded)
    def _loaded(self, message: EvalTrialLoaded) -> None:
        if message.trial_id != self.trial_id:
            return
        title = self.query_one("#trial-title", Static)
        if message.view is None:
            title.update(f"[b]trial {self.trial_id}[/]: [b $error]{message.error}[/]")
            return
        view = self.view = message.view
        t = view.trial
        outcome = t.outcome or f"running: {t.phase}"
        style = OUTCOME_MARKUP.get(t.outcome or "", "$warning")
        faults = ", ".join(f"{f.kind} {f.target_entity or ''}".strip() for f in view.faults) or "no fault"
        title.update(f"[b]trial {t.id}[/] · campaign {t.campaign_id} · {view.scenario} · [b]{view.variant}[/] · "
                     f"seed {t.seed_index} · {faults} · [b {style}]{outcome}[/]   [dim]escape: back[/]")
        latest = [b["t_bucket_ns"] for b in view.buckets[-1:]] + [t for t, _ in view.oracle[-1:]] + \
            [e["t_mono_ns"] for e in view.events[-1:]]
        now_s = None if view.ended else max([p.get("end_s") or p["start_s"] for p in view.phases]
                                            + [t / NS for t in latest] + [0.0])
        self.query_one(PhaseBar).show(phases_of(view), now_s)
        events, windows, lanes, values = trial_timeline(view)
        self.query_one(IncidentTimeline).show(events, windows, lanes, None, values)
        self.query_one("#trial-markdown").update(trial_markdown(view))

    def action_back(self) -> None:
        self.dismiss()
