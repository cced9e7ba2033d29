"""`operator-tui run --headless`."""

from __future__ import annotations

import argparse
import asyncio

from operator_tui import logs
from operator_tui.commands.common import settings_from
from operator_tui.errors import UserError


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be positive")
    logs.setup(settings.log_level)
    from operator_tui.headless import run_headless

    return asyncio.run(run_headless(settings, args.duration, getattr(args, "attach_run", None)))
