"""YAML with line numbers: errors name the file, the line and the field.

`load(path)` parses a YAML file into plain data and remembers where each value sits; a
`SpecError` raised for a field path (from pydantic's `loc`, or by hand) names the line of the
deepest part of that path the file actually has (a missing key points at its parent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class SpecError(ValueError):
    """A problem in a spec file, as one line: `FILE:LINE: FIELD: what is wrong`."""

    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


def field_name(path: Iterable[str | int]) -> str:
    """('scenarios', 1, 'faults', 0, 'kind') -> 'scenarios[1].faults[0].kind'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Source:
    """A parsed YAML document, its text and the line of every value in it."""

    file: str
    text: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of `path`, or of its deepest ancestor present in the file."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def error(self, path: Sequence[str | int], message: str) -> SpecError:
        return SpecError(self.file, self.line_of(path), field_name(path), message)


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            _walk(value, (*path, name), lines)
            # the key's line is the one people look for, also for a nested mapping or list
            lines[(*path, name)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines)


def parse(text: str, file: str) -> Source:
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(x for x in (e.context, e.problem) if x)
        raise SpecError(file, line, "", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise SpecError(file, None, "", f"invalid YAML: {e}") from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return Source(file, text, data, lines)


def load(path: Path | str) -> Source:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), None, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(str(path), None, "", f"cannot read: {e}") from None
    return parse(text, str(path))


def from_validation_error(source: Source, error: Any) -> SpecError:
    """The first error of a pydantic ValidationError, located in the file."""
    first = error.errors(include_url=False)[0]
    loc = tuple(x for x in first["loc"] if isinstance(x, int | str))
    msg = str(first["msg"])
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "required field missing"
    msg = msg.removeprefix("Value error, ")
    return source.error(loc, msg)
