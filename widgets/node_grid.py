"""A grid of node tiles (stores, PD members, service nodes), coloured by health.

The grid is fed whole lists of `TileView`s (plain frozen values, one per node); it diffs them by
key, so a tick touches only the tiles whose view changed: a 200-node cluster where one store
goes down costs one tile update, not 200.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.content import Content
from textual.events import Resize
from textual.message import Message
from textual.widgets import Static

STATES = ("up", "degraded", "down", "unknown", "removed")

# A run of text and its style ("", "bold", "dim", ...). Tiles are built from spans rather than
# markup: parsing markup for 200 tiles a tick costs ten times more than assembling spans.
Span = tuple[str, str]
Line = tuple[Span, ...]


def spans(*parts: str | Span) -> Line:
    """One line from plain strings and (text, style) pairs."""
    return tuple(p if isinstance(p, tuple) else (p, "") for p in parts)


def render_lines(lines: tuple[Line, ...]) -> Content:
    parts: list[str | tuple[str, str]] = []
    for i, line in enumerate(lines):
        if i:
            parts.append("\n")
        parts.extend((text, style) if style else text for text, style in line)
    return Content.assemble(*parts)


@dataclass(frozen=True)
class TileView:
    key: str  # the node's entity, e.g. "store:2"
    title: str  # "store 2"
    state: str  # one of STATES
    lines: tuple[Line, ...] = ()  # the tile's content, one entry per line
    subtitle: str = ""  # right of the bottom border: the state, or the ticket that concerns the node
    ticket: int | None = None  # the open ticket on this node, if any
    severity: str = ""  # that ticket's severity


class NodeTile(Static, can_focus=True):
    """One node. Its classes carry the health (-up, -down, ...) and -ticket when a ticket is open."""

    DEFAULT_CSS = """
    NodeTile {
        height: 6;
        padding: 0 1;
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        background: $surface;
    }
    NodeTile.-up { border: round $success 60%; }
    NodeTile.-degraded { border: round $warning; background: $warning 10%; }
    NodeTile.-down { border: heavy $error; background: $error 25%; border-subtitle-color: $text; }
    NodeTile.-unknown { border: round $panel-lighten-1; color: $text-muted; }
    NodeTile.-removed { border: dashed $panel-lighten-1; color: $text-disabled; }
    NodeTile.-ticket { border-title-style: bold; border-subtitle-color: $text; border-subtitle-style: bold; }
    NodeTile.-ticket.-up { border: double $warning; }
    NodeTile:focus { background-tint: $foreground 10%; border-title-style: bold reverse; }
    """

    class Selected(Message):
        """Enter (or a click) on a tile."""

        def __init__(self, key: str, ticket: int | None) -> None:
            super().__init__()
            self.key = key
            self.ticket = ticket

    BINDINGS = [Binding("enter", "select", "Open ticket", show=False)]

    def __init__(self, view: TileView) -> None:
        super().__init__(id=None)
        self.view: TileView | None = None
        self.set_view(view)

    def set_view(self, view: TileView) -> bool:
        """Show `view`; returns False (and does nothing) when it is what the tile already shows."""
        if view == self.view:
            return False
        old = self.view
        self.view = view
        if old is None or old.lines != view.lines:
            self.update(render_lines(view.lines), layout=False)  # fixed size: no layout pass
        if old is None or old.title != view.title:
            self.border_title = view.title
        if old is None or old.subtitle != view.subtitle:
            self.border_subtitle = view.subtitle
        if old is None or old.state != view.state or (old.ticket is None) != (view.ticket is None):
            # One style update for all the classes (each set_class alone re-applies the stylesheet).
            classes = {f"-{state}": state == view.state for state in STATES}
            classes["-ticket"] = view.ticket is not None
            self.update_classes(classes)
        return True

    def action_select(self) -> None:
        if self.view is not None:
            self.post_message(self.Selected(self.view.key, self.view.ticket))

    def on_click(self) -> None:
        self.action_select()


class NodeGrid(ScrollableContainer, can_focus=False):
    """Tiles in as many columns as fit; arrow keys move between them."""

    DEFAULT_CSS = """
    NodeGrid {
        layout: grid;
        grid-size: 4;
        grid-gutter: 0 1;
        grid-rows: 6;
        height: 1fr;
        scrollbar-size-vertical: 1;
    }
    NodeGrid > #grid-empty { column-span: 4; height: 6; color: $text-muted; content-align: center middle; }
    """

    BINDINGS = [
        Binding("left", "move(-1)", "Left", show=False),
        Binding("right", "move(1)", "Right", show=False),
        Binding("up", "move_row(-1)", "Up", show=False),
        Binding("down", "move_row(1)", "Down", show=False),
    ]

    def __init__(self, *, tile_width: int = 26, empty: str = "waiting for the first observation…",
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.tile_width = tile_width
        self.empty_text = empty
        self.tiles: dict[str, NodeTile] = {}
        self.columns = 4
        self.updates = 0  # tiles whose view changed in the last apply (for benchmarks and tests)

    def compose(self):
        yield Static(self.empty_text, id="grid-empty")

    def on_resize(self, event: Resize) -> None:
        self._fit_columns(event.size.width)

    def _fit_columns(self, width: int) -> None:
        columns = max(1, (width + 1) // (self.tile_width + 1))
        if columns != self.columns:
            self.columns = columns
            self.styles.grid_size_columns = columns
            for empty in self.query("#grid-empty"):
                empty.styles.column_span = columns

    def set_empty_text(self, text: str) -> None:
        self.empty_text = text
        empty = self.query("#grid-empty")
        if empty:
            empty.first(Static).update(text)

    def apply(self, views: Iterable[TileView]) -> int:
        """Show exactly these tiles, in this order. Returns how many tiles changed."""
        views = list(views)
        wanted = {v.key for v in views}
        changed = 0
        gone = [tile for key, tile in self.tiles.items() if key not in wanted]
        for tile in gone:
            del self.tiles[tile.view.key]
        if gone:
            self.remove_children(gone)
            changed += len(gone)
        new: list[NodeTile] = []
        for view in views:
            tile = self.tiles.get(view.key)
            if tile is None:
                tile = NodeTile(view)
                self.tiles[view.key] = tile
                new.append(tile)
                changed += 1
            elif tile.set_view(view):
                changed += 1
        if new:
            empty = self.query("#grid-empty")
            if empty:
                empty.remove()
            order = [v.key for v in views]
            if len(new) == len(self.tiles):
                self.mount_all(new)
            else:
                # Keep the given order: mount each new tile before the next existing one.
                existing = {k for k in self.tiles if self.tiles[k] not in new}
                for tile in new:
                    index = order.index(tile.view.key)
                    after = next((self.tiles[k] for k in order[index + 1:] if k in existing), None)
                    if after is not None:
                        self.mount(tile, before=after)
                    else:
                        self.mount(tile)
                    existing.add(tile.view.key)
        if not self.tiles and not self.query("#grid-empty"):
            self.mount(Static(self.empty_text, id="grid-empty"))
        self.updates = changed
        return changed

    def _ordered(self) -> list[NodeTile]:
        return [child for child in self.children if isinstance(child, NodeTile)]

    def _move_focus(self, delta: int) -> None:
        tiles = self._ordered()
        if not tiles:
            return
        focused = self.screen.focused
        if focused in tiles:
            target = tiles[max(0, min(len(tiles) - 1, tiles.index(focused) + delta))]
        else:
            target = tiles[0]
        target.focus()
        target.scroll_visible(animate=False)

    def action_move(self, delta: int) -> None:
        self._move_focus(delta)

    def action_move_row(self, delta: int) -> None:
        self._move_focus(delta * self.columns)
