"""`operator-tui sim tikv`: the PD-compatible simulator as a process of its own."""

from __future__ import annotations

import argparse

from operator_tui.errors import UserError


def run(args: argparse.Namespace) -> int:
    from subjects.tikv.sim import SimConfig, run_until_signal

    if args.stores < 1:
        raise UserError("--stores must be at least 1")
    if args.regions < 1:
        raise UserError("--regions must be at least 1")
    if not 1 <= args.replicas <= args.stores:
        raise UserError(f"--replicas must be between 1 and --stores ({args.stores})")
    if args.time_scale <= 0:
        raise UserError("--time-scale must be positive")
    if not 0 <= args.port <= 65535:
        raise UserError("--port must be between 0 and 65535")
    config = SimConfig(
        host=args.host,
        port=args.port,
        stores=args.stores,
        regions=args.regions,
        replicas=args.replicas,
        time_scale=args.time_scale,
        seed=args.seed,
        status_base_port=args.status_base_port,
    )
    try:
        return run_until_signal(config, log_level=args.log_level)
    except OSError as e:
        raise UserError(f"cannot start the simulator on {args.host}:{args.port}: {e.strerror or e}") from e
