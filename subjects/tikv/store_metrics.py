"""Per-store signals: is the store's status port answering, and what do its metrics say.

Two sources with one result shape:
- DirectScraper: GET each store's `status_address/metrics` concurrently. The same request is the
  liveness probe (the fast signal: a dead TiKV refuses connections at once, long before PD's 20 s
  Disconnected), and rates come from the difference between this scrape and the previous one.
- PrometheusSource: PromQL over Prometheus's HTTP API, plus the same direct probe (a TCP connect),
  since `up` lags by a scrape interval.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from subjects import promtext

WANTED = (
    "tikv_raftstore_region_count",
    "tikv_store_size_bytes",
    "tikv_raftstore_slow_score",
    "tikv_grpc_msg_duration_seconds",
    "tikv_grpc_msg_fail_total",
)


@dataclass
class StoreMetrics:
    probe_ok: bool
    probe_error: str = ""
    probe_ms: float = 0.0
    values: dict[str, float] = field(default_factory=dict)  # region_count, leader_count, capacity_bytes, ...
    # cumulative counters as scraped (direct source), for rates against the next scrape
    requests: float | None = None
    fails: float | None = None
    buckets: dict[float, float] = field(default_factory=dict)
    at: float = 0.0


@dataclass
class MetricsResult:
    stores: dict[int, StoreMetrics]
    cluster_p99_ms: float | None = None
    cluster_qps: float | None = None
    cluster_error_rate: float | None = None
    source_error: str | None = None  # e.g. Prometheus query failed: metrics missing, probes still valid


def _delta(now: float, before: float | None) -> float | None:
    if before is None:
        return None
    return now if now < before else now - before  # a counter that went down was reset by a restart


def summarize(samples: list[promtext.Sample]) -> StoreMetrics:
    m = StoreMetrics(probe_ok=True)
    requests = fails = 0.0
    buckets: dict[float, float] = {}
    for name, labels, value in samples:
        if name == "tikv_raftstore_region_count":
            t = labels.get("type")
            if t in ("region", "leader"):
                m.values[f"{t}_count"] = value
        elif name == "tikv_store_size_bytes":
            t = labels.get("type")
            if t in ("capacity", "available", "used"):
                m.values[f"{t}_bytes"] = value
        elif name == "tikv_raftstore_slow_score":
            # v8.5 labels it by type (raft|kvdb); older TiKV has one unlabelled series: take the worst
            m.values["slow_score"] = max(m.values.get("slow_score", 0.0), value)
        elif name == "tikv_grpc_msg_duration_seconds_count":
            requests += value
        elif name == "tikv_grpc_msg_duration_seconds_bucket":
            le = labels.get("le")
            if le is not None:
                bound = math.inf if le in ("+Inf", "Inf") else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + value
        elif name == "tikv_grpc_msg_fail_total":
            fails += value
    m.requests, m.fails, m.buckets = requests, fails, buckets
    return m


class DirectScraper:
    def __init__(self, timeout: float = 1.0, concurrency: int = 128):
        self.timeout = timeout
        self.concurrency = concurrency
        self._previous: dict[int, StoreMetrics] = {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=2, ttl_dns_cache=None),
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=self.timeout),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _scrape(self, store_id: int, address: str) -> StoreMetrics:
        t0 = time.monotonic()
        try:
            async with self._http().get(f"http://{address}/metrics") as response:
                text = await response.text()
                if response.status != 200:
                    return StoreMetrics(False, f"status port answered HTTP {response.status}",
                                        (time.monotonic() - t0) * 1000, at=t0)
        except TimeoutError:
            return StoreMetrics(False, f"status port {address} did not answer within {self.timeout:g} s",
                                (time.monotonic() - t0) * 1000, at=t0)
        except (aiohttp.ClientError, OSError) as e:
            reason = "connection refused" if isinstance(e, aiohttp.ClientConnectorError) else type(e).__name__
            return StoreMetrics(False, f"status port {address}: {reason}", (time.monotonic() - t0) * 1000, at=t0)
        elapsed = (time.monotonic() - t0) * 1000
        try:
            m = summarize(promtext.parse(text, WANTED))
        except promtext.ParseError as e:
            # Alive (it answered) but its metrics are unreadable: liveness holds, values are unknown.
            return StoreMetrics(True, f"unreadable metrics from {address}: {e}", elapsed, at=t0)
        m.probe_ms, m.at = elapsed, t0
        return m

    async def collect(self, stores: list[tuple[int, str]]) -> MetricsResult:
        results = await asyncio.gather(*(self._scrape(sid, addr) for sid, addr in stores))
        out: dict[int, StoreMetrics] = {}
        merged: dict[float, float] = {}
        total_req = total_fail = 0.0
        seconds = 0.0
        for (sid, _), m in zip(stores, results, strict=True):
            out[sid] = m
            prev = self._previous.get(sid)
            if m.probe_ok and m.requests is not None and prev is not None and prev.requests is not None:
                dt = m.at - prev.at
                d_req = _delta(m.requests, prev.requests)
                d_fail = _delta(m.fails or 0.0, prev.fails)
                if dt > 0 and d_req is not None:
                    m.values["qps"] = d_req / dt
                    m.values["fail_qps"] = (d_fail or 0.0) / dt
                    total_req += d_req
                    total_fail += d_fail or 0.0
                    seconds = max(seconds, dt)
                    reset = m.requests < prev.requests
                    d_buckets = {b: c - (0.0 if reset else prev.buckets.get(b, 0.0)) for b, c in m.buckets.items()}
                    p99 = promtext.histogram_quantile(0.99, d_buckets)
                    if p99 is not None:
                        m.values["p99_ms"] = p99 * 1000
                    for b, c in d_buckets.items():
                        merged[b] = merged.get(b, 0.0) + c
            if m.probe_ok and m.requests is not None:
                self._previous[sid] = m
            elif not m.probe_ok:
                self._previous.pop(sid, None)
        result = MetricsResult(out)
        if seconds > 0:
            result.cluster_qps = total_req / seconds
            attempts = total_req + total_fail
            result.cluster_error_rate = total_fail / attempts if attempts else 0.0
            p99 = promtext.histogram_quantile(0.99, merged)
            result.cluster_p99_ms = None if p99 is None else p99 * 1000
        return result


async def tcp_probe(address: str, timeout: float) -> tuple[bool, str, float]:
    host, _, port = address.rpartition(":")
    t0 = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except TimeoutError:
        return False, f"status port {address}: connect timed out", (time.monotonic() - t0) * 1000
    except (OSError, ValueError) as e:
        reason = "connection refused" if isinstance(e, ConnectionRefusedError) else str(e)
        return False, f"status port {address}: {reason}", (time.monotonic() - t0) * 1000
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True, "", (time.monotonic() - t0) * 1000


class PrometheusSource:
    """Store metrics through PromQL. Series are matched to stores by `instance` = status address."""

    def __init__(self, url: str, timeout: float = 2.0, window: str = "30s", probe_timeout: float = 1.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.window = window
        self.probe_timeout = probe_timeout
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def query(self, promql: str) -> list[dict[str, Any]]:
        try:
            async with self._http().get(f"{self.url}/api/v1/query", params={"query": promql}) as response:
                body = await response.json(content_type=None)
        except TimeoutError as e:
            raise PrometheusError(f"Prometheus at {self.url} did not answer within {self.timeout:g} s") from e
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise PrometheusError(f"Prometheus at {self.url} is unreachable or answered garbage: {e}") from e
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else str(body)[:200]
            raise PrometheusError(f"Prometheus query failed: {error} (query: {promql})")
        data = body.get("data") or {}
        return data.get("result") or [] if data.get("resultType") == "vector" else []

    async def collect(self, stores: list[tuple[int, str]]) -> MetricsResult:
        probes = await asyncio.gather(*(tcp_probe(addr, self.probe_timeout) for _, addr in stores))
        out = {sid: StoreMetrics(ok, err, ms) for (sid, _), (ok, err, ms) in zip(stores, probes, strict=True)}
        by_instance = {addr: sid for sid, addr in stores}
        w = self.window
        queries = {
            "region_count": 'tikv_raftstore_region_count{type="region"}',
            "leader_count": 'tikv_raftstore_region_count{type="leader"}',
            "capacity_bytes": 'tikv_store_size_bytes{type="capacity"}',
            "available_bytes": 'tikv_store_size_bytes{type="available"}',
            "used_bytes": 'tikv_store_size_bytes{type="used"}',
            "slow_score": "max by (instance) (tikv_raftstore_slow_score)",
            "qps": f"sum by (instance) (rate(tikv_grpc_msg_duration_seconds_count[{w}]))",
            "fail_qps": f"sum by (instance) (rate(tikv_grpc_msg_fail_total[{w}]))",
            "p99_ms": f"1000 * histogram_quantile(0.99, sum by (instance, le) "
                      f"(rate(tikv_grpc_msg_duration_seconds_bucket[{w}])))",
        }
        cluster = {
            "p99": f"1000 * histogram_quantile(0.99, sum by (le) (rate(tikv_grpc_msg_duration_seconds_bucket[{w}])))",
            "qps": f"sum(rate(tikv_grpc_msg_duration_seconds_count[{w}]))",
            "fails": f"sum(rate(tikv_grpc_msg_fail_total[{w}]))",
        }
        names = list(queries) + [f"cluster:{k}" for k in cluster]
        answers = await asyncio.gather(*(self.query(q) for q in [*queries.values(), *cluster.values()]),
                                       return_exceptions=True)
        result = MetricsResult(out)
        errors = [a for a in answers if isinstance(a, Exception)]
        if errors:
            result.source_error = str(errors[0])
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, Exception):
                continue
            if name.startswith("cluster:"):
                value = _first_value(answer)
                if name == "cluster:p99":
                    result.cluster_p99_ms = value
                elif name == "cluster:qps":
                    result.cluster_qps = value
                elif name == "cluster:fails" and value is not None:
                    qps = result.cluster_qps or 0.0
                    result.cluster_error_rate = value / (qps + value) if qps + value else 0.0
                continue
            for series in answer:
                sid = by_instance.get(series.get("metric", {}).get("instance", ""))
                value = _sample_value(series)
                if sid is not None and value is not None:
                    out[sid].values[name] = value
        return result


class PrometheusError(Exception):
    pass


def _sample_value(series: dict[str, Any]) -> float | None:
    try:
        value = float(series["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _first_value(answer: list[dict[str, Any]]) -> float | None:
    return _sample_value(answer[0]) if answer else None
