"""`operator-tui lab up|down|status ratelimiter`: what the lab did, in lines for people and data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from subjects.plugin import LabReport
from subjects.ratelimiter.lab import RateLimiterLab, free_lab_ports, open_lab


def _ranges(ports: list[int]) -> str:
    out: list[str] = []
    start = prev = None
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


class RateLimiterLabCommand:
    def up(self, run_dir: Path, options: dict[str, Any]) -> LabReport:
        """`free_ports`: any free ports (in 20000-32000) instead of the defaults or the ones given."""
        if options.get("docker"):
            from subjects.ratelimiter.docker_lab import DockerRateLimiterLab

            lab: RateLimiterLab = DockerRateLimiterLab(run_dir)
        else:
            lab = RateLimiterLab(run_dir)
        nodes = options.get("nodes", 3)
        redis_port, base_port = options.get("redis_port"), options.get("base_port")
        if options.get("free_ports"):
            redis_port, base_port = free_lab_ports(nodes)
        state = lab.up(nodes=nodes, redis_port=redis_port, base_port=base_port, load=not options.get("no_load"),
                       block=options.get("addresses"), redis_disk_mb=options.get("redis_disk_mb"))

        def who(name: str) -> str:
            if state.runtime == "docker":
                return f"container {state.containers[name].id[:12]}"
            return f"pid {state.processes[name].pid}"

        head = f"ratelimiter lab up in {state.run_dir}" + (f" on {state.plan.cidr()}" if state.block else "")
        if state.runtime == "docker":
            head += f" (containers on {state.docker_host}" + (", engine started for it)" if state.engine_started
                                                               else ")")
        disk = state.redis_disk
        where = "in its container at " if state.runtime == "docker" else "at "
        lines = [
            head,
            f"  redis   {state.redis_url}  ({who('redis')}"
            + (f"; data on a {disk.size_mb} MiB tmpfs {where}{disk.path}, saved every {disk.save_s}s" if disk else "")
            + ")",
            f"  proxy   {state.proxy_url}  ({who('proxy')}; links "
            + ", ".join(f"{n.id}->{n.link_port}" for n in state.nodes) + ")",
        ]
        for spec in state.nodes:
            lines.append(f"  {spec.id:<7} {spec.url}  ({who(spec.id)}, redis via {spec.redis_url})")
        if state.load:
            lines.append(f"  load    {who('loadgen')}, status in {Path(state.run_dir) / 'loadgen.json'}")
        else:
            lines.append("  load    not started (--no-load)")
        return LabReport(lines, state.model_dump(mode="json"))

    def down(self, run_dir: Path) -> LabReport:
        report = open_lab(run_dir).down()
        if report.get("runtime") == "docker":
            lines = [f"{s['name']:<8} container {s['pid']:<12} {s['outcome']}" for s in report["stopped"]]
            lines.append(f"no container of this lab left on {report['docker_host']}; ports "
                         f"{_ranges(report['ports_checked'])} no longer listening")
            if report.get("engine"):
                lines.append(f"local engine: {report['engine']}")
        else:
            lines = [f"{s['name']:<8} pid {s['pid']:<8} {s['outcome']}" for s in report["stopped"]]
            lines.append(f"no process left; ports {_ranges(report['ports_checked'])} no longer listening")
        if report["unmounted"]:
            lines.append(f"unmounted {report['unmounted']}")
        if report["cgroups_removed"]:
            lines.append(f"removed cgroup {report['cgroups_removed']}")
        lines.extend(f"removed {path}" for path in report["removed"])
        lines.append(f"logs kept in {report['logs']}")
        return LabReport(lines, report)

    def load(self, run_dir: Path, on: bool) -> LabReport:
        """Start or stop the load generator of a running lab."""
        lab = open_lab(run_dir)
        outcome = lab.start_load() if on else lab.stop_load()
        return LabReport([f"load generator: {outcome}"], {"load": on, "outcome": outcome})

    def status(self, run_dir: Path) -> LabReport:
        status = open_lab(run_dir).status()
        docker = status.get("runtime") == "docker"
        lines = [
            f"ratelimiter lab in {status['run_dir']} (started {status['started_at']}): "
            f"{'up' if status['up'] else 'DOWN'}" + (f", containers on {status['docker_host']}" if docker else ""),
            f"  redis {status['redis_url']}   proxy {status['proxy_url']}",
            *([f"  redis disk {disk['path']}: " + (f"{disk['free_bytes'] // 1024} KiB free of {disk['total_bytes'] // 1024}"
                                                   if disk["mounted"] else "NOT MOUNTED")]
              if (disk := status["redis_disk"]) else []),
            f"  {'PROCESS':<8} {'PID':<8} {'STATE':<7} PORT" + ("  CONTAINER" if docker else ""),
        ]
        lines += [f"  {p['name']:<8} {p['pid']:<8} {p['state']:<7} {p['port'] or '-'}"
                  + (f"  {p['container']}" if docker else "") for p in status["processes"]]
        lines.append(f"  {'NODE':<8} {'HEALTH':<12} URL")
        for n in status["nodes"]:
            extra = f"  ({n['detail']})" if n["detail"] else ""
            lines.append(f"  {n['id']:<8} {n['health']:<12} {n['url']}{extra}")
        links = status["links"]
        if "error" in links:
            lines.append(f"  links: {links['error']}")
        else:
            lines.append("  links: " + ", ".join(
                f"{name}={link['mode']}" + (f"({link['delay_ms']}ms)" if link["mode"] == "delay" else "")
                for name, link in links.items()))
        load = status["loadgen"]
        if load:
            r = load["results"]
            lines.append(f"  load: {load['sent']} sent in {load['elapsed_s']}s: {r['allowed']} allowed, "
                         f"{r['denied']} denied, {r['error']} errors" + (" (finished)" if load.get("done") else ""))
        return LabReport(lines, status)


LAB = RateLimiterLabCommand()
