"""The console: a Textual app over one runtime, with the monitor, the agent and a store poller as
workers in the same process.

    workers (monitor tick, agent step, engine change, store poll) --post--> messages
        --> OperatorApp folds them into ConsoleState --> the visible screen renders it
    screens and the approval dialog --intent/decision--> OperatorApp --> decisions/policy (store + audit)

Workers never touch widgets; a crashed worker is shown and restarted; rendering pauses while a
modal is open (the state keeps up, the screen catches up when it closes). The store is opened
when the app starts (with the embedded simulator, when there is no --pd) and closed when it quits.
"""

# ruff: noqa: E402  (the garbage collector is paused before the heavy imports below)
from __future__ import annotations

import gc
import sys

# Startup allocates hundreds of thousands of objects (Textual, pydantic, the screens) and the
# cyclic GC would walk them again and again: ~100 ms of a first frame that must come under a
# second. It is paused from here to the first frame (then everything allocated so far is frozen
# out of future collections). Not under pytest, where this module is imported long before any
# app runs.
_GC_PAUSED = "pytest" not in sys.modules and gc.isenabled()
if _GC_PAUSED:
    gc.disable()

import argparse
import asyncio
import dataclasses
import importlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from operator_tui.config import CoreSettings
from operator_tui.errors import UserError
from screens.actions import ActionsScreen
from screens.approval import ApprovalDecision, ApprovalModal
from screens.audit import AuditScreen
from screens.base import MIN_HEIGHT, MIN_WIDTH, ConsoleScreen
from screens.cluster import ClusterScreen
from screens.commands import ChaosKind, console_commands
from screens.demo import DemoScreen
from screens.eval_campaigns import EvalScreen
from screens.messages import (
    ActionChanged,
    AgentActivity,
    ApprovalContext,
    CancelAction,
    ClusterUpdate,
    ConsoleNote,
    ConsoleStarted,
    DemoKey,
    DemoUpdate,
    OpenTicket,
    ReviewAction,
    StoreUpdate,
)
from screens.state import ConsoleState
from screens.tickets import TicketDetailScreen, TicketsScreen

log = logging.getLogger("operator_tui.console")

SCREENS_DIR = Path(__file__).resolve().parent.parent / "screens"
SUPERVISED = ("monitor", "agent", "poller")
TICKETS_REFRESH_S = 2.0
WORKLOAD_WINDOW_S = 300.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def resume_gc() -> None:
    """End the startup pause of the garbage collector (see the top of this module)."""
    global _GC_PAUSED
    if _GC_PAUSED:
        _GC_PAUSED = False
        gc.freeze()
        gc.enable()


def human_actor() -> str:
    """The person at the console, as the audit log names them (policy and the store load lazily:
    they are not needed for the first frame)."""
    from operator_tui.policy import human_actor as actor

    return actor()


class OperatorApp(App[int]):
    """The operator console. Build it with `make_app`."""

    TITLE = "operator"
    CSS_PATH = [SCREENS_DIR / name for name in ("console.tcss", "cluster.tcss", "tickets.tcss", "approval.tcss",
                                                "actions.tcss", "audit.tcss", "demo.tcss", "eval.tcss")]
    MODES = {"cluster": ClusterScreen, "tickets": TicketsScreen, "actions": ActionsScreen, "audit": AuditScreen,
             "eval": EvalScreen}
    DEFAULT_MODE = "cluster"
    HORIZONTAL_BREAKPOINTS = [(0, "-too-narrow"), (MIN_WIDTH, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-too-short"), (MIN_HEIGHT, "-short"), (40, "-tall")]
    BINDINGS = [
        Binding("ctrl+k", "killswitch", "Kill switch", priority=True, id="killswitch",
                tooltip="Engage or release the kill switch (every process on the store honours it)"),
        Binding("0", "show('demo')", "Demo", id="demo"),
        Binding("1", "show('cluster')", "Cluster", id="cluster"),
        Binding("2", "show('tickets')", "Tickets", id="tickets"),
        Binding("3", "show('actions')", "Actions", id="actions"),
        Binding("4", "show('audit')", "Audit", id="audit"),
        Binding("5", "show('eval')", "Eval", id="eval"),
        Binding("p", "review_approvals", "Approvals", id="approvals"),
        Binding("ctrl+p", "command_palette", "Commands", show=False, priority=True, id="palette"),
        Binding("question_mark", "command_palette", "Commands", show=False, id="palette-help"),
        Binding("q", "quit", "Quit", id="quit"),
        # In a demo ctrl+c quits from anywhere, the approval dialog included (a presenter's reflex).
        Binding("ctrl+c", "demo_quit", "Quit", show=False, priority=True, id="demo-quit"),
    ]

    def __init__(self, settings: CoreSettings, *, live: bool = True, open_store: bool = True,
                 clock: Callable[[], datetime] | None = None, cursor_blink: bool = True,
                 poll_interval: float = 0.5, restart_delay: float = 2.0, demo: Any = None,
                 mode: str | None = None, browse_campaign: int | None = None) -> None:
        self.demo = demo  # DemoOptions: play these chapters over the console
        self.browse_campaign = browse_campaign  # `eval browse ID`: the Eval screen opens this campaign
        if demo is not None:
            self.DEFAULT_MODE = "demo"  # before App.__init__, which opens the default mode
        elif mode is not None:
            self.DEFAULT_MODE = mode
        super().__init__()
        if demo is not None:
            self.add_mode("demo", DemoScreen)
        self.settings = settings
        self.live = live
        self.open_store = open_store or live
        self.cursor_blink = cursor_blink
        self.poll_interval = poll_interval
        self.restart_delay = restart_delay
        self.state = ConsoleState(subject=settings.subject, store_path=str(settings.db), clock=clock or _utcnow,
                                  phase="starting" if self.open_store else "offline", demo_mode=demo is not None)
        self.store: Any = None
        self.runtime: Any = None
        self.operator: Any = None  # the OperatorLoop: monitor, engine, agent
        self.chaos_kinds: list[ChaosKind] = []
        self.approval: ApprovalModal | None = None
        self.restarts: dict[str, int] = {}
        self.created = time.perf_counter()
        self.first_frame_ms: float | None = None
        self._series: deque[tuple[float, float | None, float | None, float | None]] = deque(
            maxlen=int(WORKLOAD_WINDOW_S / max(0.05, settings.interval)) + 2)
        self._deferred: set[int] = set()
        self._decided: set[int] = set()
        self._tickets_dirty = True
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._store_opened: asyncio.Event | None = None
        self._stopping = False
        self._shut_down = False
        self.director: Any = None  # the demo's Director, while a demo plays
        self.demo_lab: Any = None  # the demo's own lab (DemoLab)
        self.demo_policy: dict[str, Any] = {}  # the store's mode and approval before the demo set its own

    # -- lifecycle ----------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._store_opened = asyncio.Event()
        handlers = {signal.SIGTERM: self._on_sigterm, signal.SIGINT: self._on_sigterm, signal.SIGHUP: self._on_sighup}
        for signum, handler in handlers.items():
            try:
                asyncio.get_running_loop().add_signal_handler(signum, handler)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests) or no signals here
        if self.open_store and not self.live:
            self.run_worker(self._start_store, name="startup", group="startup", exit_on_error=False)

    def on_ready(self) -> None:
        resume_gc()
        self.first_frame_ms = (time.perf_counter() - self.created) * 1000
        log.info("console: first frame %.0f ms after the app was built", self.first_frame_ms)
        if self.demo is not None and self.open_store:  # its chapters say when the lab (and the runtime) start
            self._start_demo()
        elif self.live:  # after the first frame: the runtime's imports and the simulator take a while
            self.run_worker(self._start_live, name="startup", group="startup", exit_on_error=False)

    def _on_sigterm(self) -> None:
        async def stop() -> None:
            await self.shutdown("interrupted")
            self.exit(0)

        self.run_worker(stop, group="quit", exit_on_error=False)

    def _on_sighup(self) -> None:
        """The terminal went away: close the run and the store, then leave at once (Textual's own
        exit would wait forever to restore a terminal that no longer exists)."""
        async def hang_up() -> None:
            try:
                await self.shutdown("interrupted")
            finally:
                logging.shutdown()
                os._exit(128 + signal.SIGHUP)

        self.run_worker(hang_up, group="quit", exit_on_error=False)

    async def _start_live(self) -> None:
        # Imported in a thread, so the first frame is drawn and the screen stays live meanwhile.
        OperatorLoop = (await asyncio.to_thread(importlib.import_module, "operator_tui.loop")).OperatorLoop
        Runtime = (await asyncio.to_thread(importlib.import_module, "operator_tui.runtime")).Runtime
        self.state.phase_detail = f"connecting to {self.settings.subject}…"
        self._redraw("all")
        try:
            runtime = await Runtime.open(self.settings, "demo" if self.demo is not None else "console",
                                         allow_embedded=True)
        except UserError as e:
            self.exit(None, return_code=e.exit_code, message=f"operator-tui: error: {e}")
            return
        if self._stopping:  # quit while starting: shutdown() waited for this worker
            await runtime.close("interrupted")
            return
        self.runtime = runtime
        self.store = runtime.store
        self.chaos_kinds = await asyncio.to_thread(load_chaos_kinds, self.settings.subject)
        if self.settings.agent == "claude":
            # The SDK takes about a second to import: in a thread now, not on the loop at the first diagnosis.
            await asyncio.to_thread(preload, "operator_tui.agent.factory", "operator_tui.agent.claude", "anthropic")
        try:
            self.operator = OperatorLoop.build(runtime, on_tick=self._on_tick, on_agent_event=self._on_agent_event,
                                               on_action=self._on_action)
        except ValueError as e:  # a configuration that cannot work (e.g. the Claude shell without bwrap)
            self.exit(None, return_code=2, message=f"operator-tui: error: {e}")
            return
        await self.operator.engine.start()
        self.post_message(ConsoleStarted(runtime.run_id, self.settings.subject, runtime.subject.display,
                                         str(self.settings.db), runtime.endpoint))

    async def _start_store(self) -> None:
        from operator_tui.config import read_audit_key
        from operator_tui.store import Store

        try:
            self.store = await Store.open(self.settings.db, audit_key=read_audit_key(self.settings))
        except UserError as e:
            self.exit(None, return_code=e.exit_code, message=f"operator-tui: error: {e}")
            return
        self._store_opened.set()
        self.post_message(ConsoleStarted(None, self.settings.subject, self.settings.subject, str(self.settings.db)))

    @on(ConsoleStarted)
    def _started(self, message: ConsoleStarted) -> None:
        s = self.state
        s.run_id, s.subject, s.subject_display = message.run_id, message.subject, message.subject_display
        s.store_path, s.endpoint = message.store_path, message.endpoint
        s.phase = "running"
        s.phase_detail = "waiting for the first observation…"
        if self.live:
            s.add_feed("console", f"run {message.run_id}: watching {message.subject_display}",
                       detail=[f"store {message.store_path}"] + ([f"embedded cluster at {message.endpoint}"] if message.endpoint else []))
            for name in SUPERVISED:
                if name != "agent" or self.operator.agent is not None:  # --agent none: no agent
                    self._start_worker(name)
        elif self.store is not None:
            self._start_worker("poller")
        self._redraw("all")

    async def shutdown(self, status: str = "completed") -> None:
        """Stop the workers, the engine, the run; close the store. Safe to call more than once."""
        if self._shut_down:
            return
        self._shut_down = True
        self._stopping = True
        if self._stop is not None:
            self._stop.set()
        if self._wake is not None:
            self._wake.set()
        waiting = [w for w in self.workers if w.group in (*SUPERVISED, "startup", "demo") and not w.is_finished]
        for worker in waiting:
            try:
                await asyncio.wait_for(worker.wait(), 10)
            except Exception:  # failed, cancelled or too slow: nothing more to wait for
                worker.cancel()
        try:
            try:
                if self.operator is not None:
                    await self.operator.engine.stop()
            finally:
                if self.demo is not None:
                    await self._demo_wind_down()
        finally:
            try:
                if self.runtime is not None:
                    await self.runtime.close(status)
                elif self.store is not None:
                    if self.demo is not None and self.state.run_id is not None:  # a demo run without a subject
                        await self.store.end_run(self.state.run_id, status)
                    await self.store.close()
            finally:
                if self.demo_lab is not None:
                    await self.demo_lab.stop()
        log.info("console stopped (%s)", status)

    async def on_unmount(self) -> None:
        await self.shutdown()

    async def action_quit(self) -> None:
        self.state.phase = "stopping"
        self._redraw("all")
        await self.shutdown()
        self.exit(0)

    async def action_demo_quit(self) -> None:
        await self.action_quit()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_quit" or (action == "show" and parameters == ("demo",)):
            return self.demo is not None  # outside a demo ctrl+c keeps Textual's meaning (copy, or how to quit)
        return True

    # -- workers --------------------------------------------------------------------------------

    def _start_worker(self, name: str) -> None:
        if self._stopping:
            return
        run = {"monitor": self._run_monitor, "agent": self._run_agent, "poller": self._run_poller}[name]
        self.run_worker(run, name=name, group=name, exclusive=True, exit_on_error=False,
                        description=f"the console's {name}")

    async def _run_monitor(self) -> None:
        await self.operator.monitor.run(self._stop)

    async def _run_agent(self) -> None:
        await self.operator.agent.run(self._stop)

    async def _run_poller(self) -> None:
        from operator_tui.policy import load_policy

        store = self.store
        run_id = self.state.run_id
        last_transition = 0
        actions: list[Any] = []
        awaiting: list[Any] = []
        tickets: list[Any] = []
        faults: list[Any] = []
        tickets_at = 0.0
        first = True
        sent: tuple[Any, ...] | None = None
        while not self._stop.is_set():
            self._wake.clear()
            policy = await load_policy(store)
            newest, changed = await store.actions_changed_since(last_transition)
            if changed or first or time.monotonic() - tickets_at >= TICKETS_REFRESH_S:
                last_transition = newest
                actions = await store.list_actions(run_id=run_id, limit=500)
                awaiting = await self._approvable(await store.list_actions(states=["awaiting_approval"], limit=100))
            if first or self._tickets_dirty or time.monotonic() - tickets_at >= TICKETS_REFRESH_S:
                self._tickets_dirty = False
                tickets_at = time.monotonic()
                tickets = await store.list_tickets(run_id=run_id, limit=1000)
                faults = await store.list_faults(active_only=True)
            snapshot = (policy, tickets, actions, awaiting, faults)
            if snapshot != sent:
                sent = snapshot
                self.post_message(StoreUpdate(policy, tickets, actions, awaiting, faults))
            first = False
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass

    @property
    def cluster(self) -> str | None:
        """The identity of the cluster this console watches (None: offline, or it cannot tell)."""
        return self.runtime.cluster if self.runtime is not None else None

    async def _approvable(self, awaiting: list[Any]) -> list[Any]:
        """Only what approving can make happen: actions of live runs, on this console's cluster. An
        action whose run ended waits for nobody (the engines expire it), and one for another
        cluster must not be dry-run or judged against this one."""
        live: dict[int | None, bool] = {}
        out = []
        for a in awaiting:
            if self.cluster is not None and a.cluster is not None and a.cluster != self.cluster:
                continue
            if a.run_id not in live:
                live[a.run_id] = await self.store.run_is_live(a.run_id)
            if live[a.run_id]:
                out.append(a)
        return out

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "startup" and event.state == WorkerState.ERROR:
            log.error("console startup failed", exc_info=worker.error)
            self.state.phase, self.state.phase_detail = "failed", f"startup failed: {worker.error}"
            self.notify(f"startup failed: {worker.error}", severity="error", timeout=30)
            self._redraw("all")
            return
        if worker.group not in SUPERVISED or worker.name not in SUPERVISED or self._stopping:
            return
        if event.state == WorkerState.RUNNING:
            return
        if event.state == WorkerState.ERROR:
            why = f"{type(worker.error).__name__}: {worker.error}"
        elif event.state == WorkerState.SUCCESS:
            why = "stopped unexpectedly"
        else:
            return
        name = worker.name
        count = self.restarts[name] = self.restarts.get(name, 0) + 1
        delay = min(30.0, self.restart_delay * 2 ** (count - 1))
        log.error("console %s worker %s; restart %d in %.1f s", name, why, count, delay, exc_info=worker.error)
        self.state.trouble[name] = f"crashed ({why}); restarting in {delay:g}s"
        self.state.add_feed("error", f"the {name} crashed: {why}", detail=[f"restart {count} in {delay:g} s"],
                            tone="bad")
        self.notify(f"The {name} crashed ({why}). Restarting it in {delay:g} s.", title="Worker crashed",
                    severity="error", timeout=8)
        self._redraw("all")
        self.set_timer(delay, lambda: self._restart(name))

    def _restart(self, name: str) -> None:
        if self._stopping:
            return
        self.state.trouble.pop(name, None)
        self.state.add_feed("console", f"the {name} restarted (restart {self.restarts.get(name, 0)})", tone="good")
        self._start_worker(name)
        self._redraw("all")

    # -- callbacks from the monitor, the agent and the engine: they only post messages -----------

    def _on_tick(self, report: Any) -> None:
        obs = report.observation
        if obs.reachable:
            w = obs.workload
            self._series.append((obs.at.timestamp(), w.qps, w.error_rate, w.p99_ms))
        self.post_message(ClusterUpdate(obs, report.number, tuple(report.active), tuple(report.opened),
                                        tuple(report.resolved), tuple(self._series), tuple(report.errors)))

    def _on_agent_event(self, event: Any) -> None:
        self.post_message(AgentActivity(event.session_id, event.ticket_id, event.entity, event.kind, event.title,
                                        event.content))

    def _on_action(self, record: Any) -> None:
        self.post_message(ActionChanged(record))

    # -- folding messages into the state --------------------------------------------------------

    def rendering_paused(self) -> bool:
        """A modal (the approval dialog, the palette) covers the screen: keep the state, skip drawing."""
        return isinstance(self.screen, ModalScreen)

    def _redraw(self, what: str) -> None:
        if self.rendering_paused():
            return
        screen = self.screen
        if isinstance(screen, ConsoleScreen):
            screen.render_state(what)

    @on(ClusterUpdate)
    def _cluster_update(self, message: ClusterUpdate) -> None:
        self.state.apply_cluster(message.observation, message.tick, message.active, message.series)
        for t in message.opened:
            self.state.add_feed("ticket", f"opened: {t.summary}", ticket_id=t.id, entity=t.entity, tone="bad",
                                detail=[f"{t.invariant} [{t.severity}]"])
        for t in message.resolved:
            why = (t.resolution or {}).get("reason", "")
            self.state.add_feed("ticket", f"resolved by the monitor: {why}", ticket_id=t.id, entity=t.entity,
                                tone="good")
        if message.opened or message.resolved:
            self._tickets_dirty = True
            if self._wake is not None:
                self._wake.set()
        self._redraw("cluster")
        if message.opened or message.resolved:
            self._redraw("feed")

    @on(StoreUpdate)
    def _store_update(self, message: StoreUpdate) -> None:
        s = self.state
        s.policy, s.tickets, s.actions = message.policy, list(message.tickets), list(message.actions)
        s.awaiting, s.faults = list(message.awaiting), list(message.faults)
        self._redraw("store")
        self._sync_approval()

    @on(AgentActivity)
    def _agent_activity(self, message: AgentActivity) -> None:
        self.state.add_agent_event(message.ticket_id, message.entity, message.kind, message.title, message.content)
        self._tickets_dirty = True
        if self._wake is not None:
            self._wake.set()
        self._redraw("feed")

    @on(ActionChanged)
    def _action_changed(self, message: ActionChanged) -> None:
        a = message.action
        if a.state == "unknown":
            self.state.add_feed("action", f"#{a.id} {a.name}: unknown", tone="bad",
                                detail=[a.reason, "not re-run: checked against the cluster first"])
            self._redraw("feed")
        elif "reconciled" in a.reason and a.state in ("succeeded", "failed", "cancelled"):
            self.state.add_feed("action", f"#{a.id} {a.name}: {a.state} (reconciled)", detail=[a.reason],
                                tone="good" if a.state != "failed" else "bad")
            self._redraw("feed")
        if self._wake is not None:
            self._wake.set()

    @on(ConsoleNote)
    def _note(self, message: ConsoleNote) -> None:
        self.state.add_feed(message.kind, message.title, detail=message.detail, tone=message.tone)
        self._redraw("feed")

    # -- approvals ------------------------------------------------------------------------------

    def _sync_approval(self, asked: bool = False) -> None:
        """Open the dialog for the oldest action awaiting approval; close it when the action no
        longer waits (approved or rejected elsewhere, cancelled, expired). `asked`: the user pressed p."""
        waiting = {a.id: a for a in self.state.awaiting}
        self._deferred &= set(waiting)
        modal = self.approval
        if modal is not None:
            if modal.action.id not in waiting and modal.is_attached:
                gone = next((a for a in self.state.actions if a.id == modal.action.id), None)
                how = f"{gone.state}" + (f" by {gone.decided_by}" if gone and gone.decided_by else "") if gone else (
                    "no longer waiting")
                self.notify(f"Action #{modal.action.id} {modal.action.name} was {how} elsewhere.", timeout=5)
                self.state.add_feed("decision", f"#{modal.action.id} {modal.action.name}: {how} (elsewhere)")
                modal.close_as_gone()
            return
        if isinstance(self.screen, ModalScreen):
            return  # another modal (the palette) is open: wait until it closes
        if not asked and self._approval_held():
            return
        candidates = [a for a in sorted(waiting.values(), key=lambda a: a.id)
                      if a.id not in self._deferred and a.id not in self._decided]
        if candidates:
            self._open_approval(candidates[0], len(candidates))

    def _approval_held(self) -> bool:
        """In a demo the dialog opens with the chapter about remediation, not while the presenter
        is still talking about the fault (the action waits meanwhile; `p` opens it at any time)."""
        if self.director is None:
            return False
        waits = [i for i, c in enumerate(self.demo.script.chapters)
                 if c.wait is not None and c.wait.event in ("action_awaiting_approval", "action_executed")]
        return bool(waits) and self.director.index < waits[0]

    def _open_approval(self, action: Any, waiting: int = 1) -> None:
        modal = ApprovalModal(action, waiting=waiting, cursor_blink=self.cursor_blink)
        self.approval = modal
        self.push_screen(modal, callback=self._approval_done)
        self.bell()
        if self.store is not None:
            self.run_worker(self._approval_context(action, modal), group="approval-context", exit_on_error=False)

    async def _approval_context(self, action: Any, modal: ApprovalModal) -> None:
        diagnosis = ticket = dry = None
        problem = ""
        if action.session_id:
            session = await self.store.get_session(action.session_id)
            diagnosis = session.diagnosis if session else None
        if action.ticket_id:
            ticket = await self.store.get_ticket(action.ticket_id)
        engine = self.operator.engine if self.operator is not None else None
        if engine is not None and action.name in engine.catalogue:
            from subjects.base import ActionRequest

            try:
                result = await engine.dry_run(ActionRequest(name=action.name, params=action.params), human_actor())
                dry = dataclasses.asdict(result)
            except Exception as e:  # the dry run is advice: show why it could not be made
                problem = f"no dry run: {type(e).__name__}: {e}"
        else:
            problem = "no dry run here (this console does not drive that subject): it would send the line above"
        modal.post_message(ApprovalContext(action.id, action.name, diagnosis, ticket, dry, problem))

    def _approval_done(self, decision: ApprovalDecision | None) -> None:
        self.approval = None
        if decision is not None:
            if decision.verdict == "defer":
                self._deferred.add(decision.action_id)
                self.notify(f"Action #{decision.action_id} still waits for a decision: press p to review it.",
                            timeout=4)
            elif decision.verdict in ("approve", "reject"):
                self._decided.add(decision.action_id)
                self.run_worker(self._decide(decision), group="decide", exit_on_error=False)
        self.call_after_refresh(self._sync_approval)

    async def _decide(self, decision: ApprovalDecision) -> None:
        from operator_tui.actions import decisions

        actor = human_actor()
        try:
            if decision.verdict == "approve":
                record = await decisions.approve(self.store, decision.action_id, actor, cluster=self.cluster)
                self.post_message(ConsoleNote("decision", f"#{record.id} {record.name} approved by {actor}",
                                              tone="good"))
            else:
                record = await decisions.reject(self.store, decision.action_id, actor, decision.reason)
                self.post_message(ConsoleNote("decision", f"#{record.id} {record.name} rejected by {actor}",
                                              detail=[decision.reason] if decision.reason else [], tone="bad"))
        except UserError as e:
            self._decided.discard(decision.action_id)
            self.notify(str(e), title="Decision not recorded", severity="warning", timeout=6)
        if self._wake is not None:
            self._wake.set()

    @on(ReviewAction)
    def _review(self, message: ReviewAction) -> None:
        action = next((a for a in self.state.awaiting if a.id == message.action_id), None)
        if action is None:
            self.notify(f"Action #{message.action_id} is not awaiting approval.", timeout=3)
            return
        if self.approval is None:
            self._deferred.discard(action.id)
            self._decided.discard(action.id)
            self._open_approval(action, len(self.state.awaiting))

    def action_review_approvals(self) -> None:
        if not self.state.awaiting:
            self.notify("No action is waiting for approval.", timeout=3)
            return
        self._deferred.clear()
        self._sync_approval(asked=True)

    # -- intents ------------------------------------------------------------------------------

    def action_show(self, mode: str) -> None:
        if mode != self.current_mode:
            self.switch_mode(mode)

    @on(OpenTicket)
    def _open_ticket(self, message: OpenTicket) -> None:
        if self.current_mode != "tickets":
            self.switch_mode("tickets")
        if isinstance(self.screen, TicketDetailScreen):
            if self.screen.ticket_id == message.ticket_id:
                return
            self.pop_screen()
        self.push_screen(TicketDetailScreen(message.ticket_id))

    @on(CancelAction)
    def _cancel_action(self, message: CancelAction) -> None:
        async def cancel() -> None:
            from operator_tui.actions import decisions

            try:
                outcome = await decisions.cancel(self.store, message.action_id, human_actor(),
                                                 "cancelled from the console")
            except UserError as e:
                self.notify(str(e), severity="warning", timeout=5)
                return
            self.post_message(ConsoleNote("decision", f"#{message.action_id}: {outcome}"))
            self._wake.set()

        if self._need_store():
            self.run_worker(cancel(), group="decide", exit_on_error=False)

    def _need_store(self) -> bool:
        if self.store is None:
            self.notify("The store is not open yet.", severity="warning", timeout=3)
            return False
        return True

    def action_killswitch(self) -> None:
        """Engage or release according to the store (what every process obeys). When the store has
        changed since the screen last showed it, nothing changes: the screen catches up and says so."""
        if not self._need_store():
            return
        actor = human_actor()
        believed = self.state.policy.killswitch if self.state.policy is not None else None

        async def toggle() -> None:
            from operator_tui.actions import decisions

            outcome, policy, cancelled = await decisions.toggle_killswitch(self.store, actor, self.state.run_id,
                                                                           believed_engaged=believed)
            self.state.policy = policy
            self._redraw("store")
            if outcome == "engaged":
                self.post_message(ConsoleNote("killswitch", f"kill switch ENGAGED by {actor}", tone="bad", detail=[
                    f"cancelled {len(cancelled)} pending action(s)",
                    "running ones stop; any whose request may have been sent becomes unknown and is reconciled"]))
            elif outcome == "released":
                self.post_message(ConsoleNote("killswitch", f"kill switch released by {actor}", tone="good"))
            else:
                by = f" by {policy.killswitch_by}" if policy.killswitch_by else ""
                self.notify(f"The kill switch was {outcome.removeprefix('already ')}{by} meanwhile; nothing changed. "
                            "Press ctrl+k again to " + ("release it." if policy.killswitch else "engage it."),
                            title="Kill switch", severity="warning", timeout=6)
            self._wake.set()

        self.run_worker(toggle(), group="killswitch", exit_on_error=False)

    def action_set_mode(self, mode: str) -> None:
        if not self._need_store():
            return

        async def change() -> None:
            from operator_tui.actions import decisions

            cancelled = await decisions.change_mode(self.store, mode, human_actor(), self.state.run_id)
            self.post_message(ConsoleNote("policy", f"mode set to {mode}",
                                          detail=[f"cancelled {len(cancelled)} agent action(s)"] if cancelled else []))
            self._wake.set()

        self.run_worker(change(), group="policy", exit_on_error=False)

    def action_set_approval(self, approval: str) -> None:
        if not self._need_store():
            return

        async def change() -> None:
            from operator_tui.policy import set_approval

            await set_approval(self.store, approval, human_actor(), self.state.run_id)
            self.post_message(ConsoleNote("policy", f"approval policy set to {approval}"))
            self._wake.set()

        self.run_worker(change(), group="policy", exit_on_error=False)

    def action_verify_audit(self) -> None:
        self.action_show("audit")
        self.call_after_refresh(lambda: isinstance(self.screen, AuditScreen) and self.screen.action_verify())

    # -- chaos ---------------------------------------------------------------------------------

    def _chaos_options(self) -> dict[str, Any]:
        if self.runtime is not None:
            return self.runtime.chaos_options()
        from operator_tui.runtime import chaos_options

        return chaos_options(self.settings, self.state.subject)

    def action_chaos(self, kind: str, target: str = "") -> None:
        if not self._need_store():
            return

        async def inject() -> None:
            from operator_tui.chaos import ChaosRefused, inject_fault

            try:
                row = await inject_fault(self.store, self.state.subject, self._chaos_options(), kind, target or None,
                                         {}, human_actor(), self.state.run_id)
            except ChaosRefused as e:
                self.notify(str(e), title="Fault not injected", severity="error", timeout=6)
                return
            self.post_message(ConsoleNote("chaos", f"fault #{row.id} injected: {row.record.get('detail') or kind}",
                                          detail=[f"undo: palette 'Chaos: revert fault #{row.id}'"], tone="bad"))
            self._tickets_dirty = True
            self._wake.set()

        self.run_worker(inject(), group="chaos", exit_on_error=False)

    def action_revert_fault(self, fault_id: int) -> None:
        if self._need_store():
            self.run_worker(self._revert_faults([fault_id]), group="chaos", exit_on_error=False)

    def action_revert_all_faults(self) -> None:
        if self._need_store():
            self.run_worker(self._revert_faults(None), group="chaos", exit_on_error=False)

    async def _revert_faults(self, ids: list[int] | None) -> None:
        from operator_tui.chaos import revert_faults

        rows = [r for r in await self.store.list_faults(active_only=True) if ids is None or r.id in ids]
        for row, ok, detail in await revert_faults(self.store, rows, lambda _subject: self._chaos_options(),
                                                   human_actor()):
            if ok:
                self.post_message(ConsoleNote("chaos", f"fault #{row.id} reverted: {detail}", tone="good"))
            else:
                self.notify(f"fault #{row.id}: could not revert: {detail}", severity="error", timeout=8)
        self._tickets_dirty = True
        self._wake.set()

    # -- the demo: its director plays chapters over this console (DemoHost) -----------------------

    def _start_demo(self) -> None:
        from operator_tui.demo.director import Director

        self.director = Director(self.demo.script, self, autoplay=self.demo.autoplay, speed=self.demo.speed)
        self.run_worker(self.director.run(self._stop), name="demo", group="demo", exit_on_error=False,
                        description="the demo's chapters")

    @on(DemoKey)
    def _demo_key(self, message: DemoKey) -> None:
        if self.director is None:
            return
        if message.key == "next":
            if self.director.index + 1 == len(self.demo.script.chapters) and not self.demo.autoplay:
                self.notify("This is the last chapter: press q to quit (the demo cleans up after itself).",
                            timeout=4)
            self.director.advance()
        else:
            self.director.back()

    @on(DemoUpdate)
    def _demo_update(self, message: DemoUpdate) -> None:
        previous, self.state.demo = self.state.demo, message.progress
        p = message.progress
        if previous is None or previous.index != p.index:
            self.state.add_feed("demo", f"chapter {p.index + 1} of {p.total}: {p.chapter.title}")
            self._redraw("feed")
            self._sync_approval()  # a dialog held back until the remediation chapter opens now
        # The narration stays current even under the approval dialog (it says what the dialog is for).
        for screen in self.screen_stack:
            if isinstance(screen, DemoScreen):
                screen.render_state("demo")

    async def demo_start_lab(self) -> None:
        if not self.live:  # a console fed by tests: a demo run in its store, no subject
            await self._store_opened.wait()
            run_id = await self.store.start_run("demo", self.settings.subject)
            self.post_message(ConsoleStarted(run_id, self.settings.subject, self.settings.subject,
                                             str(self.settings.db)))
            return
        from operator_tui.demo.lab import DemoLab

        self.demo_lab = DemoLab(self.settings.subject, self.settings.lab_folder(), self.demo.script.lab,
                                self.settings.lab_dir)
        self.state.phase_detail = f"starting the {self.settings.subject} lab…"
        self._redraw("all")
        try:
            await self.demo_lab.start()
        except UserError as e:
            self.exit(None, return_code=e.exit_code, message=f"operator-tui: error: {e}")
            raise
        await self._start_live()
        if self.runtime is None:
            if self._stopping:
                return  # quit while the lab started: shutdown brings it down
            raise UserError("the console did not start (see the message on exit)")
        await self._demo_policy()

    async def _demo_policy(self) -> None:
        """Execute mode and the demo's approval policy for this run; what the store held is put back on exit."""
        from operator_tui.policy import load_policy, set_approval, set_mode

        policy = await load_policy(self.store)
        if policy.killswitch:
            message = (f"the kill switch is engaged in {self.settings.db} (by {policy.killswitch_by}): the demo's "
                       "agent could not act. Release it (`operator-tui killswitch off`) or pass another --db")
            self.exit(None, return_code=2, message=f"operator-tui: error: {message}")
            raise UserError(message)
        run_id = self.runtime.run_id
        self.demo_policy = {"mode": await set_mode(self.store, "execute", "demo", run_id),
                            "approval": await set_approval(self.store, self.demo.approval, "demo", run_id)}

    async def _demo_wind_down(self) -> None:
        """Cancel what the demo's agent left pending, revert the faults of this run (while the lab
        still runs), put the store's policy back."""
        from operator_tui.actions.decisions import cancel_pending
        from operator_tui.chaos import revert_faults
        from operator_tui.policy import DEFAULT_APPROVAL, DEFAULT_MODE, set_approval, set_mode

        if self.runtime is None:
            return
        store, run_id = self.runtime.store, self.runtime.run_id
        try:
            left = await cancel_pending(store, "demo", "the demo ended", run_id=run_id)
            if left:
                log.info("demo: cancelled pending action(s) %s", left)
            rows = [r for r in await store.list_faults(active_only=True) if r.run_id == run_id]
            for row, ok, detail in await revert_faults(store, rows, lambda _subject: self._chaos_options(), "demo"):
                log.info("demo: fault #%d %s: %s", row.id, "reverted" if ok else "NOT reverted", detail)
            if self.demo_policy:
                await set_mode(store, self.demo_policy["mode"] or DEFAULT_MODE, "demo", run_id)
                await set_approval(store, self.demo_policy["approval"] or DEFAULT_APPROVAL, "demo", run_id)
        except Exception:  # never keep the lab from stopping
            log.exception("demo: winding down failed")

    async def demo_start_load(self) -> str:
        return await self.demo_lab.load(True)

    async def demo_inject(self, fault: Any) -> Any:
        from operator_tui.chaos import inject_fault

        row = await inject_fault(self.store, self.state.subject, self._chaos_options(), fault.kind, fault.target,
                                 fault.params, "demo", self.runtime.run_id if self.runtime else self.state.run_id)
        self.post_message(ConsoleNote("chaos", f"fault #{row.id} injected by the demo: "
                                               f"{row.record.get('detail') or fault.kind}", tone="bad"))
        self._tickets_dirty = True
        if self._wake is not None:
            self._wake.set()
        return row

    def demo_store(self) -> tuple[Any, int] | None:
        run_id = self.runtime.run_id if self.runtime is not None else self.state.run_id
        return (self.store, run_id) if self.store is not None and run_id is not None else None

    def demo_observation(self) -> Any:
        return self.state.observation

    def demo_publish(self, progress: Any) -> None:
        self.post_message(DemoUpdate(progress))

    async def demo_screenshot(self, name: str) -> None:
        if self.demo.screenshots is not None:
            await asyncio.sleep(0.1)  # let the latest progress reach the screen first
            await self._timeline_drawn()
            path = self.save_screenshot(filename=f"{name}.svg", path=str(self.demo.screenshots))
            log.info("demo: screenshot %s", path)

    async def _timeline_drawn(self, timeout: float = 5.0) -> None:
        """On a chapter that shows the incident's timeline, wait (a little) until it is drawn: a
        screenshot or the end of an autoplay should show it, however busy the machine is."""
        p = self.state.demo
        if p is None or p.chapter.show != "timeline" or p.ticket_id is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screens = [s for s in self.screen_stack if isinstance(s, DemoScreen)]
            if not screens or screens[0].shown_incident == p.ticket_id:
                return
            await asyncio.sleep(0.05)

    def demo_finish(self, exit_code: int) -> None:
        async def finish() -> None:
            await self._timeline_drawn()
            await self.shutdown("completed" if exit_code == 0 else "failed")
            self.exit(exit_code, return_code=exit_code)

        self.run_worker(finish, group="quit", exit_on_error=False)

    # -- the command palette ---------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in console_commands(self.state, self.chaos_kinds if self.runtime is not None else None):
            yield SystemCommand(command.title, command.help, _runner(self, command.action))
        yield from super().get_system_commands(screen)


def _runner(app: App, action: str) -> Callable[[], Any]:
    def run() -> Any:
        return app.run_action(action)

    return run


def preload(*modules: str) -> None:
    """Import modules (from a worker thread); a missing optional one is left to fail where it is used."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            log.warning("could not preload %s: %s", name, e)


def load_chaos_kinds(subject: str) -> list[ChaosKind]:
    from subjects import registry
    from subjects.plugin import PluginError

    try:
        module = registry.chaos(subject)
    except (ImportError, ValueError, PluginError):
        return []
    table = getattr(module, "KINDS", {})
    out = []
    for name, description in module.kinds().items():
        spec = table.get(name)
        target = spec[1] if isinstance(spec, tuple) and len(spec) > 1 else None
        out.append(ChaosKind(name, description, target))
    return out


# -- entry points ---------------------------------------------------------------------------------


def make_app(settings: CoreSettings, *, live: bool = True, open_store: bool = True,
             clock: Callable[[], datetime] | None = None, cursor_blink: bool = True, poll_interval: float = 0.5,
             restart_delay: float = 2.0, demo: Any = None, mode: str | None = None,
             browse_campaign: int | None = None) -> OperatorApp:
    """The console for these settings.

    live: open the runtime (store, subject, embedded simulator, run) and run the monitor, the agent
    and the engine. Not live: only the store (open_store) or nothing at all, for tests that feed
    the console its messages. demo: play these chapters (operator_tui.demo.director.DemoOptions)
    over it; the runtime then starts when a chapter starts the lab. mode: the screen it opens on
    ("eval" for `eval browse`), with browse_campaign opened on it.
    """
    return OperatorApp(settings, live=live, open_store=open_store, clock=clock, cursor_blink=cursor_blink,
                       poll_interval=poll_interval, restart_delay=restart_delay, demo=demo, mode=mode,
                       browse_campaign=browse_campaign)


def run_console(args: argparse.Namespace) -> int:
    from operator_tui.config import load_settings

    settings = load_settings(args)
    return run_app(settings, make_app(settings))


def run_app(settings: CoreSettings, app: OperatorApp) -> int:
    """Run the console until it quits; logs go to a file beside the store (the console owns the terminal)."""
    from operator_tui import logs

    logs.setup(settings.log_level, settings.db.parent / "operator-tui.log")

    async def main() -> int:
        try:
            await app.run_async()
        finally:
            resume_gc()
            await app.shutdown("completed" if app.return_code in (0, None) else "failed")
        return app.return_code or 0

    return asyncio.run(main())
