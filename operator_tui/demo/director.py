"""The demo's chapters, played one after the other over the real console.

Each chapter, the first time it is shown, starts what it names (the lab, the load), counts down
and injects its fault, then waits for its event in the store. Going back shows an earlier chapter
again without undoing or repeating anything; going forward past a countdown injects the fault at
once; going forward past a wait leaves it (it is checked again if the chapter is shown again).
A chapter whose event happens moves on by itself `dwell_s / speed` seconds later; with autoplay
every finished chapter does, and after the last one the demo ends.

The director never touches the screen: it tells its host (the console) what to show through
`publish(Progress)`, and asks it to start things, inject faults and take screenshots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from operator_tui.demo.events import Happened, check
from operator_tui.store import Store
from operator_tui.timeutil import utcnow
from scenarios.demo import WAIT_TEXT, Chapter, DemoScript, Fault
from subjects.base import Observation

log = logging.getLogger("operator_tui.demo")

POLL_S = 0.25
FINISHED = ("done", "missed")


class DemoHost(Protocol):
    """What the director needs from the console it runs in."""

    async def demo_start_lab(self) -> None: ...  # the lab, the runtime, the monitor and the agent

    async def demo_start_load(self) -> str: ...

    async def demo_inject(self, fault: Fault) -> Any: ...  # a FaultRow; raises UserError when refused

    def demo_store(self) -> tuple[Store, int] | None: ...  # the store and this run's id, once up

    def demo_observation(self) -> Observation | None: ...

    def demo_publish(self, progress: Progress) -> None: ...

    async def demo_screenshot(self, name: str) -> None: ...

    def demo_finish(self, exit_code: int) -> None: ...


@dataclass(frozen=True)
class DemoOptions:
    """How the console plays a demo."""

    script: DemoScript
    autoplay: bool = False
    speed: float = 1.0  # countdowns and autoplay pauses run this many times faster
    approval: str = "off"  # the store's approval policy while the demo runs: off | all
    screenshots: Path | None = None  # an SVG of the screen at the end of each chapter, here


@dataclass
class ChapterRun:
    """How far one chapter got (kept when the presenter moves away and comes back)."""

    phase: str = "new"  # new | starting | countdown | waiting | done | missed
    note: str = ""  # what it did: "lab up", "fault #1 injected: ..."
    problem: str = ""  # Markdown: why it is missed (a timeout's text, a refused fault)
    countdown_until: float | None = None
    wait_started: float | None = None
    done_at: float | None = None
    happened: Happened | None = None
    moves_on: bool = False  # its event just happened: it moves on by itself (shown again later, it stays)


@dataclass(frozen=True)
class Progress:
    """One frame of the narration panel, as plain data."""

    title: str
    index: int
    chapter: Chapter
    phases: tuple[str, ...]  # per chapter: new | starting | countdown | waiting | done | missed
    titles: tuple[str, ...]
    phase: str
    note: str = ""
    countdown: int | None = None
    waiting_for: str = ""
    waited_s: int = 0
    timeout_s: int = 0
    happened: Happened | None = None
    problem: str = ""
    autoplay: bool = False
    next_in: int | None = None
    ticket_id: int | None = None
    finished: bool = False

    @property
    def total(self) -> int:
        return len(self.titles)


@dataclass
class Director:
    script: DemoScript
    host: DemoHost
    autoplay: bool = False
    speed: float = 1.0
    clock: Callable[[], float] = time.monotonic
    index: int = 0
    runs: list[ChapterRun] = field(default_factory=list)
    since: datetime = field(default_factory=utcnow)  # tickets count from here: the demo's start, then its fault
    ticket_id: int | None = None  # the incident the chapters follow, once a ticket opened
    finished: bool = False
    _moves: list[int] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _sent: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        self.runs = [ChapterRun() for _ in self.script.chapters]

    # -- the presenter's keys ------------------------------------------------------------------

    def advance(self) -> None:
        self._moves.append(1)
        self._wake.set()

    def back(self) -> None:
        self._moves.append(-1)
        self._wake.set()

    @property
    def missed(self) -> list[str]:
        return [c.id for c, r in zip(self.script.chapters, self.runs, strict=True) if r.phase == "missed"]

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.publish(force=True)
        while not stop.is_set() and not self.finished:
            while self._moves and not self.finished:
                await self._move(self._moves.pop(0))
            if self.finished:
                break
            await self._drive()
            self._autoplay()
            self.publish()
            self._wake.clear()
            if self._moves:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            except TimeoutError:
                pass

    async def _move(self, delta: int) -> None:
        here, run = self.script.chapters[self.index], self.runs[self.index]
        run.moves_on = False
        if delta < 0:
            if self.index > 0:
                if run.phase == "countdown":  # it counts down again, in full, when shown again
                    run.countdown_until = None
                self.index -= 1
                self.publish(force=True)
            return
        if run.phase == "countdown":  # moving on: the fault goes in now, not silently never
            await self._inject(here, run)
        await self.host.demo_screenshot(f"{self.index + 1:02d}-{here.id}")
        if self.index + 1 < len(self.script.chapters):
            self.index += 1
            self.publish(force=True)
        elif self.autoplay:
            self.finished = True
            self.publish(force=True)
            self.host.demo_finish(1 if self.missed else 0)

    def _autoplay(self) -> None:
        run = self.runs[self.index]
        if not (self.autoplay or run.moves_on) or run.phase not in FINISHED or run.done_at is None or self._moves:
            return
        if self.clock() - run.done_at >= self.script.chapters[self.index].dwell_s / self.speed:
            self._moves.append(1)

    # -- one chapter ----------------------------------------------------------------------------

    async def _drive(self) -> None:
        chapter, run = self.script.chapters[self.index], self.runs[self.index]
        if run.phase == "new":
            await self._start(chapter, run)
        if run.phase == "countdown" and run.countdown_until is None and chapter.fault is not None:
            run.countdown_until = self.clock() + chapter.fault.countdown_s / self.speed
        if run.phase == "countdown" and run.countdown_until is not None and self.clock() >= run.countdown_until:
            await self._inject(chapter, run)
        if run.phase == "waiting":
            await self._wait(chapter, run)

    async def _start(self, chapter: Chapter, run: ChapterRun) -> None:
        run.phase = "starting"
        notes = []
        for what in chapter.start:
            run.note = "starting the lab…" if what == "lab" else "starting the load…"
            self.publish(force=True)
            try:
                if what == "lab":
                    await self.host.demo_start_lab()
                    notes.append("lab up")
                else:
                    notes.append(f"load {await self.host.demo_start_load()}")
            except Exception as e:  # a lab that cannot start: say so on screen, keep the console up
                log.exception("demo: starting the %s failed", what)
                self._finish_chapter(run, "missed", problem=f"Could not start the {what}: {e}")
                return
        run.note = ", ".join(notes)
        if chapter.fault is not None:
            run.phase = "countdown"  # the countdown starts on the next step
        elif chapter.wait is not None:
            run.phase, run.wait_started = "waiting", self.clock()
        else:
            self._finish_chapter(run, "done")

    async def _inject(self, chapter: Chapter, run: ChapterRun) -> None:
        assert chapter.fault is not None
        run.countdown_until = None
        run.note = f"injecting {chapter.fault.kind}…"
        self.publish(force=True)
        try:
            row = await self.host.demo_inject(chapter.fault)
        except Exception as e:  # refused (a UserError) or broken: shown, and the demo goes on
            log.warning("demo: fault %s not injected: %s", chapter.fault.kind, e)
            self._finish_chapter(run, "missed", problem=f"The fault was not injected: {e}")
            return
        self.since = row.injected_at
        run.note = f"fault #{row.id} injected at {row.injected_at:%H:%M:%S}: {row.record.get('detail') or row.kind}"
        if chapter.wait is not None:
            run.phase, run.wait_started = "waiting", self.clock()
        else:
            self._finish_chapter(run, "done")

    async def _wait(self, chapter: Chapter, run: ChapterRun) -> None:
        assert chapter.wait is not None and run.wait_started is not None
        ready = self.host.demo_store()
        happened = None
        if ready is not None:
            store, run_id = ready
            happened = await check(chapter.wait, store, run_id, self.since, self.ticket_id,
                                   self.host.demo_observation())
        if happened is not None:
            if happened.ticket_id is not None and self.ticket_id is None:
                self.ticket_id = happened.ticket_id
            run.happened = happened
            self._finish_chapter(run, "done" if happened.ok else "missed")
            run.moves_on = True  # "advances when it happens": after its dwell, as with autoplay
        elif self.clock() - run.wait_started >= chapter.wait.timeout_s:
            self._finish_chapter(run, "missed", problem=chapter.wait.on_timeout)

    def _finish_chapter(self, run: ChapterRun, phase: str, problem: str = "") -> None:
        run.phase, run.problem, run.done_at = phase, problem, self.clock()

    # -- telling the console ------------------------------------------------------------------

    def progress(self) -> Progress:
        chapter, run = self.script.chapters[self.index], self.runs[self.index]
        now = self.clock()
        countdown = None
        if run.phase == "countdown" and run.countdown_until is not None:
            countdown = max(0, int(run.countdown_until - now + 0.999))
        waited = int(now - run.wait_started) if run.phase == "waiting" and run.wait_started is not None else 0
        next_in = None
        if (self.autoplay or run.moves_on) and run.phase in FINISHED and run.done_at is not None and not self.finished:
            next_in = max(0, int(run.done_at + chapter.dwell_s / self.speed - now + 0.999))
        wait = chapter.wait
        return Progress(
            title=self.script.title, index=self.index, chapter=chapter,
            phases=tuple(r.phase for r in self.runs), titles=tuple(c.title for c in self.script.chapters),
            phase=run.phase, note=run.note, countdown=countdown,
            waiting_for=(WAIT_TEXT[wait.event] + (f" ({wait.invariant})" if wait.invariant else "")) if wait else "",
            waited_s=waited, timeout_s=int(wait.timeout_s) if wait else 0, happened=run.happened,
            problem=run.problem, autoplay=self.autoplay, next_in=next_in, ticket_id=self.ticket_id,
            finished=self.finished)

    def publish(self, force: bool = False) -> None:
        progress = self.progress()
        key = (progress.index, progress.phases, progress.phase, progress.note, progress.countdown, progress.waited_s,
               progress.next_in, progress.ticket_id, progress.finished, progress.problem, progress.happened)
        if force or key != self._sent:
            self._sent = key
            self.host.demo_publish(progress)
