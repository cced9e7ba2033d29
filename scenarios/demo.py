"""Demo chapter scripts (`scenarios/demos/<subject>.yaml`) and the models that validate them.

A script is data: each chapter has a title and Markdown narration, and may start things (the
subject's lab, its load), inject one fault after a visible countdown, and wait for an event in
the store (a ticket opened, a diagnosis recorded, an action awaiting approval or executed, the
ticket resolved) with a timeout and what to say if it never comes. Nothing in it scripts the
outcome: the real monitor and agent decide what happens; the chapter only waits and says so.

A bad file is one line naming the file, the line and the field (`ScriptError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEMOS_DIR = Path(__file__).resolve().parent / "demos"

WaitEvent = Literal["cluster_healthy", "traffic_seen", "ticket_opened", "diagnosis_recorded",
                    "action_awaiting_approval", "action_executed", "ticket_resolved"]
# What a chapter says while it waits (the status line of the narration panel).
WAIT_TEXT: dict[str, str] = {
    "cluster_healthy": "every node to be observed up",
    "traffic_seen": "traffic to show in the workload",
    "ticket_opened": "the monitor to open a ticket",
    "diagnosis_recorded": "the agent to record its diagnosis",
    "action_awaiting_approval": "an action to wait for approval",
    "action_executed": "the engine to execute the agent's action",
    "ticket_resolved": "the ticket to be resolved",
}


class ScriptError(ValueError):
    """A chapter file that cannot be used; the message is one line."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fault(Strict):
    kind: str = Field(min_length=1)
    target: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    countdown_s: float = Field(5.0, ge=0, le=300)

    @field_validator("target", mode="before")
    @classmethod
    def _target_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value  # `target: 2` means store "2"


class Wait(Strict):
    event: WaitEvent
    invariant: str | None = None  # ticket_opened: only a ticket for this invariant counts
    timeout_s: float = Field(60.0, gt=0, le=3600)
    on_timeout: str = Field(min_length=1)  # Markdown: what to say when it does not happen in time


class Chapter(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)
    title: str = Field(min_length=1, max_length=60)
    narration: str = Field(min_length=1)  # Markdown
    start: list[Literal["lab", "load"]] = Field(default_factory=list)
    fault: Fault | None = None
    wait: Wait | None = None
    show: Literal["cluster", "timeline"] = "cluster"
    dwell_s: float = Field(6.0, ge=0, le=600)  # autoplay: how long the finished chapter stays on screen


class DemoScript(Strict):
    title: str = Field(min_length=1)
    subject: str
    lab: dict[str, Any] = Field(default_factory=dict)  # options for the subject's lab (its lab flags' keys)
    chapters: list[Chapter] = Field(min_length=1)

    @model_validator(mode="after")
    def _order(self) -> DemoScript:
        seen: set[str] = set()
        lab_at: int | None = None
        for i, c in enumerate(self.chapters):
            if c.id in seen:
                raise ValueError(f"chapters[{i}].id: {c.id!r} is used twice")
            seen.add(c.id)
            if "lab" in c.start:
                if lab_at is not None:
                    raise ValueError(f"chapters[{i}].start: the lab already starts in chapter {lab_at + 1}")
                lab_at = i
            needs_lab = "load" in c.start or c.fault is not None or c.wait is not None
            if needs_lab and (lab_at is None or lab_at > i):
                raise ValueError(f"chapters[{i}]: starts load, injects a fault or waits before any chapter "
                                 "starts the lab (add `start: [lab]` to an earlier chapter)")
        if lab_at is None:
            raise ValueError("chapters: no chapter starts the lab (`start: [lab]`)")
        return self

    def wants_load(self) -> bool:
        return any("load" in c.start for c in self.chapters)


def builtin(name: str, variant: str | None = None) -> Path:
    """A subject's built-in chapters; a variant's own (`demos/<variant>/<name>.yaml`) when it has them."""
    if variant is not None and (own := DEMOS_DIR / variant / f"{name}.yaml").is_file():
        return own
    return DEMOS_DIR / f"{name}.yaml"


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line (1-based) of the deepest YAML node on the path `loc`."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if nxt is None:
                key = next((k for k, _ in node.value if getattr(k, "value", None) == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith("function-") and part not in ("literal", "union"):
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_script(text: str, source: str) -> DemoScript:
    """Validate a script; ScriptError (one line: source, line, field, problem) when it is bad."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScriptError(f"{where}: not valid YAML: {problem}") from e
    if not isinstance(data, dict):
        raise ScriptError(f"{source}:1: a demo script is a mapping (title, subject, chapters), not "
                          f"{type(data).__name__}")
    try:
        script = DemoScript.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if not loc and message.startswith("chapters"):  # from the model validator: "chapters[3]...: why"
            path, _, message = message.partition(": ")
            loc = tuple(int(p) if p.isdigit() else p for p in path.replace("[", ".").replace("]", "").split(".") if p)
            field = path
        else:
            field = _field(loc)
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ScriptError(f"{source}:{_line_of(root, loc)}: {field}: {message}{more}") from e
    _check_subject(script, root, source)
    return script


def _check_subject(script: DemoScript, root: yaml.Node | None, source: str) -> None:
    from subjects import registry
    from subjects.plugin import PluginError, load

    if script.subject not in registry.names():
        raise ScriptError(f"{source}:{_line_of(root, ('subject',))}: subject: unknown subject {script.subject!r}; "
                          f"known: {', '.join(registry.names())}")
    plugin = registry.plugin(script.subject)
    lab_keys = {f.key for f in plugin.lab_flags}
    for key in script.lab:
        if plugin.embedded is not None or key not in lab_keys:
            known = ", ".join(sorted(lab_keys)) if plugin.embedded is None else "none: it runs its embedded cluster"
            raise ScriptError(f"{source}:{_line_of(root, ('lab', key))}: lab.{key}: not an option of the "
                              f"{script.subject} lab (options: {known})")
    if plugin.embedded is None and plugin.lab is None:
        raise ScriptError(f"{source}:{_line_of(root, ('subject',))}: subject: {script.subject} has neither an "
                          "embedded cluster nor a lab for the demo to start")
    if script.wants_load():
        lab = load(plugin.lab) if plugin.lab is not None and plugin.embedded is None else None
        if not callable(getattr(lab, "load", None)):
            i = next(i for i, c in enumerate(script.chapters) if "load" in c.start)
            raise ScriptError(f"{source}:{_line_of(root, ('chapters', i, 'start'))}: chapters[{i}].start: the "
                              f"{script.subject} demo cluster has no load to start (its workload runs by itself)")
    try:
        kinds = registry.chaos(script.subject).kinds()
    except (ImportError, PluginError) as e:
        raise ScriptError(f"{source}: cannot list the {script.subject} fault kinds: {e}") from e
    for i, c in enumerate(script.chapters):
        if c.fault is not None and c.fault.kind not in kinds:
            raise ScriptError(f"{source}:{_line_of(root, ('chapters', i, 'fault', 'kind'))}: "
                              f"chapters[{i}].fault.kind: {c.fault.kind!r} is not a {script.subject} fault "
                              f"(known: {', '.join(sorted(kinds))})")


def load_script(path: str | Path) -> DemoScript:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScriptError(f"cannot read the demo script {path}: {e.strerror or e}") from e
    return parse_script(text, str(path))
