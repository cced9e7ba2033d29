"""The TiKV compose file, checked statically (no Docker engine runs here): it must describe the
topology the operator expects, with status addresses reachable and scraped."""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent.parent / "compose" / "tikv"


def test_tikv_compose_topology_and_scrapes() -> None:
    compose = yaml.safe_load((HERE / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"pd0", "pd1", "pd2", "tikv0", "tikv1", "tikv2", "prometheus", "grafana", "load"} <= set(services)
    for n in range(3):
        args = services[f"tikv{n}"]["command"]
        assert f"--advertise-status-addr=tikv{n}:20180" in args and "--status-addr=0.0.0.0:20180" in args
        assert services[f"pd{n}"]["image"] == services["pd0"]["image"]
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port} would listen beyond loopback"
    scrape = yaml.safe_load((HERE / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert jobs["tikv"]["static_configs"][0]["targets"] == ["tikv0:20180", "tikv1:20180", "tikv2:20180"]
    assert all(job["honor_labels"] for job in jobs.values())
