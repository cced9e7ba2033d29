"""`operator-tui demo tikv|ratelimiter`: the console on a fresh lab, walked through in chapters."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from operator_tui.errors import UserError

if TYPE_CHECKING:
    from scenarios.demo import DemoScript

SPEED_RANGE = (0.1, 100.0)


def run(args: argparse.Namespace) -> int:
    from operator_tui.app import make_app, run_app
    from operator_tui.config import load_settings
    from operator_tui.demo.director import DemoOptions
    from operator_tui.paths import data_dir

    script = demo_script(args.demo_subject, args.chapters, docker=args.demo_docker)
    low, high = SPEED_RANGE
    if not low <= args.speed <= high:
        raise UserError(f"--speed must be between {low:g} and {high:g}, got {args.speed:g}")
    screenshots = None
    if args.screenshots:
        screenshots = Path(args.screenshots).expanduser()
        try:
            screenshots.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot use {screenshots} for screenshots: {e.strerror or e}") from e
    given_lab_dir = getattr(args, "lab_dir", None)
    # The demo's lab lives in a folder of its own: it never meets a lab or console started by hand.
    lab_dir = (Path(given_lab_dir).expanduser() if given_lab_dir else data_dir() / "labs") / "demo"
    # mode and approval: the demo sets its own for its run and puts the store's back when it ends.
    settings = load_settings(args, subject=script.subject, lab_dir=str(lab_dir), mode=None, approval=None)
    options = DemoOptions(script, autoplay=args.autoplay, speed=args.speed, approval=args.demo_approval,
                          screenshots=screenshots)
    app = make_app(settings, demo=options)
    code = run_app(settings, app)
    director = app.director
    if code == 1 and director is not None and director.missed:
        print(f"operator-tui demo: chapters that did not go as planned: {', '.join(director.missed)}",
              file=sys.stderr)
    lab = app.demo_lab
    if lab is not None and lab.problem:
        print(f"operator-tui demo: the lab did not stop cleanly: {lab.problem}", file=sys.stderr)
        return code or 1
    return code


def demo_script(subject: str, chapters: str | None, docker: bool = False) -> DemoScript:
    """The chapters to play: FILE, else the subject's built-in ones. `docker`: its lab as containers
    (lab option `docker: true`, which only a lab with that option understands), with the chapters
    the subject ships for its Docker lab when it has them."""
    from scenarios.demo import ScriptError, builtin, load_script
    from subjects import registry

    if docker:
        plugin = registry.plugin(subject)
        if plugin.embedded is not None:
            raise UserError(f"--docker: the {subject} demo has no Docker lab (its cluster is the embedded simulator)")
        if "docker" not in {flag.key for flag in plugin.lab_flags}:
            raise UserError(f"--docker: the {subject} lab does not run as containers")
    try:
        script = load_script(Path(chapters) if chapters else builtin(subject, "docker" if docker else None))
    except ScriptError as e:
        raise UserError(str(e)) from e
    if script.subject != subject:
        raise UserError(f"{chapters} is a {script.subject} demo, not a {subject} one")
    if docker:
        script = script.model_copy(update={"lab": {**script.lab, "docker": True}})
    return script
