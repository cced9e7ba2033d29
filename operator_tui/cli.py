"""The `operator-tui` command line.

Parsing only: every command lives in `operator_tui.commands.<name>` and is imported when it runs,
so `operator-tui --help` never pays for Textual, aiosqlite, httpx or anthropic.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

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
  operator-tui --eval scenarios/campaigns/ci.yaml --junit j.xml   a campaign for CI; exit code = verdict
  operator-tui demo tikv --autoplay              a walkthrough of the whole loop

Every option can also come from the config file (--config, TOML) or from an
environment variable OPERATOR_TUI_<OPTION> (e.g. OPERATOR_TUI_DB); flags win."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with where to look), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_flag(group: argparse._ArgumentGroup, flag: Any, dest: str, **extra: Any) -> None:
    kwargs: dict[str, Any] = {"dest": dest, "help": flag.help, **extra}
    if flag.store_true:
        kwargs["action"] = "store_true"
    else:
        kwargs["metavar"] = flag.metavar or flag.key.split(".")[-1].upper()
        if flag.type is not None:
            kwargs["type"] = flag.type
        if flag.choices is not None:
            kwargs["choices"] = flag.choices
    group.add_argument(flag.option, **kwargs)


def _option_groups(p: argparse.ArgumentParser, *, sub: bool, subject: bool = True, policy: bool = True) -> None:
    """The options every command understands. On subcommands they default to SUPPRESS, so that
    `operator-tui --db X tickets list` and `operator-tui tickets list --db X` mean the same."""
    from subjects import registry

    d = {"default": argparse.SUPPRESS} if sub else {}
    g = p.add_argument_group("store and config")
    g.add_argument("--db", metavar="PATH", help="SQLite store (default: $XDG_DATA_HOME/operator-tui/operator.db)", **d)
    g.add_argument("--config", metavar="FILE", help="TOML config file", **d)
    g.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="log verbosity (default: info)", **d)
    g.add_argument("--audit-key-file", metavar="FILE", help="sign (and verify) audit events with the secret in "
                   "FILE, kept outside the store's folder", **d)
    if subject:
        g = p.add_argument_group("subject")
        g.add_argument("--subject", choices=registry.names(),
                       help=f"kind of system to watch (default: {registry.DEFAULT})", **d)
        g.add_argument("--sim", action="store_true", help="with no endpoint given, watch the subject's embedded "
                       "simulated cluster (the console does this by itself)", **d)
        g.add_argument("--lab-dir", metavar="DIR", help="where local labs keep their state (default: beside the store)",
                       **d)
        for plugin in registry.plugins():
            for flag in plugin.flags:
                _add_flag(g, flag, flag_dest(plugin.name, flag), **d)
    if policy:
        g = p.add_argument_group("agent and policy")
        g.add_argument("--agent", choices=["embedded", "claude", "none"], help="diagnoser (default: embedded)", **d)
        g.add_argument("--mode", choices=["observe", "propose", "execute"],
                       help="what the agent may do (default: what the store holds, else execute)", **d)
        g.add_argument("--approval", choices=["off", "risky", "all"],
                       help="which actions wait for a human (default: what the store holds, else off; against "
                            "a real cluster, risky)", **d)
        g.add_argument("--interval", type=float, metavar="S", help="seconds between observations (default: 1)", **d)


def flag_dest(subject: str, flag: Any) -> str:
    """Where argparse keeps a subject's flag (the same rule as operator_tui.config.flag_dest,
    repeated here so that parsing never imports pydantic)."""
    return f"{subject}__{flag.key.replace('.', '__')}"


def docker_demo_names(demos: list[str]) -> list[str]:
    """The demos whose lab can run as containers (it has the lab option `docker`)."""
    from subjects import registry

    return [name for name in demos if registry.plugin(name).embedded is None
            and any(flag.key == "docker" for flag in registry.plugin(name).lab_flags)]


def demo_names() -> list[str]:
    """The subjects with a demo: a chapter file in scenarios/demos (listed, not parsed: --help stays fast)."""
    import scenarios

    return sorted(p.stem for p in (Path(scenarios.__file__).parent / "demos").glob("*.yaml"))


def build_parser() -> argparse.ArgumentParser:
    from subjects import registry

    parser = Parser(
        prog="operator-tui",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"operator-tui {__version__}")
    ci = parser.add_argument_group("headless evaluation (CI)")
    ci.add_argument("--eval", metavar="FILE", dest="eval_file",
                    help="run this campaign headless and exit with its verdict: 0 all thresholds pass, 1 a threshold "
                         "failed, 2 spec or usage error, 3 incomplete, 4 integrity failure")
    ci.add_argument("--junit", metavar="PATH", help="with --eval: write the JUnit XML report here")
    ci.add_argument("--json", metavar="PATH", dest="json_path", help="with --eval: write the JSON report here")
    ci.add_argument("--markdown", metavar="PATH", help="with --eval: write the Markdown summary here")
    ci.add_argument("--parallel", type=int, metavar="N", help="with --eval: trial slots at once")
    ci.add_argument("--shard", metavar="K/N", help="with --eval: run only shard K of N")
    ci.add_argument("--allow-over-budget", action="store_true",
                    help="with --eval: start even when the worst case exceeds the time budget")
    _option_groups(parser, sub=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    run = sub.add_parser(
        "run",
        help="monitor (and agent) without a screen",
        description="Observe the subject, open and resolve tickets (and let the agent work) without a screen. "
                    "Logs one line per event to stderr; stops cleanly on SIGINT/SIGTERM.",
    )
    run.add_argument("--headless", action="store_true", help="accepted for clarity: `run` never draws a screen")
    run.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until signalled)")
    # The eval harness runs each trial's operator under the trial's own run (internal).
    run.add_argument("--attach-run", type=int, metavar="ID", help=argparse.SUPPRESS)
    _option_groups(run, sub=True)

    tickets = sub.add_parser("tickets", help="list and show tickets", description="Tickets in the store.")
    t_sub = tickets.add_subparsers(dest="tickets_command", metavar="list|show", required=True)
    t_list = t_sub.add_parser("list", help="list tickets, newest first")
    t_list.add_argument("--status", choices=["open", "investigating", "escalated", "resolved", "active"],
                        help="only tickets in this status (active: open, investigating or escalated)")
    t_list.add_argument("--run", metavar="ID", help="only tickets of this run (a number, or 'latest')")
    t_list.add_argument("--limit", type=int, default=200, help="at most this many (default: 200)")
    t_list.add_argument("--json", action="store_true", help="machine-readable output")
    t_show = t_sub.add_parser("show", help="one ticket with its timeline, diagnosis and actions")
    t_show.add_argument("ticket_id", type=int, metavar="ID")
    t_show.add_argument("--json", action="store_true", help="machine-readable output")
    for p in (t_list, t_show):
        _option_groups(p, sub=True, subject=False, policy=False)

    sim = sub.add_parser("sim", help="run a simulated cluster on its own", description="Run a simulated cluster.")
    sim_sub = sim.add_subparsers(dest="sim_kind", metavar="KIND", required=True)
    for plugin in registry.plugins():
        if plugin.simulator is not None:
            tool = plugin.simulator
            simp = sim_sub.add_parser(plugin.name, help=tool.help, description=tool.description)
            for flag in tool.flags:
                _add_flag(simp, flag, flag.key, default=flag.default)

    actions = sub.add_parser("actions", help="list, run, approve, reject and cancel actions",
                             description="Actions go through the engine: policy, approval, kill switch, audit.")
    a_sub = actions.add_subparsers(dest="actions_command", metavar="list|show|run|approve|reject|cancel|catalogue",
                                   required=True)
    a_list = a_sub.add_parser("list", help="actions, newest first")
    a_list.add_argument("--state", action="append", help="only these states (repeatable)")
    a_list.add_argument("--ticket", type=int, metavar="ID", help="only actions for this ticket")
    a_list.add_argument("--limit", type=int, default=200)
    a_list.add_argument("--json", action="store_true", help="machine-readable output")
    a_show = a_sub.add_parser("show", help="one action with its state history")
    a_show.add_argument("action_id", type=int, metavar="ID")
    a_show.add_argument("--json", action="store_true", help="machine-readable output")
    a_run = a_sub.add_parser("run", help="run an action by hand, through the engine",
                             description="Run one action through the engine, as a human. Waits for the result "
                                         "(or for an approval from another process, when the policy asks for one).")
    a_run.add_argument("name", metavar="NAME", help="action name (see `actions catalogue`)")
    a_run.add_argument("--param", action="append", default=[], metavar="K=V",
                       help="a parameter (repeatable); V is read as JSON when it parses, else as text")
    a_run.add_argument("--dry-run", action="store_true", help="show what would be sent and whether it would run")
    a_run.add_argument("--ticket", type=int, metavar="ID", help="the ticket this action is for")
    a_run.add_argument("--delay", type=float, default=0.0, metavar="S",
                       help="run it S seconds from now (the command waits until then)")
    a_run.add_argument("--json", action="store_true", help="print the final action record as JSON")
    a_cat = a_sub.add_parser("catalogue", help="the actions this subject offers, with their parameters")
    a_cat.add_argument("--json", action="store_true", help="machine-readable output (JSON schemas)")
    a_ap = a_sub.add_parser("approve", help="approve an action awaiting approval")
    a_ap.add_argument("action_id", type=int, metavar="ID")
    a_rj = a_sub.add_parser("reject", help="reject an action awaiting approval")
    a_rj.add_argument("action_id", type=int, metavar="ID")
    a_rj.add_argument("--reason", default="", help="why (recorded in the audit log)")
    a_cn = a_sub.add_parser("cancel", help="cancel a pending action, or stop a running one",
                            description="A pending action is cancelled at once. A running one is stopped by the "
                                        "process running it; if its request may already have been sent it becomes "
                                        "`unknown`, is reconciled with the cluster, and is undone through its "
                                        "declared undo when it took effect.")
    a_cn.add_argument("action_id", type=int, metavar="ID")
    a_cn.add_argument("--reason", default="", help="why (recorded in the audit log)")
    for p in (a_list, a_show, a_ap, a_rj, a_cn):
        _option_groups(p, sub=True, subject=False, policy=False)
    for p in (a_run, a_cat):
        _option_groups(p, sub=True, policy=False)

    ks = sub.add_parser("killswitch", help="engage, release or show the kill switch",
                        description="Engaged, the kill switch cancels pending and running actions and blocks new "
                                    "ones, in every process using the store, until released.")
    ks.add_argument("ks_command", choices=["on", "off", "status"], metavar="on|off|status")
    ks.add_argument("--json", action="store_true", help="machine-readable output (status)")
    _option_groups(ks, sub=True, subject=False, policy=False)
    mode = sub.add_parser("mode", help="show or set what the agent may do",
                          description="observe: the agent only diagnoses and runs no action (people's own "
                                      "actions still run); propose: the agent's actions wait for a human; "
                                      "execute: the agent acts on its own (within the approval policy).")
    mode.add_argument("value", nargs="?", choices=["observe", "propose", "execute"], metavar="observe|propose|execute")
    _option_groups(mode, sub=True, subject=False, policy=False)
    approval = sub.add_parser("approval", help="show or set which actions need a human's approval",
                              description="off: none; risky: high and destructive ones; all: every action.")
    approval.add_argument("value", nargs="?", choices=["off", "risky", "all"], metavar="off|risky|all")
    _option_groups(approval, sub=True, subject=False, policy=False)
    audit = sub.add_parser("audit", help="list or verify the audit log")
    au_sub = audit.add_subparsers(dest="audit_command", metavar="list|verify", required=True)
    au_list = au_sub.add_parser("list", help="audit events, oldest first")
    au_list.add_argument("--limit", type=int, default=100, help="the newest N events (default: 100)")
    au_list.add_argument("--ref", help="only events about this (e.g. action:12, fault:3)")
    au_list.add_argument("--json", action="store_true", help="machine-readable output")
    au_verify = au_sub.add_parser("verify", help="check the hash chain; exit 1 naming the first bad event")
    au_verify.add_argument("--json", action="store_true", help="machine-readable output")
    for p in (au_list, au_verify):
        _option_groups(p, sub=True, subject=False, policy=False)

    chaos = sub.add_parser("chaos", help="inject and revert faults, each recorded with what undoes it",
                           description="Faults for every subject and lab. Each injected fault is recorded in the "
                                       "store with exactly what undoes it; `chaos revert --all` undoes them all.")
    c_sub = chaos.add_subparsers(dest="chaos_command", metavar="inject|revert|list|kinds", required=True)
    c_inj = c_sub.add_parser("inject", help="inject a fault")
    c_inj.add_argument("kind", metavar="KIND", help="fault kind (see `chaos kinds`)")
    c_inj.add_argument("--target", metavar="ID", help="what to hit (a store id, a node id, ...)")
    c_inj.add_argument("--param", action="append", default=[], metavar="K=V", help="fault parameter (repeatable)")
    c_inj.add_argument("--json", action="store_true", help="machine-readable output")
    c_rev = c_sub.add_parser("revert", help="revert one fault, or all active ones")
    c_rev.add_argument("fault_id", nargs="?", type=int, metavar="ID")
    c_rev.add_argument("--all", action="store_true", help="revert every active fault")
    c_list = c_sub.add_parser("list", help="faults, oldest first")
    c_list.add_argument("--active", action="store_true", help="only faults not reverted yet")
    c_list.add_argument("--json", action="store_true", help="machine-readable output")
    c_kinds = c_sub.add_parser("kinds", help="the fault kinds a subject offers")
    for p in (c_inj, c_rev, c_list, c_kinds):
        _option_groups(p, sub=True, policy=False)

    demo = sub.add_parser(
        "demo",
        help="a chapter-by-chapter walkthrough of the whole loop on a fresh lab",
        description="The console on a fresh lab of its own, with a narration panel: a healthy cluster, load, a "
                    "fault after a visible countdown, then detection, diagnosis, remediation and verification as "
                    "the real monitor and agent do them, and the incident's timeline. Everything it started is "
                    "stopped and its fault reverted when it ends (q, ctrl+c, SIGTERM).",
        epilog="keys: space, enter or right: next chapter; left: back (nothing is undone); q: quit\n"
               "examples:\n"
               "  operator-tui demo tikv                       present it, chapter by chapter\n"
               "  operator-tui demo ratelimiter --autoplay     play it through (recordings, CI)\n"
               "  operator-tui demo tikv --approval all        approve the agent's action yourself (y)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demos = demo_names()
    demo.add_argument("demo_subject", choices=demos, metavar="SUBJECT", help="which demo: " + ", ".join(demos))
    demo.add_argument("--autoplay", action="store_true",
                      help="advance by itself when a chapter is done (the approval dialog still waits for you)")
    demo.add_argument("--approval", dest="demo_approval", choices=["off", "all"], default="off",
                      help="off: the agent acts on its own; all: every action waits for your y/n (default: off)")
    demo.add_argument("--speed", type=float, default=1.0, metavar="K",
                      help="countdowns and autoplay pauses run K times faster (default: 1)")
    demo.add_argument("--agent", choices=["embedded", "claude"], default=argparse.SUPPRESS,
                      help="diagnoser (default: embedded; claude needs ANTHROPIC_API_KEY)")
    demo.add_argument("--screenshots", metavar="DIR", help="save an SVG of the screen at the end of each chapter")
    demo.add_argument("--chapters", metavar="FILE", help="play this chapter file instead of the built-in one")
    demo.add_argument("--docker", dest="demo_docker", action="store_true",
                      help="run the lab as containers on a Docker engine (DOCKER_HOST, default: the project's local "
                           "engine) and play the subject's Docker chapters (its fault through the engine); every "
                           "container is removed at the end. Demos with a Docker lab: "
                           + (", ".join(docker_demo_names(demos)) or "none"))
    demo.add_argument("--lab-dir", metavar="DIR", default=argparse.SUPPRESS,
                      help="labs live here, the demo's in DIR/demo (default: $XDG_DATA_HOME/operator-tui/labs)")
    _option_groups(demo, sub=True, subject=False, policy=False)

    lab = sub.add_parser(
        "lab",
        help="start, stop and inspect local clusters",
        description="Local clusters on loopback, one per subject: " + "; ".join(
            f"{p.name}: {p.summary}" for p in registry.plugins() if p.lab),
    )
    lab_subjects = [p.name for p in registry.plugins() if p.lab]
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="up|down|status", required=True)
    lab_up = lab_sub.add_parser("up", help="start a local cluster in the background")
    lab_up.add_argument("lab_subject", choices=lab_subjects, metavar="SUBJECT")
    users: dict[str, list[str]] = {}
    first: dict[str, Any] = {}
    for plugin in registry.plugins():
        for flag in plugin.lab_flags:
            users.setdefault(flag.option, []).append(plugin.name)
            first.setdefault(flag.option, flag)
    for option, flag in first.items():
        # A flag several labs share says so: "ratelimiter, etcd: do not start the load generator".
        text = flag.help.split(": ", 1)[1] if flag.help.split(": ", 1)[0] in users[option] else flag.help
        flag = dataclasses.replace(flag, help=f"{', '.join(users[option])}: {text}")
        _add_flag(lab_up, flag, f"lab__{flag.key}", default=None if not flag.store_true else False)
    for name, text in (("down", "stop a local cluster and remove what it left"), ("status", "show a local cluster")):
        p = lab_sub.add_parser(name, help=text)
        p.add_argument("lab_subject", choices=lab_subjects, metavar="SUBJECT")
        if name == "status":
            p.add_argument("--json", action="store_true", help="machine-readable output")
        else:  # the store holds the faults injected into the lab: they end with it
            _option_groups(p, sub=True, subject=False, policy=False)
    for p in (lab, *lab_sub.choices.values()):
        # SUPPRESS: a subcommand's unset flag must not overwrite the same flag given before it.
        p.add_argument(
            "--lab-dir",
            metavar="DIR",
            default=argparse.SUPPRESS,
            help="where labs keep their state (default: beside the store)",
        )

    _eval_parser(sub)
    return parser


def _eval_parser(sub: Any) -> None:
    from subjects import registry

    ev = sub.add_parser("eval", help="evaluation: trials, campaigns, comparisons, reports, clean-up",
                        description="Evaluate the operator: inject a real fault into a fresh lab, watch it with the "
                                    "harness's own oracle, score detection, recovery and safety, revert everything. "
                                    "Campaigns (YAML) run many such trials, pair variants on the same seeds and "
                                    "judge thresholds.")
    e_sub = ev.add_subparsers(dest="eval_command", metavar="COMMAND", required=True)
    e_run = e_sub.add_parser(
        "run", help="run N trials of one fault under one variant",
        description="Run trials: lab reset, healthy, operator start, workload, pre-window, inject (effect checked), "
                    "observe until the oracle is clean and held (or the budget), quiesce, revert (verified), capture. "
                    "Exit 4 when a fault or lab could not be verified undone.",
        epilog="example: operator-tui eval run --subject tikv --chaos kill_store --trials 3 --json")
    e_run.add_argument("--subject", dest="eval_subject", choices=registry.names(), required=True, help="the subject to evaluate")
    e_run.add_argument("--chaos", required=True, metavar="KIND", help="the fault kind, or `none` for a no-fault "
                       "control")
    e_run.add_argument("--target", metavar="ID", help="what to hit (default: chosen with the seed)")
    e_run.add_argument("--param", action="append", default=[], metavar="K=V", help="fault parameter (repeatable), "
                       "e.g. duration_s=20 for a fault that ends by itself")
    e_run.add_argument("--baseline", action="store_true", help="the no-agent baseline: monitor in observe mode")
    e_run.add_argument("--variant", choices=["embedded", "claude"], help="the agent variant (default: embedded)")
    e_run.add_argument("--model", help="claude variant: the model (default: the config's)")
    e_run.add_argument("--trials", type=int, default=1, metavar="N", help="how many trials (default: 1)")
    e_run.add_argument("--seed", type=int, default=0, metavar="N", help="root seed; trials of the same seed hit the "
                       "same targets in every variant (default: 0)")
    e_run.add_argument("--budget", type=float, default=60.0, metavar="S", help="observe budget after the fault "
                       "(default: 60)")
    e_run.add_argument("--pre-window", type=float, default=5.0, metavar="S", help="steady window before the fault, "
                       "where tickets count as false positives (default: 5)")
    e_run.add_argument("--hold", type=float, default=5.0, metavar="S", help="how long the oracle must stay clean "
                       "(default: 5)")
    e_run.add_argument("--clean-checks", type=int, default=3, metavar="N", help="consecutive clean oracle checks "
                       "before the hold (default: 3)")
    e_run.add_argument("--slot", type=int, default=0, metavar="K", help="address block 127.(K+10).0.0/24 "
                       "(default: 0)")
    e_run.add_argument("--port-base", type=int, default=24000, metavar="P", help="first port of the lab "
                       "(default: 24000)")
    e_run.add_argument("--artifacts", metavar="DIR", help="trial folders (default: eval/ beside the store)")
    e_run.add_argument("--json", action="store_true", help="the report as JSON (schema operator-eval-report/1)")
    e_list = e_sub.add_parser("list", help="evaluations, newest first")
    e_list.add_argument("--limit", type=int, default=50)
    e_list.add_argument("--json", action="store_true", help="machine-readable output")
    e_show = e_sub.add_parser("show", help="a trial (phases, faults with undo and verification, scores, "
                              "the incident's events) or a campaign (c<ID>)")
    e_show.add_argument("id", metavar="ID", help="a trial id (12) or a campaign id (c3)")
    e_show.add_argument("--json", action="store_true", help="machine-readable output")
    e_an = e_sub.add_parser("analyze", help="recompute a trial's (or campaign's) scores from its stored events")
    e_an.add_argument("id", metavar="ID", help="a trial id (12) or a campaign id (c3)")
    e_an.add_argument("--json", action="store_true", help="machine-readable output")
    e_cl = e_sub.add_parser("cleanup", help="undo every fault and lab that crashed trials left behind")
    e_cl.add_argument("--json", action="store_true", help="machine-readable output")
    e_br = e_sub.add_parser(
        "browse", help="the console's eval browser: campaigns, matrix, trials, timelines, plots",
        description="Open the console on its Eval screen, on the store only (no cluster needed): the campaigns "
                    "(a running one updates live), each campaign's scenario x variant matrix with Wilson intervals "
                    "and its paired comparisons, its trials (/ filters, s sorts), each trial's timeline, and plots. "
                    "enter drills down, escape goes back, c compares two variants, q quits.",
        epilog="example: operator-tui --db ci.db eval browse 1")
    e_br.add_argument("campaign_id", type=int, nargs="?", metavar="ID", help="open this campaign at once")
    for p in (e_run, e_list, e_show, e_an, e_cl, e_br, *add_campaign_parsers(e_sub)):
        _option_groups(p, sub=True, subject=False, policy=False)


def add_campaign_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parallel", type=int, metavar="N", help="trial slots at once, each on its own core and address "
                   "block (default: the campaign's `parallel`)")
    p.add_argument("--shard", metavar="K/N", help="run only shard K of N (whole pairs); merge the shards' stores with "
                   "`eval merge`")
    p.add_argument("--allow-over-budget", action="store_true", help="start even when the worst case exceeds the "
                   "campaign's time budget (trials past the budget are skipped)")


def add_report_options(p: argparse.ArgumentParser, *, json_flag: str = "--json") -> None:
    p.add_argument("--junit", metavar="PATH", help="write the JUnit XML report here")
    p.add_argument(json_flag, dest="json_path", metavar="PATH", help="write the JSON report "
                   "(operator-eval-report/1) here")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown summary here")


def add_campaign_parsers(e_sub: Any) -> list[argparse.ArgumentParser]:
    """`operator-tui eval campaign|resume|compare|compare-baseline|compare-variants|merge|report`:
    campaigns, comparisons and reports (issue 13)."""
    camp = e_sub.add_parser("campaign", help="run a campaign file",
                            description="Run every trial of a campaign file (scenarios/campaigns/*.yaml) and judge "
                                        "its thresholds. Exit codes: 0 all thresholds pass, 1 a threshold failed, 2 "
                                        "spec or usage error, 3 incomplete, 4 integrity failure.")
    camp.add_argument("file", metavar="FILE", help="campaign YAML")
    add_campaign_options(camp)
    add_report_options(camp, json_flag="--report-json")
    camp.add_argument("--plan", action="store_true", help="check the file and print the plan; run nothing")
    res = e_sub.add_parser("resume", help="run a campaign's missing and invalid trials",
                           description="Re-run only the trials of campaign ID that are missing or invalid, and only "
                                       "when its spec (and prompt files) still hash the same.")
    res.add_argument("campaign_id", type=int, metavar="ID")
    res.add_argument("--parallel", type=int, metavar="N", help="trial slots at once")
    res.add_argument("--allow-over-budget", action="store_true", help="start even when the worst case is over budget")
    add_report_options(res, json_flag="--report-json")
    cmp_ = e_sub.add_parser("compare", help="compare two campaigns, variant by variant, on the same seeds",
                            description="Pair the trials of campaign A with those of campaign B on scenario, seed and "
                                        "repeat (only scenarios whose spec hashes match), variant by variant, or "
                                        "A:VARIANT against B:VARIANT.")
    cmp_.add_argument("a", metavar="A", help="campaign id, or ID:VARIANT")
    cmp_.add_argument("b", metavar="B", help="campaign id, or ID:VARIANT")
    cb = e_sub.add_parser("compare-baseline", help="each agent variant against the baseline, paired")
    cb.add_argument("campaign_id", type=int, metavar="ID")
    cv = e_sub.add_parser("compare-variants", help="the agent variants against each other, paired")
    cv.add_argument("campaign_id", type=int, metavar="ID")
    mg = e_sub.add_parser("merge", help="merge shard stores into one campaign",
                          description="Copy the campaigns, trials and their runs from each STORE into the store given "
                                      "by --db; the shards of one campaign (same spec hash) become one campaign whose "
                                      "report equals an unsharded run's.")
    mg.add_argument("stores", nargs="+", metavar="STORE")
    rep = e_sub.add_parser("report", help="a campaign's report, again, from the store",
                           description="Print a stored campaign's summary and write its reports again; the exit "
                                       "code is the campaign's verdict, as with --eval (0, 1, 3 or 4).")
    rep.add_argument("campaign_id", type=int, metavar="ID")
    add_report_options(rep, json_flag="--report-json")
    for p in (camp, res, cmp_, cb, cv, mg, rep):
        p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    return [camp, res, cmp_, cb, cv, mg, rep]


CAMPAIGN_COMMANDS = ("campaign", "resume", "compare", "compare-baseline", "compare-variants", "merge", "report")

# command -> module in operator_tui.commands that defines `run(args) -> int`
COMMANDS = {
    None: "console",
    "run": "run",
    "sim": "sim",
    "lab": "lab",
    "tickets": "tickets",
    "actions": "actions",
    "killswitch": "policy",
    "mode": "policy",
    "approval": "policy",
    "audit": "audit",
    "chaos": "chaos",
    "eval": "eval",
    "--eval": "eval_campaign",
    "eval browse": "eval_browse",
    "demo": "demo",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command
    if getattr(args, "eval_file", None) is not None:
        if command is not None:
            parser.error("--eval runs a campaign on its own; give no command with it")
        command = "--eval"
    elif command == "eval" and args.eval_command in CAMPAIGN_COMMANDS:
        command = "--eval"  # the campaign commands live beside --eval
    elif command == "eval" and args.eval_command == "browse":
        command = "eval browse"
    elif any(getattr(args, k, None) for k in ("junit", "json_path", "markdown", "parallel", "shard",
                                                 "allow_over_budget")) and command is None:
        parser.error("--junit, --json, --markdown, --parallel, --shard and --allow-over-budget go with --eval FILE")
    module = importlib.import_module(f"operator_tui.commands.{COMMANDS[command]}")
    from operator_tui.errors import UserError
    from subjects.plugin import PluginError

    try:
        return int(module.run(args) or 0)
    except UserError as e:
        print(f"operator-tui: error: {e}", file=sys.stderr)
        return e.exit_code
    except PluginError as e:
        print(f"operator-tui: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`... --json | head`): nothing more to say, and no traceback. Point
        # stdout at /dev/null so that the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # as if killed by SIGPIPE, like any other command in a pipeline


if __name__ == "__main__":
    raise SystemExit(main())
