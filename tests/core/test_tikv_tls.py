"""A secured TiKV cluster (issue 10, defect 11): PD, every store's status port and Prometheus over
HTTPS with the cluster's CA and a client certificate, all real TLS servers on loopback (the
simulator and a real `prometheus`), certificates made for the test. And a store whose metrics page
is over the size cap is alive with unreadable metrics, not unreachable."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from subjects.tikv.sim import SimThread, start_sim_thread
from subjects.tikv.status_http import MAX_BODY
from subjects.tikv.store_metrics import DirectScraper
from tests.core.conftest import make_subject, sim_config
from tests.prometheus_server import prometheus
from tests.tls_certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_sim(certs: Certs) -> Iterator[SimThread]:
    thread = start_sim_thread(sim_config(time_scale=10.0, tls_cert=certs.server_cert, tls_key=certs.server_key,
                                         tls_ca=certs.ca))
    try:
        yield thread
    finally:
        thread.stop()


def client_tls(certs: Certs) -> dict[str, str]:
    return {"ca": certs.ca, "cert": certs.client_cert, "key": certs.client_key}


async def observe_until(subject: Any, predicate: Any, timeout: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    obs = None
    while asyncio.get_running_loop().time() < deadline:
        obs = await subject.observe()
        if predicate(obs):
            return obs
        await asyncio.sleep(0.5)
    raise AssertionError(f"not reached in {timeout} s: reachable={obs.reachable} error={obs.error} "
                         f"details={obs.details.get('metrics_error')}")


async def test_pd_and_status_ports_over_https_with_a_client_certificate(tls_sim: SimThread, certs: Certs) -> None:
    assert tls_sim.pd_url.startswith("https://")
    # Told it watches a simulator (PD's port never says so, as a real PD would not).
    subject = await make_subject(tls_sim.pd_url, tls=client_tls(certs), simulated=True)
    try:
        obs = await observe_until(subject, lambda o: o.reachable and o.workload.p99_ms is not None)
        stores = [n for n in obs.nodes if n.kind == "store"]
        assert stores and all(n.metrics["probe_ok"] == 1.0 and "qps" in n.metrics for n in stores)
        identity = await subject.cluster_identity()
        assert identity is not None and identity.id.startswith("tikv-sim:https://")
    finally:
        await subject.aclose()


@pytest.mark.parametrize("tls", [None, "no_client_cert", "wrong_ca"])
async def test_without_the_right_credentials_the_cluster_is_unreachable_not_healthy(
        tls_sim: SimThread, certs: Certs, tls: str | None) -> None:
    options = {None: None, "no_client_cert": {"ca": certs.ca},
               "wrong_ca": {**client_tls(certs), "ca": certs.other_ca}}[tls]
    subject = await make_subject(tls_sim.pd_url, tls=options)
    try:
        obs = await subject.observe()
        assert not obs.reachable and obs.error
    finally:
        await subject.aclose()


def test_tls_flags_reach_the_subject_from_the_command_line(tls_sim: SimThread, certs: Certs, tmp_path: Path) -> None:
    """`--tls-ca/--tls-cert/--tls-key` through settings to a real action against the TLS cluster."""
    base = [sys.executable, "-m", "operator_tui", "actions", "run", "remove_scheduler",
            "--param", "name=evict-leader-scheduler-1", "--pd", tls_sim.pd_url, "--db", str(tmp_path / "o.db")]
    ok = subprocess.run([*base, "--tls-ca", certs.ca, "--tls-cert", certs.client_cert, "--tls-key", certs.client_key],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    assert "succeeded" in ok.stdout
    half = subprocess.run([*base, "--tls-ca", certs.ca, "--tls-cert", certs.client_cert], capture_output=True,
                          text=True, timeout=120)
    assert half.returncode == 2 and "tls.cert and tls.key go together" in half.stderr
    assert "Traceback" not in half.stderr


@pytest.mark.slow
async def test_prometheus_over_https_scraping_https_stores(tls_sim: SimThread, certs: Certs) -> None:
    import httpx

    stores = httpx.get(f"{tls_sim.pd_url}/pd/api/v1/stores", verify=_context(certs)).json()["stores"]
    targets = ", ".join(f'"{s["store"]["status_address"]}"' for s in stores)
    tls_config = f"{{ca_file: {certs.ca}, cert_file: {certs.client_cert}, key_file: {certs.client_key}}}"
    config = ("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
              "scrape_configs:\n"
              f"  - {{job_name: tikv, honor_labels: true, scheme: https, tls_config: {tls_config}, "
              f"static_configs: [{{targets: [{targets}]}}]}}\n")
    web_config = ("tls_server_config:\n"
                  f"  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
                  f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n")
    with prometheus(config, web_config=web_config, client=(certs.ca, certs.client_cert, certs.client_key)) as url:
        assert url.startswith("https://")
        subject = await make_subject(tls_sim.pd_url, prometheus_url=url, prometheus_window="5s",
                                     tls=client_tls(certs))
        try:
            obs = await observe_until(subject, lambda o: o.workload.p99_ms is not None
                                      and "metrics_error" not in o.details, timeout=90)
            assert obs.details["metrics_source"] == "prometheus" and obs.workload.qps > 0
        finally:
            await subject.aclose()


def _context(certs: Certs) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=certs.ca)
    context.load_cert_chain(certs.client_cert, certs.client_key)
    return context


async def test_an_oversized_metrics_page_is_not_an_unreachable_store() -> None:
    """A real status port whose /metrics is larger than the cap: the store answered, so it is alive;
    its metrics are missing (and say why), and store_unreachable does not fire."""
    from subjects.base import Node, NodeState, Observation
    from subjects.tikv.invariants import Thresholds, build_invariants

    async def status(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=b"# " + b"x" * (MAX_BODY + 10) + b"\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    scraper = DirectScraper(timeout=5.0)
    try:
        result = await scraper.collect([(1, f"127.0.0.1:{port}")])
    finally:
        await scraper.aclose()
        await runner.cleanup()
    m = result.stores[1]
    assert m.probe_ok and "over 8 MiB" in m.probe_error and m.values == {}
    node = Node(id="1", kind="store", state=NodeState.up, state_detail="Up",
                metrics={"probe_ok": 1.0, "leader_count": 5.0})
    obs = Observation(subject="tikv", nodes=[node], details={"metrics_missing": {"1": m.probe_error}})
    checks = {i.name: i for i in build_invariants(Thresholds())}
    assert checks["store_unreachable"].evaluate(obs, []).violations == []
