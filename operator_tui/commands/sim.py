"""`operator-tui sim SUBJECT`: a subject's simulator as a process of its own (from its plugin)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from subjects import registry
    from subjects.plugin import load

    tool = registry.plugin(args.sim_kind).simulator
    options = {flag.key: getattr(args, flag.key) for flag in tool.flags}
    return int(load(tool.run)(options) or 0)
