"""A screen's store reads as a one-shot worker, rescheduled when it finishes: two reads of the
same screen never overlap, however slow the store or the analysis is (dolphie's pattern)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

log = logging.getLogger("operator_tui.console")


class Poller:
    """`start()` runs `read` now and again `interval()` seconds after each run ends, while the
    screen is attached; a run is skipped (not queued) while another screen covers this one."""

    def __init__(self, screen: Screen, read: Callable[[], Awaitable[None]], interval: Callable[[], float],
                 name: str) -> None:
        self.screen = screen
        self.read = read
        self.interval = interval
        self.name = name
        self.worker: Worker | None = None
        self.timer: Timer | None = None
        self.runs = 0
        self.stopped = False
        self.soon = False  # read again as soon as the running read ends, not an interval later

    def start(self) -> None:
        self.stopped = False
        self.poll_now()

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None:
            self.timer.stop()

    def poll_now(self) -> None:
        """Read at once (a key asked for it), unless a read is running: then its end reschedules."""
        if self.stopped or not self.screen.is_attached:
            return
        if self.worker is not None and not self.worker.is_finished:
            return
        if self.timer is not None:
            self.timer.stop()
        if self.screen.app.screen is not self.screen and self.runs:
            self.timer = self.screen.set_timer(self.interval(), self.poll_now)
            return
        self.worker = self.screen.run_worker(self.read, group=self.name, exit_on_error=False,
                                             description=f"the eval browser's {self.name}")

    def poll_soon(self) -> None:
        """Read again now, or as soon as the running read ends (the screen drew what it read and
        has more to ask for, e.g. the analysis after the matrix)."""
        if self.worker is not None and not self.worker.is_finished:
            self.soon = True
        else:
            self.poll_now()

    def finished(self, event: Worker.StateChanged) -> bool:
        """Call from the screen's on_worker_state_changed; True when the event was this poller's."""
        if event.worker is not self.worker:
            return False
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.runs += 1
            if event.state == WorkerState.ERROR:
                log.error("eval browser: %s failed", self.name, exc_info=event.worker.error)
            if not self.stopped and self.screen.is_attached:
                delay, self.soon = (0.0 if self.soon else self.interval()), False
                self.timer = self.screen.set_timer(delay, self.poll_now)
        return True
