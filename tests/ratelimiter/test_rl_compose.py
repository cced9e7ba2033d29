"""The Docker Compose layout, checked statically (no Docker engine here) against the real parsers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from subjects.ratelimiter import loadgen, proxy
from subjects.ratelimiter.service.__main__ import parse_args

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "ratelimiter"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]


def module_args(command: list[str], module: str) -> list[str]:
    assert command[:3] == ["python", "-m", module], command
    return command[3:]


def test_nodes_use_real_flags_and_their_own_proxy_link(services):
    links = dict(
        proxy.build_parser()
        .parse_args(module_args(services["proxy"]["command"], "subjects.ratelimiter.proxy"))
        .link
    )
    nodes = {name: svc for name, svc in services.items() if re.fullmatch(r"n\d+", name)}
    assert len(nodes) >= 3
    for name, svc in nodes.items():
        settings = parse_args(module_args(svc["command"], "subjects.ratelimiter.service"))
        assert settings.node_id == name and settings.advertise == f"{name}:{settings.port}"
        host, port = links[name]
        assert host is None and settings.redis_url == f"redis://proxy:{port}/0"  # its own link, on --bind
        assert settings.host == "0.0.0.0"
    assert set(links) == set(nodes)


def test_proxy_loadgen_and_prometheus_agree_with_the_nodes(services):
    p = proxy.build_parser().parse_args(
        module_args(services["proxy"]["command"], "subjects.ratelimiter.proxy")
    )
    assert p.upstream == ("redis", 6379) and p.bind == "0.0.0.0"
    g = loadgen.build_parser().parse_args(
        module_args(services["loadgen"]["command"], "subjects.ratelimiter.loadgen")
    )
    assert sorted(g.seed_url) == ["http://n1:8080", "http://n2:8080", "http://n3:8080"]
    assert 0 < g.duration_s <= 7 * 24 * 3600
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(targets) == ["n1:8080", "n2:8080", "n3:8080"]
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port  # published on loopback only


def test_image_pins_match_the_project():
    pins = dict(re.findall(r'"([a-z-]+)==([0-9.]+)"', (ROOT / "pyproject.toml").read_text()))
    image = dict(re.findall(r"([a-z-]+)==([0-9.]+)", (COMPOSE / "Dockerfile").read_text()))
    assert image and all(pins[name] == version for name, version in image.items())
