"""`operator-tui lab up|down|status etcd`: what the lab did, in lines for people and data for --json."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from subjects.etcd.lab import (
    DEFAULT_BLOCK,
    DEFAULT_CLIENT_PORT,
    DEFAULT_PEER_PORT,
    EtcdFlags,
    EtcdLab,
    open_lab,
)
from subjects.plugin import LabReport


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1048576:.1f}M" if n >= 1048576 else f"{n / 1024:.0f}K"


class EtcdLabCommand:
    def up(self, run_dir: Path, options: dict[str, Any]) -> LabReport:
        block = DEFAULT_BLOCK
        if options.get("docker"):
            from subjects.etcd.docker_lab import DEFAULT_DOCKER_BLOCK, DockerEtcdLab

            lab: EtcdLab = DockerEtcdLab(run_dir)
            block = DEFAULT_DOCKER_BLOCK
        else:
            lab = EtcdLab(run_dir)
        flags = EtcdFlags(pre_vote=not options.get("no_pre_vote"),
                          quota_bytes=int(options.get("quota_mb", 16) * 1024 * 1024))
        state = lab.up(members=options.get("members", 3), block=options.get("address_block", block),
                       client_port=options.get("client_port", DEFAULT_CLIENT_PORT),
                       peer_port=options.get("peer_port", DEFAULT_PEER_PORT), load=not options.get("no_load"),
                       load_rate=options.get("load_rate", 20.0), flags=flags, tmpfs_mb=options.get("tmpfs_mb", 192))
        lab.close()
        f = state.flags
        docker = state.runtime == "docker"
        lines = [f"etcd lab up in {state.run_dir} ({len(state.members)} members, heartbeat {f.heartbeat_ms} ms, "
                 f"election {f.election_ms} ms, pre-vote {'on' if f.pre_vote else 'off'}, quota "
                 f"{_size(f.quota_bytes)})"]
        if docker:
            lines.append(f"  containers on {state.docker_host}" + (" (engine started for it)" if state.engine_started
                                                                   else ""))
        for m in state.members:
            disk = f"tmpfs {state.tmpfs_mb}M" if m.mounted else "no tmpfs"
            who = f"container {state.containers[m.name].id[:12]}" if docker else f"pid {state.processes[m.name].pid}"
            lines.append(f"  {m.name:<4} {m.client_url:<26} peer {m.peer_url:<26} {who}  ({disk})")
        if state.load:
            lines.append(f"  load  {state.load_rate:g} ops/s (puts + serializable reads), pid "
                         f"{state.processes['loadgen'].pid}, status in {lab.loadgen_status_path}")
        else:
            lines.append("  load  not started (--no-load)")
        return LabReport(lines, state.model_dump(mode="json"))

    def down(self, run_dir: Path) -> LabReport:
        with contextlib.closing(open_lab(run_dir)) as lab:
            report = lab.down()
        docker = report.get("runtime") == "docker"
        lines = [f"{s['name']:<8} container {s['pid']:<12} {s['outcome'].removeprefix('container ')}"
                 if s["outcome"].startswith("container ") else f"{s['name']:<8} pid {s['pid']:<8} {s['outcome']}"
                 for s in report["stopped"]]
        c = report["checked"]
        if docker:
            lines.append(f"no container of this lab left on {report['docker_host']} ({len(c['containers'])} checked "
                         "in the engine's listing)")
            if report.get("engine"):
                lines.append(f"local engine: {report['engine']}")
        lines.append(f"nothing left: no process ({len(c['processes'])} checked), nothing listening on "
                     f"{len(c['addresses'])} member addresses, {len(c['mounts'])} tmpfs unmounted, "
                     f"{len(c['chains'])} iptables chains" + ("" if docker else f" and {len(c['cgroups'])} cgroup "
                                                                                  "tree") + " removed")
        lines.extend(f"removed {what}" for what in report["removed"])
        lines.append(f"logs kept in {report['logs']}")
        return LabReport(lines, report)

    def status(self, run_dir: Path) -> LabReport:
        with contextlib.closing(open_lab(run_dir)) as lab:
            s = lab.status()
        docker = s.get("runtime") == "docker"
        lines = [f"etcd lab in {s['run_dir']} (started {s['started_at']}): {'up' if s['up'] else 'DOWN'}"
                 + (f", containers on {s['docker_host']}" if docker else ""),
                 f"  {'MEMBER':<7} {'PROCESS':<8} {'HEALTH':<11} {'ROLE':<9} {'TERM':>5} {'INDEX':>8} "
                 f"{'DB':>7} {'FREE':>7}  URL" + ("  CONTAINER" if docker else "")]
        for m in s["members"]:
            lines.append(f"  {m['name']:<7} {m['process']:<8} {m['health']:<11} {m['role']:<9} "
                         f"{m['raft_term'] if m['raft_term'] is not None else '-':>5} "
                         f"{m['raft_index'] if m['raft_index'] is not None else '-':>8} {_size(m['db_size']):>7} "
                         f"{_size(m['free_bytes']):>7}  {m['client_url']}"
                         + (f"  {m.get('container') or '-'}" if docker else "")
                         + (f"  ({m['detail']})" if m['detail'] else ""))
        others = [p for p in s["processes"] if p["name"] not in {m["name"] for m in s["members"]}]
        for p in others:
            lines.append(f"  {p['name']:<7} {p['state']:<8} pid {p['pid']}")
        if s["chains"]:
            lines.append(f"  partitions (iptables chains): {', '.join(s['chains'])}")
        load = s["loadgen"]
        if load:
            p99 = f"{load['p99_ms']:.1f} ms" if load.get("p99_ms") is not None else "-"
            lines.append(f"  load: {load['qps']:g} ok/s, errors {load['error_rate'] * 100:.1f}%, p99 {p99} "
                         f"(last {load['window_s']:.0f} s); {load['sent']} sent, {load['failed']} failed"
                         + (" (finished)" if load.get("done") else ""))
        return LabReport(lines, s)


LAB = EtcdLabCommand()
