"""`c` on a campaign: pick variant A, then variant B, to compare them paired on seeds."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class VariantPicker(ModalScreen[tuple[str, str] | None]):
    DEFAULT_CSS = """
    VariantPicker { align: center middle; }
    VariantPicker > #picker { width: 60; height: auto; max-height: 24; border: round $accent; background: $surface;
                              padding: 0 1; }
    VariantPicker #picker-hint { height: auto; margin-bottom: 1; }
    VariantPicker OptionList { height: auto; max-height: 16; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, variants: list[str]) -> None:
        super().__init__()
        self.variants = variants
        self.first: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Static("", id="picker-hint")
            yield OptionList(*[Option(v, id=v) for v in self.variants], id="picker-list")

    def on_mount(self) -> None:
        self.query_one("#picker").border_title = "Compare two variants"
        self._hint()
        self.query_one(OptionList).focus()

    def _hint(self) -> None:
        text = ("Pick variant [b]A[/] (enter)" if self.first is None else
                f"A = [b]{self.first}[/]. Now pick variant [b]B[/] (enter); escape cancels")
        self.query_one("#picker-hint", Static).update(text)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        name = str(event.option.id)
        if self.first is None:
            self.first = name
            event.option_list.disable_option(name)
            self._hint()
            return
        self.dismiss((self.first, name))

    def action_cancel(self) -> None:
        self.dismiss(None)
