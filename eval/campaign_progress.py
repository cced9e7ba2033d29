"""Progress of a running campaign: a live status block on a terminal, plain lines otherwise.

On a terminal (stream.isatty()) the last lines of the output are redrawn in place: trials done
of total, what each slot is running and for how long, the ETA and the verdict so far. Each
finished trial also leaves one permanent line above the block. Elsewhere (CI logs, pipes) only
the permanent lines are written, one per event, never a control character.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


def _clock(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass
class Progress:
    total: int
    parallel: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    live: bool | None = None  # None: live when the stream is a terminal
    typical_s: float | None = None  # a guess per trial until some have finished
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    running: dict[int, tuple[str, float]] = field(default_factory=dict)  # slot -> (trial, since)
    durations: list[float] = field(default_factory=list)
    verdict: str = "no trial finished yet"
    _drawn: int = 0

    def __post_init__(self) -> None:
        if self.live is None:
            isatty = getattr(self.stream, "isatty", None)
            self.live = bool(isatty and isatty())

    # -- events -----------------------------------------------------------------------------------

    def line(self, text: str) -> None:
        """A permanent line (above the live block on a terminal)."""
        self._clear()
        self.stream.write(text + "\n")
        self._draw()

    def trial_started(self, slot: int, label: str) -> None:
        self.running[slot] = (label, time.monotonic())
        if self.live:
            self._clear()
            self._draw()
        else:
            self.stream.write(f"[{self.done}/{self.total}] slot {slot}: {label} started\n")
            self.stream.flush()

    def trial_finished(self, slot: int, label: str, outcome: str, duration_s: float, detail: str = "",
                       final: bool = True) -> None:
        """final=False: an attempt that will be retried (it does not count as done)."""
        self.running.pop(slot, None)
        self.durations.append(duration_s)
        extra = f" ({detail})" if detail else ""
        if final:
            self.done += 1
        else:
            extra += "; retrying (no fault was injected)"
        self.line(f"[{self.done}/{self.total}] slot {slot}: {label} {outcome}{extra} in {duration_s:.1f} s; "
                  f"ETA {self.eta_text()}")

    def set_verdict(self, text: str) -> None:
        self.verdict = text
        if self.live:
            self._clear()
            self._draw()

    def tick(self) -> None:
        """Redraw the live block (elapsed times, ETA); nothing when not live."""
        if self.live:
            self._clear()
            self._draw()

    def close(self) -> None:
        self._clear()
        self.stream.flush()

    # -- estimates --------------------------------------------------------------------------------

    def eta_s(self) -> float | None:
        typical = sum(self.durations) / len(self.durations) if self.durations else self.typical_s
        if typical is None:
            return None
        remaining = self.total - self.done - len(self.running)
        now = time.monotonic()
        running_left = sum(max(0.0, typical - (now - since)) for _, since in self.running.values())
        return (remaining * typical + running_left) / max(1, self.parallel)

    def eta_text(self) -> str:
        eta = self.eta_s()
        return "?" if eta is None else _clock(eta)

    # -- drawing ----------------------------------------------------------------------------------

    def _block(self) -> list[str]:
        now = time.monotonic()
        lines = [f"trials {self.done}/{self.total} done, {len(self.running)} running, "
                 f"elapsed {_clock(now - self.started)}, ETA {self.eta_text()}"]
        lines += [f"  slot {slot}: {label} ({_clock(now - since)})" for slot, (label, since) in
                  sorted(self.running.items())]
        lines.append(f"  verdict so far: {self.verdict}")
        return lines

    def _draw(self) -> None:
        if not self.live:
            self.stream.flush()
            return
        block = self._block()
        self.stream.write("\n".join(block) + "\n")
        self.stream.flush()
        self._drawn = len(block)

    def _clear(self) -> None:
        if self.live and self._drawn:
            # up one line and erase it, for each line of the block
            self.stream.write("\x1b[1A\x1b[2K" * self._drawn)
            self._drawn = 0
