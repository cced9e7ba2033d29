"""`operator-tui sim tikv`: the PD-compatible simulator as a process of its own."""

from __future__ import annotations

from typing import Any

from subjects.plugin import PluginError


def run(options: dict[str, Any]) -> int:
    from pydantic import ValidationError

    from subjects.tikv.sim import SimConfig, run_until_signal

    o = options
    if o["stores"] < 1:
        raise PluginError("--stores must be at least 1")
    if o["regions"] < 1:
        raise PluginError("--regions must be at least 1")
    if not 1 <= o["replicas"] <= o["stores"]:
        raise PluginError(f"--replicas must be between 1 and --stores ({o['stores']})")
    if o["time_scale"] <= 0:
        raise PluginError("--time-scale must be positive")
    for key in ("port", "admin_port", "host_agent_port"):
        if not 0 <= o.get(key, 0) <= 65535:
            raise PluginError(f"--{key.replace('_', '-')} must be between 0 and 65535")
    store_hosts = tuple(h.strip() for h in (o.get("store_hosts") or "").split(",") if h.strip())
    try:
        config = SimConfig(host=o["host"], port=o["port"], stores=o["stores"], regions=o["regions"],
                           replicas=o["replicas"], time_scale=o["time_scale"], seed=o["seed"],
                           status_base_port=o["status_base_port"], admin_port=o.get("admin_port", 0),
                           host_agent_port=o.get("host_agent_port", 0), store_hosts=store_hosts,
                           admin_host=o.get("admin_host"), host_agent_host=o.get("host_agent_host"),
                           max_store_down_time=o.get("max_store_down_time") or "30m0s")
    except ValidationError as e:
        raise PluginError("invalid simulator options: " + "; ".join(
            err["msg"].removeprefix("Value error, ") for err in e.errors())) from e
    try:
        return run_until_signal(config, log_level=o["log_level"])
    except OSError as e:
        raise PluginError(f"cannot start the simulator on {o['host']}:{o['port']}: {e.strerror or e}") from e
