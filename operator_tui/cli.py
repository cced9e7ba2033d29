"""The `operator-tui` command line.

Parsing only: every command lives in `operator_tui.commands.<name>` and is imported when it runs,
so `operator-tui --help` never pays for Textual, aiosqlite, httpx or anthropic.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from operator_tui import __version__

DESCRIPTION = """\
An AI operator for distributed systems. With no command it opens the console on an
embedded, simulated TiKV cluster; `--subject tikv --pd URL` points it at a real PD."""

EPILOG = """\
examples:
  operator-tui                                   console on the embedded simulated cluster
  operator-tui --subject tikv --pd http://127.0.0.1:2379
  operator-tui sim tikv --port 23790 --stores 5  the PD-compatible simulator on its own
  operator-tui run --headless --agent embedded   monitor + agent without a screen
  operator-tui tickets list --json               what the monitor has opened

Every option can also come from the config file (--config, TOML) or from an
environment variable OPERATOR_TUI_<OPTION> (e.g. OPERATOR_TUI_DB); flags win."""


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("store and config")
    g.add_argument("--db", metavar="PATH", help="SQLite store (default: $XDG_DATA_HOME/operator-tui/operator.db)")
    g.add_argument("--config", metavar="FILE", help="TOML config file")
    g.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity (default: info)"
    )


def _add_subject(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("subject")
    g.add_argument("--subject", choices=["tikv", "ratelimiter"], help="kind of system to watch (default: tikv)")
    g.add_argument("--pd", metavar="URL", help="PD endpoint; without it an embedded simulator is started")
    g.add_argument("--prometheus", metavar="URL", help="read TiKV metrics through this Prometheus server")
    g.add_argument("--lab-dir", metavar="DIR", help="where local labs keep their state (default: beside the store)")


def _add_policy(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("agent and policy")
    g.add_argument("--agent", choices=["embedded", "claude", "none"], help="diagnoser (default: embedded)")
    g.add_argument("--mode", choices=["observe", "propose", "execute"], help="what the agent may do")
    g.add_argument("--approval", choices=["off", "risky", "all"], help="which actions wait for a human")
    g.add_argument("--interval", type=float, metavar="S", help="seconds between observations (default: 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="operator-tui",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"operator-tui {__version__}")
    _add_common(parser)
    _add_subject(parser)
    _add_policy(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sim = sub.add_parser("sim", help="run a simulated cluster on its own", description="Run a simulated cluster.")
    sim_sub = sim.add_subparsers(dest="sim_kind", metavar="KIND", required=True)
    simt = sim_sub.add_parser(
        "tikv",
        help="a PD-compatible TiKV cluster simulator",
        description="Serve a simulated TiKV cluster through PD's HTTP API on loopback.",
    )
    simt.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    simt.add_argument("--port", type=int, default=2379, help="PD API port, 0 picks a free one (default: 2379)")
    simt.add_argument("--stores", type=int, default=5, help="number of TiKV stores (default: 5)")
    simt.add_argument("--regions", type=int, default=200, help="number of regions (default: 200)")
    simt.add_argument("--replicas", type=int, default=3, help="replicas per region (default: 3)")
    simt.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per wall second (default: 1.0)"
    )
    simt.add_argument("--seed", type=int, default=0, help="random seed; same seed, same cluster (default: 0)")
    simt.add_argument(
        "--status-base-port",
        type=int,
        default=0,
        help="store N's status port is BASE+N; 0 picks free ports (default: 0)",
    )
    simt.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")

    lab = sub.add_parser(
        "lab",
        help="start, stop and inspect local clusters",
        description="Local clusters on loopback: the TiKV simulator, or the rate limiter (redis-server + nodes).",
    )
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="up|down|status", required=True)
    lab_up = lab_sub.add_parser("up", help="start a local cluster in the background")
    lab_up.add_argument("lab_subject", choices=["tikv", "ratelimiter"], metavar="SUBJECT")
    lab_up.add_argument("--nodes", type=int, default=3, help="rate limiter nodes (default: 3)")
    lab_up.add_argument("--redis-port", type=int, help="rate limiter: redis-server port")
    lab_up.add_argument("--base-port", type=int, help="rate limiter: node N listens on BASE+N")
    lab_up.add_argument("--no-load", action="store_true", help="rate limiter: do not start the load generator")
    lab_up.add_argument("--port", type=int, help="tikv: PD API port of the simulator")
    lab_up.add_argument("--stores", type=int, help="tikv: number of stores")
    lab_up.add_argument("--regions", type=int, help="tikv: number of regions")
    lab_up.add_argument("--time-scale", type=float, help="tikv: simulated seconds per wall second")
    lab_up.add_argument("--seed", type=int, help="tikv: random seed")
    for name, text in (("down", "stop a local cluster and remove what it left"), ("status", "show a local cluster")):
        p = lab_sub.add_parser(name, help=text)
        p.add_argument("lab_subject", choices=["tikv", "ratelimiter"], metavar="SUBJECT")
        if name == "status":
            p.add_argument("--json", action="store_true", help="machine-readable output")
    for p in (lab, *lab_sub.choices.values()):
        # SUPPRESS: a subcommand's unset flag must not overwrite the same flag given before it.
        p.add_argument(
            "--lab-dir",
            metavar="DIR",
            default=argparse.SUPPRESS,
            help="where labs keep their state (default: beside the store)",
        )

    return parser


# command -> module in operator_tui.commands that defines `run(args) -> int`
COMMANDS = {
    None: "console",
    "sim": "sim",
    "lab": "lab",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"operator_tui.commands.{COMMANDS[args.command]}")
    from operator_tui.errors import UserError

    try:
        return int(module.run(args) or 0)
    except UserError as e:
        print(f"operator-tui: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
