"""The console's chrome: the navigation bar, the status bar, banners and the too-small message."""

from __future__ import annotations

from dataclasses import dataclass

from textual.markup import escape
from textual.widgets import Static


def _e(text: object) -> str:
    """Escape text for Textual markup."""
    return escape(str(text))


@dataclass(frozen=True)
class StatusView:
    mode: str = "-"
    approval: str = "-"
    killswitch: bool = False
    subject: str = ""
    store: str = ""
    endpoint: str | None = None
    tick: int = 0
    phase: str = "starting"  # starting | running | stopping | offline
    awaiting: int = 0
    trouble: str = ""  # a worker that crashed and is being restarted


class StatusBar(Static):
    """One line: mode, approval policy, kill switch, subject, endpoint, store, tick, troubles."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: StatusView | None = None

    def show(self, view: StatusView) -> None:
        if view == self.view:
            return
        self.view = view
        self.update(render_status(view), layout=False)


def render_status(v: StatusView) -> str:
    parts = [
        f"mode [b $accent]{_e(v.mode)}[/]",
        f"approval [b $accent]{_e(v.approval)}[/]",
        "kill switch [b $error reverse] ENGAGED [/]" if v.killswitch else "kill switch [$success]off[/]",
    ]
    if v.awaiting:
        parts.append(f"[b $warning]{v.awaiting} awaiting approval[/] [dim](p)[/]")
    if v.trouble:
        parts.append(f"[b $error]{_e(v.trouble)}[/]")
    subject = _e(v.subject or "-")
    if v.endpoint and v.endpoint not in v.subject:
        subject += f" [dim]at[/] {_e(v.endpoint)}"
    parts.append(subject)
    parts.append(f"[dim]store[/] {_e(v.store)}")
    if v.phase == "running":
        parts.append(f"[dim]tick[/] {v.tick}")
    else:
        parts.append(f"[b $warning]{_e(v.phase)}[/]")
    return " [dim]│[/] ".join(parts)


SCREENS = (("1", "cluster", "Cluster"), ("2", "tickets", "Tickets"), ("3", "actions", "Actions"),
           ("4", "audit", "Audit"), ("5", "eval", "Eval"))
DEMO_SCREEN = ("0", "demo", "Demo")


@dataclass(frozen=True)
class NavView:
    active: str
    open_tickets: int = 0
    awaiting: int = 0
    title: str = "operator"
    demo: bool = False  # a demo plays: its screen comes first


class NavBar(Static):
    """The top line: the screens with their keys (the active one highlighted) and headline counts."""

    DEFAULT_CSS = """
    NavBar { height: 1; background: $panel; padding: 0 1; }
    """

    def __init__(self, active: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: NavView | None = None
        self.show(NavView(active))

    def show(self, view: NavView) -> None:
        if view == self.view:
            return
        self.view = view
        tabs = []
        for key, mode, label in ((DEMO_SCREEN, *SCREENS) if view.demo else SCREENS):
            if mode == view.active:
                tabs.append(f"[reverse b] {key} {label} [/]")
            else:
                tabs.append(f" [dim]{key}[/] {label} ")
        right = []
        if view.open_tickets:
            right.append(f"[b $warning]{view.open_tickets} open ticket{'s' if view.open_tickets != 1 else ''}[/]")
        else:
            right.append("[$success]no open tickets[/]")
        if view.awaiting:
            right.append(f"[b $warning]{view.awaiting} awaiting approval[/]")
        self.update(f"[b]{_e(view.title)}[/]  " + "".join(tabs) + "   " + "  ".join(right), layout=False)


class Banner(Static):
    """A full-width warning line, hidden unless shown."""

    DEFAULT_CSS = """
    Banner { height: auto; padding: 0 1; display: none; text-style: bold; }
    Banner.-shown { display: block; }
    Banner.-killswitch { background: $error; color: $text; }
    Banner.-unreachable { background: $warning; color: $background; }
    """

    def __init__(self, kind: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes=f"-{kind}")
        self.text: str | None = None

    def show(self, text: str | None) -> None:
        if text == self.text:
            return
        self.text = text
        self.set_class(bool(text), "-shown")
        if text:
            self.update(text)


class TooSmall(Static):
    """Shown instead of the screen's content when the terminal is smaller than the console needs."""

    DEFAULT_CSS = """
    TooSmall { display: none; width: 1fr; height: 1fr; content-align: center middle; text-align: center;
               color: $warning; text-style: bold; }
    """

    def __init__(self, min_width: int, min_height: int) -> None:
        super().__init__(f"The terminal is too small for the console.\nIt needs at least {min_width} x {min_height} "
                         "characters.\nMake the window larger, or press q to quit.")


class KeyBar(Static):
    """The keys of the focused widget, its screen and the app, on one line (what Textual's Footer
    shows, drawn as a single widget: switching screens stays cheap)."""

    DEFAULT_CSS = """
    KeyBar { height: 1; background: $footer-background; color: $footer-foreground; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.refresh_keys()

    def _bindings_changed(self, screen: object) -> None:
        if self.is_attached and screen is self.screen:
            self.refresh_keys()

    def refresh_keys(self) -> None:
        seen: set[str] = set()
        parts: list[str] = []
        palette = ""
        for _node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if binding.action in ("command_palette", "app.command_palette") and not palette:
                palette = f"[b $footer-key-foreground]{_e(self.app.get_key_display(binding))}[/] {_e(binding.description)}"
                continue
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            style = "$footer-key-foreground" if enabled else "$text-disabled"
            parts.append(f"[b {style}]{_e(self.app.get_key_display(binding))}[/] {_e(binding.description)}")
        line = "  ".join(parts)
        if palette:
            line += f"  [dim]│[/] {palette}"
        self.update(line, layout=False)
