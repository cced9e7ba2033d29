"""`operator-tui lab up|down|status SUBJECT`: local clusters on loopback.

One entry per subject in LABS; each subject module is imported only when its lab is used.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from operator_tui.errors import UserError


def _lab_dir(args: argparse.Namespace, subject: str) -> Path:
    """The subject's run folder, by the same rule as everything else (Settings.lab_folder)."""
    from operator_tui.config import load_settings

    return load_settings(args).lab_folder(subject)


# -- ratelimiter ------------------------------------------------------------------------------


def _ratelimiter(args: argparse.Namespace) -> int:
    from subjects.ratelimiter.lab import LabError, RateLimiterLab

    lab = RateLimiterLab(_lab_dir(args, "ratelimiter"))
    try:
        if args.lab_command == "up":
            return _rl_up(lab, args)
        if args.lab_command == "down":
            return _rl_down(lab)
        return _rl_status(lab, args)
    except LabError as e:
        raise UserError(str(e)) from None


def _rl_up(lab, args: argparse.Namespace) -> int:
    for flag in ("port", "stores", "regions", "time_scale", "seed"):
        if getattr(args, flag, None) is not None:
            raise UserError(
                f"--{flag.replace('_', '-')} is a tikv lab option; the ratelimiter lab does not use it"
            )
    state = lab.up(
        nodes=args.nodes, redis_port=args.redis_port, base_port=args.base_port, load=not args.no_load
    )
    print(f"ratelimiter lab up in {state.run_dir}")
    print(f"  redis   {state.redis_url}  (pid {state.processes['redis'].pid})")
    print(
        f"  proxy   {state.proxy_url}  (pid {state.processes['proxy'].pid}; links "
        + ", ".join(f"{n.id}->{n.link_port}" for n in state.nodes)
        + ")"
    )
    for spec in state.nodes:
        print(f"  {spec.id:<7} {spec.url}  (pid {state.processes[spec.id].pid}, redis via {spec.redis_url})")
    if state.load:
        print(
            f"  load    pid {state.processes['loadgen'].pid}, status in {Path(state.run_dir) / 'loadgen.json'}"
        )
    else:
        print("  load    not started (--no-load)")
    print("stop it with: operator-tui lab down ratelimiter" + _dir_flag(args))
    return 0


def _dir_flag(args: argparse.Namespace) -> str:
    given = getattr(args, "lab_dir", None)
    return f" --lab-dir {given}" if given else ""


def _rl_down(lab) -> int:
    report = lab.down()
    for s in report["stopped"]:
        print(f"{s['name']:<8} pid {s['pid']:<8} {s['outcome']}")
    print(f"no process left; ports {_ranges(report['ports_checked'])} no longer listening")
    for path in report["removed"]:
        print(f"removed {path}")
    print(f"logs kept in {report['logs']}")
    return 0


def _ranges(ports: list[int]) -> str:
    out, start, prev = [], None, None
    for p in sorted(ports):
        if start is None:
            start = prev = p
        elif p == prev + 1:
            prev = p
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = p
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)


def _rl_status(lab, args: argparse.Namespace) -> int:
    status = lab.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"ratelimiter lab in {status['run_dir']} (started {status['started_at']}): {'up' if status['up'] else 'DOWN'}"
    )
    print(f"  redis {status['redis_url']}   proxy {status['proxy_url']}")
    print(f"  {'PROCESS':<8} {'PID':<8} {'STATE':<7} PORT")
    for p in status["processes"]:
        print(f"  {p['name']:<8} {p['pid']:<8} {p['state']:<7} {p['port'] or '-'}")
    print(f"  {'NODE':<8} {'HEALTH':<12} URL")
    for n in status["nodes"]:
        extra = f"  ({n['detail']})" if n["detail"] else ""
        print(f"  {n['id']:<8} {n['health']:<12} {n['url']}{extra}")
    links = status["links"]
    if "error" in links:
        print(f"  links: {links['error']}")
    else:
        text = ", ".join(
            f"{name}={link['mode']}" + (f"({link['delay_ms']}ms)" if link["mode"] == "delay" else "")
            for name, link in links.items()
        )
        print(f"  links: {text}")
    load = status["loadgen"]
    if load:
        r = load["results"]
        print(
            f"  load: {load['sent']} sent in {load['elapsed_s']}s: {r['allowed']} allowed, "
            f"{r['denied']} denied, {r['error']} errors" + (" (finished)" if load.get("done") else "")
        )
    return 0


# -- tikv -------------------------------------------------------------------------------------


def _tikv(args: argparse.Namespace) -> int:
    from subjects.tikv.lab import LabError, lab_down, lab_status, lab_up

    run_dir = _lab_dir(args, "tikv")
    try:
        if args.lab_command == "up":
            for flag in ("redis_port", "base_port"):
                if getattr(args, flag, None) is not None:
                    raise UserError(f"--{flag.replace('_', '-')} is a ratelimiter lab option; the tikv lab does not use it")
            state = lab_up(run_dir, port=2379 if args.port is None else args.port, stores=args.stores or 5,
                           regions=args.regions or 200, time_scale=args.time_scale or 1.0, seed=args.seed or 0)
            print(f"tikv lab up: simulator pid {state['pid']}, PD at {state['pd_url']} ({state['stores']} stores, "
                  f"{state['regions']} regions, time-scale {state['time_scale']:g})")
            print(f"  watch it:  operator-tui --pd {state['pd_url']}")
            print("  stop it:   operator-tui lab down tikv" + _dir_flag(args))
            return 0
        if args.lab_command == "down":
            print(lab_down(run_dir))
            return 0
        state = lab_status(run_dir)
        if args.json:
            print(json.dumps(state or {"up": False}, indent=2))
        elif state is None:
            print("tikv lab: not up")
        else:
            print(f"tikv lab: simulator pid {state['pid']} {'running' if state['alive'] else 'DEAD'} at "
                  f"{state['pd_url']} ({state.get('stores', '?')} stores)")
        return 0
    except LabError as e:
        raise UserError(str(e)) from None


# subject -> handler; adding a lab is one entry here.
LABS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ratelimiter": _ratelimiter,
    "tikv": _tikv,
}


def run(args: argparse.Namespace) -> int:
    handler = LABS.get(args.lab_subject)
    if handler is None:
        raise UserError(f"no lab for {args.lab_subject!r}; labs: {', '.join(LABS)}")
    return handler(args)
