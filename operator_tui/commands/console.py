"""`operator-tui` with no command: the console."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from operator_tui.app import run_console

    return run_console(args)
