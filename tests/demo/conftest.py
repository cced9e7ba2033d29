"""Demo test helpers: small chapter scripts, demo consoles fed by messages or on a real store."""

from __future__ import annotations

import os

os.environ["TEXTUAL_ANIMATIONS"] = "none"  # before Textual is imported: screenshots never catch an animation

from pathlib import Path
from typing import Any

import yaml

from operator_tui.app import OperatorApp, make_app
from operator_tui.demo.director import DemoOptions, Progress
from operator_tui.demo.events import Happened
from scenarios.demo import WAIT_TEXT, DemoScript, builtin, load_script, parse_script
from tests.console import samples

LAB_CHAPTER = {"id": "start", "title": "The lab", "narration": "The lab starts.", "start": ["lab"], "dwell_s": 0}


def chapter(cid: str, **fields: Any) -> dict[str, Any]:
    return {"id": cid, "title": cid.replace("-", " ").capitalize(), "narration": f"Chapter **{cid}**.", **fields}


def script(*chapters: dict[str, Any], subject: str = "tikv", **top: Any) -> DemoScript:
    """A validated script: a chapter that starts the lab, then these."""
    data = {"title": "Test demo", "subject": subject, **top, "chapters": [LAB_CHAPTER, *chapters]}
    return parse_script(yaml.safe_dump(data, sort_keys=False), "test.yaml")


def demo_app(db: Path, demo_script: DemoScript, *, autoplay: bool = False, speed: float = 1.0,
             approval: str = "off", **kw: Any) -> OperatorApp:
    """A demo console on a real store, without a subject: its lab chapter only starts a demo run."""
    app = make_app(samples.settings(db=db, **kw), live=False, open_store=True, clock=samples.frozen_clock,
                   cursor_blink=False, poll_interval=0.05,
                   demo=DemoOptions(demo_script, autoplay=autoplay, speed=speed, approval=approval))
    app.animation_level = "none"
    return app


def fed_demo_app(name: str = "tikv") -> OperatorApp:
    """A demo console with no store and no director: tests post the progress it would."""
    app = make_app(samples.settings(), live=False, open_store=False, clock=samples.frozen_clock, cursor_blink=False,
                   demo=DemoOptions(load_script(builtin(name))))
    app.animation_level = "none"
    return app


def progress(name: str, index: int, phase: str, **kw: Any) -> Progress:
    """What the director would publish on chapter `index` of a built-in demo."""
    s = load_script(builtin(name))
    chapter = s.chapters[index]
    phases = tuple("done" if i < index else phase if i == index else "new" for i in range(len(s.chapters)))
    wait = chapter.wait
    base: dict[str, Any] = {
        "waiting_for": (WAIT_TEXT[wait.event] + (f" ({wait.invariant})" if wait.invariant else "")) if wait else "",
        "timeout_s": int(wait.timeout_s) if wait else 0,
    }
    base.update(kw)
    return Progress(title=s.title, index=index, chapter=chapter, phases=phases,
                    titles=tuple(c.title for c in s.chapters), phase=phase, **base)


def happened(second: float, summary: str, *detail: str, ticket_id: int | None = 5, ok: bool = True) -> Happened:
    return Happened(samples.at(second), summary, tuple(detail), ticket_id, ok)
