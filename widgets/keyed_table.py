"""A DataTable updated in place by row key: no clear-and-refill, no flicker, the cursor stays on its row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


@dataclass
class SyncStats:
    added: int = 0
    removed: int = 0
    cells: int = 0  # cells rewritten in rows that stayed
    resorted: bool = False


class KeyedTable(DataTable):
    """`sync(rows)` makes the table show exactly `rows` (key, cells) in that order, touching only
    what changed. Keys are strings; the first cell of every row must be unique and hashable (the
    row's id): sorting to the requested order goes through it."""

    DEFAULT_CSS = """
    KeyedTable { height: 1fr; overflow-x: hidden; }
    """

    def __init__(self, columns: Sequence[tuple[str, str] | tuple[str, str, int]], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, cursor_foreground_priority="renderable")
        self._column_spec = list(columns)
        self._cells: dict[str, tuple[Any, ...]] = {}
        self._columns_added = False

    def on_mount(self) -> None:
        self._ensure_columns()

    def _ensure_columns(self) -> None:
        if self._columns_added:
            return
        self._columns_added = True
        for spec in self._column_spec:
            key, label = spec[0], spec[1]
            width = spec[2] if len(spec) > 2 else None
            self.add_column(label, key=key, width=width)

    @property
    def cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def sync(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> SyncStats:
        self._ensure_columns()
        stats = SyncStats()
        keep_key = self.cursor_key
        keep_index = self.cursor_row
        wanted = {key: tuple(cells) for key, cells in rows}
        stale = [key for key in self._cells if key not in wanted]
        if stale and len(stale) > len(self._cells) // 2:
            # Mostly new rows (a filter changed): refilling is cheaper than removing one by one.
            self.clear()
            stats.removed = len(self._cells)
            self._cells.clear()
        else:
            for key in stale:
                self.remove_row(key)
                del self._cells[key]
            stats.removed = len(stale)
        column_keys = [spec[0] for spec in self._column_spec]
        for key, cells in wanted.items():
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
                stats.added += 1
            elif old != cells:
                for column, before, after in zip(column_keys, old, cells, strict=True):
                    if before != after:
                        self.update_cell(key, column, after)
                        stats.cells += 1
            self._cells[key] = cells
        order = [key for key, _ in rows]
        current = [row.key.value for row in self.ordered_rows]
        if current != order:
            rank = {wanted[key][0]: i for i, key in enumerate(order)}
            self.sort(column_keys[0], key=lambda value: rank.get(value, len(rank)))
            stats.resorted = True
        if keep_key is not None and keep_key in wanted:
            index = self.get_row_index(RowKey(keep_key))
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)
        elif self.row_count and keep_index >= self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
        return stats
