"""The console's commands for the palette (ctrl+p or ?): screens, policy, kill switch, chaos.

Each command is a title, a help line and an app action string; the app turns them into palette
entries. Chaos commands are built from what the cluster shows now (one per store and fault kind).
"""

from __future__ import annotations

from dataclasses import dataclass

from screens.state import ConsoleState
from widgets.status import SCREENS

MODES = {"observe": "the agent only diagnoses and runs no action (actions people run by hand still run)",
         "propose": "every agent action waits for a human",
         "execute": "the agent acts on its own, within the approval policy"}
APPROVALS = {"off": "no action waits for a human", "risky": "high and destructive actions wait for a human",
             "all": "every action waits for a human"}
NODE_TARGETS = ("node", "node_id", "target")


@dataclass(frozen=True)
class PaletteCommand:
    title: str
    help: str
    action: str


@dataclass(frozen=True)
class ChaosKind:
    name: str
    description: str
    target: str | None  # the parameter the target fills (store_id, region_id, node...), or None


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def console_commands(state: ConsoleState, chaos: list[ChaosKind] | None) -> list[PaletteCommand]:
    out = [PaletteCommand(f"Go to: {label}", f"show the {label.lower()} screen (key {key})", f"show('{mode}')")
           for key, mode, label in SCREENS]
    policy = state.policy
    if policy is not None and policy.killswitch:
        out.append(PaletteCommand("Kill switch: release", f"engaged by {policy.killswitch_by}; let actions run again",
                                  "killswitch"))
    else:
        out.append(PaletteCommand("Kill switch: engage", "cancel pending actions, stop running ones (reconciled if "
                                  "already sent), block new ones", "killswitch"))
    for mode, text in MODES.items():
        current = " (current)" if policy is not None and policy.mode == mode else ""
        out.append(PaletteCommand(f"Mode: {mode}{current}", text, f"set_mode('{mode}')"))
    for approval, text in APPROVALS.items():
        current = " (current)" if policy is not None and policy.approval == approval else ""
        out.append(PaletteCommand(f"Approval: {approval}{current}", text, f"set_approval('{approval}')"))
    out.append(PaletteCommand("Review approvals", f"{len(state.awaiting)} action(s) waiting for a decision",
                              "review_approvals"))
    out.append(PaletteCommand("Audit: verify the chain", "walk the audit log's hash chain", "verify_audit"))
    if chaos:
        out.extend(chaos_commands(state, chaos))
    return out


def chaos_commands(state: ConsoleState, kinds: list[ChaosKind]) -> list[PaletteCommand]:
    out: list[PaletteCommand] = []
    nodes = state.observation.nodes if state.observation is not None else []
    stores = [n for n in nodes if n.kind == "store"]
    members = [n for n in nodes if n.kind not in ("pd",)]
    for kind in kinds:
        if kind.target == "store_id":
            targets = [(n.id, f"store {n.id}") for n in stores if n.id.isdigit()]
        elif kind.target in NODE_TARGETS:
            targets = [(n.id, n.name or n.id) for n in members]
        else:
            targets = [("", "")]
        for target, label in targets:
            where = f" on {label}" if label else ""
            out.append(PaletteCommand(f"Chaos: {kind.name}{where}", kind.description,
                                      f"chaos({_quote(kind.name)}, {_quote(target)})"))
    for fault in state.faults:
        where = f" on {fault.target}" if fault.target else ""
        out.append(PaletteCommand(f"Chaos: revert fault #{fault.id} ({fault.kind}{where})",
                                  f"undo it: {fault.record.get('detail') or fault.kind}", f"revert_fault({fault.id})"))
    if state.faults:
        out.append(PaletteCommand("Chaos: revert all faults", f"{len(state.faults)} active", "revert_all_faults"))
    return out
