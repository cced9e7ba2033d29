"""What every console screen shares: the navigation bar, the banners (kill switch, subject
unreachable), the status bar, the footer, and the message shown when the terminal is too small.

A screen renders from the app's `ConsoleState` (`render_state`), when the app tells it to and
whenever it becomes visible again (a modal closed, a mode switch), so a paused screen catches up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen

from screens.state import ConsoleState
from widgets.status import Banner, KeyBar, NavBar, StatusBar, TooSmall

if TYPE_CHECKING:
    from operator_tui.store import Store

MIN_WIDTH = 80
MIN_HEIGHT = 24


class ConsoleHost(Protocol):
    """What screens use of the app (the app is an entry point: screens never import it)."""

    state: ConsoleState
    store: Store | None

    def rendering_paused(self) -> bool: ...


class ConsoleScreen(Screen[None]):
    """Base of the four mode screens."""

    MODE = ""

    def __init__(self) -> None:
        super().__init__()
        self.rendered_once = False

    @property
    def host(self) -> ConsoleHost:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Vertical(id="chrome-top"):
            yield NavBar(self.MODE, id="nav")
            yield Banner("killswitch", id="killswitch-banner")
            yield Banner("unreachable", id="unreachable-banner")
        yield TooSmall(MIN_WIDTH, MIN_HEIGHT)
        yield from self.compose_body()
        with Vertical(id="chrome-bottom"):
            yield StatusBar(id="status")
            yield KeyBar(id="keys")

    def compose_body(self) -> ComposeResult:
        return iter(())

    def _on_mount(self, event: events.Mount) -> None:
        super()._on_mount(event)
        # A mode's screen is mounted after switch_mode refreshed the CSS for it, so Textual 8.2.8
        # never marks it as up to date and re-parses every stylesheet each time the mode is
        # shown again (~0.2 s). Its styles are computed from the current CSS: say so.
        self._css_update_count = self.app._css_update_count

    def on_screen_resume(self) -> None:
        self.render_state()
        self.query_one(KeyBar).refresh_keys()

    def render_state(self, what: str = "all") -> None:
        """Bring the screen up to date with the app's state. `what`: all | cluster | store | feed."""
        if not self.is_mounted:
            return
        state = self.host.state
        self.query_one(NavBar).show(state.nav_view(self.MODE))
        self.query_one("#killswitch-banner", Banner).show(state.killswitch_text())
        self.query_one("#unreachable-banner", Banner).show(state.unreachable_text())
        self.query_one(StatusBar).show(state.status_view())
        self.render_body(state, what)
        self.rendered_once = True

    def render_body(self, state: ConsoleState, what: str) -> None:
        """Subclasses update their own widgets."""

    def load(self, work: Callable[[], Awaitable[None]], *, group: str) -> None:
        """Run a store read in a worker (one at a time per group; a newer one replaces an older)."""
        self.run_worker(work, group=group, exclusive=True, exit_on_error=False)
