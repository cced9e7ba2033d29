"""Did an etcd fault take effect, and is nothing of it left? One check of each per kind.

``effect(lab, record)`` and ``reverted(lab, record)`` look once (``wait`` in the rate limiter's
`fault_checks` polls); `record` is a fault record of `subjects.etcd.faults`. ``reverted`` with
``lab=None`` (the lab is gone) checks what can outlive a lab: an iptables chain, a tracer.

| kind             | effect                                                    | reverted                                   |
|------------------|-----------------------------------------------------------|--------------------------------------------|
| kill_member,     | the process (pid + start time) is gone, the port refuses  | the member runs and follows a leader       |
| stop_member      |                                                           |                                            |
| restart_member   | another process runs the member and follows a leader      | the member runs and follows a leader       |
| pause_member     | /proc/PID/status State T                                  | not stopped; follows a leader              |
| partition_member | chain listed with its jump, counters above zero; the      | chain absent from `iptables -S`; the member|
|                  | member has no leader                                      | follows a leader                           |
| disk_full        | the member exited, its disk has (about) no space          | filler gone, space back, member follows    |
| quota_fill       | a NOSPACE alarm                                           | no alarm anywhere, a put succeeds          |
| slow_disk        | strace runs and is the member's tracer (TracerPid)        | no tracer, member not stopped, follows     |
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from subjects import netfault, processes
from subjects.etcd.client import EtcdError, b64, call_sync
from subjects.etcd.lab import EtcdLab, LabError
from subjects.evaluation import Verdict
from subjects.processes import ProcessRecord

FULL_SLACK_BYTES = 1024 * 1024
PROBE_KEY = "/lab/write-probe"


def _rec(name: str, pid: int, starttime: int) -> ProcessRecord:
    return ProcessRecord(name=name, pid=pid, starttime=starttime, argv=[], log="")


def _status(url: str) -> dict | str:
    try:
        return call_sync(url, "/v3/maintenance/status", timeout=1.0)
    except EtcdError as e:
        return e.message


def _follows(lab: EtcdLab, member: str) -> tuple[bool, str]:
    """The member runs, answers and follows a leader, with no error."""
    state = lab.process_state(member)
    if state != processes.RUNNING:
        return False, f"{member}: process {state}"
    reply = _status(lab.member(member).client_url)
    if isinstance(reply, str):
        return False, f"{member}: no status: {reply}"
    leader, errors = str(reply.get("leader") or "0"), reply.get("errors") or []
    if leader == "0" or errors:
        return False, f"{member}: leader {leader}, errors {errors}"
    return True, f"{member}: runs and follows leader {leader}"


def _tracer_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _step(record: dict, op: str) -> dict:
    return next(s for s in record["undo"] if s["op"] == op)


def _alarms(lab: EtcdLab) -> list[str]:
    found = []
    for spec in lab.state.members:
        reply = _status(spec.client_url)
        if not isinstance(reply, str):
            found += [f"{spec.name}: {e}" for e in reply.get("errors") or [] if "alarm" in str(e).lower()]
    return found


# -- effect ---------------------------------------------------------------------------------------

def effect(lab: EtcdLab, record: dict) -> Verdict:
    kind, member, facts = record["kind"], record["target"], record.get("effect") or {}
    try:
        spec = lab.member(member)
        if kind in ("kill_member", "stop_member"):
            old = record.get("planned_process") or facts
            state = processes.process_state(_rec(member, old["pid"], old["starttime"]))
            refused = _refuses(spec.address, lab.state.client_port)
            ok = state in (processes.STOPPED, processes.ZOMBIE) and refused
            return Verdict(ok, f"{member}: process {state}, client port {'refuses' if refused else 'accepts'}",
                           {"process_state": state, "port_refuses": refused})
        if kind == "restart_member":
            old = record["planned_process"]["pid"]
            rec = lab.process(member)
            ok, detail = _follows(lab, member)
            replaced = rec is not None and rec.pid != old
            return Verdict(ok and replaced, f"pid {old} -> {rec.pid if rec else None}; {detail}", {"replaced": replaced})
        if kind == "pause_member":
            step = _step(record, "signal")
            letter = processes.status_letter(step["pid"])
            return Verdict(letter == "T", f"{member} (pid {step['pid']}): State {letter}", {"state": letter})
        if kind == "partition_member":
            chain = netfault.Chain(facts["chain"])
            listed, hooked, packets = chain.exists(), chain.hooked(), chain.packets()
            reply = _status(spec.client_url)
            leaderless = isinstance(reply, dict) and (str(reply.get("leader") or "0") == "0" or any(
                "no leader" in str(e) for e in reply.get("errors") or []))
            ok = listed and hooked and packets > 0 and leaderless
            return Verdict(ok, f"chain {chain.name}: {'listed' if listed else 'MISSING'}, {packets} packets "
                               f"dropped; {member} {'has no leader' if leaderless else 'still follows a leader'}",
                           {"chain": chain.name, "packets": packets, "member_leaderless": leaderless})
        if kind == "disk_full":
            rec = lab.process(member)
            exited = rec is not None and not processes.is_live(rec)
            free = lab.free_bytes(member)
            ok = exited and free is not None and free < FULL_SLACK_BYTES
            return Verdict(ok, f"{member}: {'exited' if exited else 'still runs'}, {free} bytes free",
                           {"exited": exited, "free_bytes": free})
        if kind == "quota_fill":
            alarms = _alarms(lab)
            ok = any("NOSPACE" in a for a in alarms)
            return Verdict(ok, "; ".join(alarms) or "no alarm", {"alarms": alarms})
        if kind == "slow_disk":
            step = _step(record, "stop_tracer")
            tracer = _rec(step["name"], step["pid"], step["starttime"])
            traced_by = _tracer_of(facts["member_pid"])
            ok = processes.is_live(tracer) and traced_by == step["pid"]
            return Verdict(ok, f"strace (pid {step['pid']}) {'runs' if processes.is_live(tracer) else 'is gone'}; "
                               f"{member}'s TracerPid {traced_by}", {"tracer_pid": traced_by})
    except (LabError, KeyError, StopIteration, OSError) as e:
        return Verdict(False, f"could not check: {type(e).__name__}: {e}", {})
    return Verdict(False, f"no effect check for {kind}", {})


def _refuses(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


# -- reverted ------------------------------------------------------------------------------------

def reverted(lab: EtcdLab | None, record: dict) -> Verdict:
    kind, member, facts = record["kind"], record["target"], record.get("effect") or {}
    try:
        if kind == "partition_member":
            listed = bool(netfault.listing_naming(facts["chain"]))
            if listed or lab is None:
                return Verdict(not listed, f"chain {facts['chain']} {'still in' if listed else 'absent from'} "
                                           "iptables -S", {"chain_listed": listed})
        if kind == "slow_disk":
            step = _step(record, "stop_tracer")
            if processes.is_live(_rec(step["name"], step["pid"], step["starttime"])):
                return Verdict(False, f"strace (pid {step['pid']}) still runs", {})
        if lab is None:
            return Verdict(True, "the lab is down: its members, data and disks went with it", {})
        ok, detail = _follows(lab, member)
        evidence: dict = {"member": detail}
        if kind == "disk_full":
            filler = Path(facts["filler"])
            free = lab.free_bytes(member) or 0
            back = not filler.exists() and free >= facts.get("filler_bytes", 0) // 2
            ok, detail = ok and back, f"filler {'STILL THERE' if filler.exists() else 'gone'}, {free} bytes free; {detail}"
            evidence["free_bytes"] = free
        if kind == "quota_fill":
            alarms = _alarms(lab)
            put = _put(lab)
            ok = ok and not alarms and put is None
            detail = f"alarms: {alarms or 'none'}; put: {put or 'ok'}; {detail}"
            evidence.update(alarms=alarms, put=put)
        if kind == "slow_disk":
            traced_by = _tracer_of(facts["member_pid"])
            ok = ok and not traced_by
            detail += f"; TracerPid {traced_by}"
        return Verdict(ok, detail, evidence)
    except (LabError, KeyError, StopIteration, OSError) as e:
        return Verdict(False, f"could not check: {type(e).__name__}: {e}", {})


def _put(lab: EtcdLab) -> str | None:
    """A put through any running member: None when it succeeds, else why not."""
    last = "no member runs"
    for spec in lab.state.members:
        try:
            call_sync(spec.client_url, "/v3/kv/put", {"key": b64(PROBE_KEY), "value": b64(str(time.time()))},
                      timeout=2.0)
            return None
        except EtcdError as e:
            last = e.message
    return last
