"""Per-store signals: is the store's status port answering, and what do its metrics say.

Two sources with one result shape:
- DirectScraper: GET each store's `status_address/metrics` (in turns, for large clusters); rates
  come from the difference between two scrapes of the same store.
- PrometheusSource: PromQL over Prometheus's HTTP API.
Both probe every store's status port every tick (Prober), since Prometheus's `up` lags by a
scrape interval and liveness is the fast signal.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from subjects import promtext
from subjects.tikv.status_http import BodyTooLarge, StatusConnection, StatusError

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
    # the interval since this store's previous scrape: bucket and counter increases, and its length
    deltas: dict[float, float] = field(default_factory=dict)
    delta_requests: float = 0.0
    delta_fails: float = 0.0
    delta_seconds: float = 0.0


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


Probe = tuple[bool, str, float, "bytes | None", float]  # ok, error, ms, body (scrapes only), started at


class Prober:
    """One request per store per tick over kept-alive connections: GET /metrics for the stores
    whose turn it is to be scraped, GET /status for the rest. Either answer proves liveness (the
    fast signal: a dead TiKV refuses connections at once, long before PD's 20 s Disconnected).
    The timeout runs per request after its turn in the concurrency limit, so a big cluster's
    queue never reads as dead stores."""

    def __init__(self, timeout: float = 1.0, concurrency: int = 256, ssl_context: Any = None):
        self.timeout = timeout
        self.ssl_context = ssl_context  # HTTPS status ports (a TLS cluster)
        self._limit = asyncio.Semaphore(concurrency)
        self._conns: dict[int, StatusConnection] = {}

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    async def _one(self, store_id: int, address: str, path: str) -> Probe:
        conn = self._conns.get(store_id)
        if conn is None or conn.address != address:
            if conn is not None:
                conn.close()
            try:
                conn = self._conns[store_id] = StatusConnection(address, ssl_context=self.ssl_context)
            except StatusError as e:
                return False, e.reason, 0.0, None, time.monotonic()
        async with self._limit:
            t0 = time.monotonic()
            try:
                status, body = await conn.get(path, self.timeout)
            except BodyTooLarge as e:  # it answered: alive, but its page cannot be read
                return True, e.reason, (time.monotonic() - t0) * 1000, None, t0
            except StatusError as e:
                return False, e.reason, (time.monotonic() - t0) * 1000, None, t0
        elapsed = (time.monotonic() - t0) * 1000
        if status != 200:
            return False, f"status port {address} answered HTTP {status}", elapsed, None, t0
        return True, "", elapsed, body if path == "/metrics" else None, t0

    async def run(self, stores: list[tuple[int, str]], scrape: set[int]) -> list[Probe]:
        for sid in set(self._conns) - {s for s, _ in stores}:
            self._conns.pop(sid).close()
        return await asyncio.gather(*(self._one(sid, addr, "/metrics" if sid in scrape else "/status")
                                      for sid, addr in stores))


class DirectScraper:
    """Metrics straight from each store's status port. Large clusters are scraped in turns of
    `scrape_budget` stores per tick (every store is still probed every tick); each store's rates
    come from the difference between two of its own scrapes."""

    def __init__(self, timeout: float = 1.0, scrape_budget: int = 100, ssl_context: Any = None):
        self.prober = Prober(timeout, ssl_context=ssl_context)
        self.scrape_budget = max(1, scrape_budget)
        self._previous: dict[int, StoreMetrics] = {}
        self._latest: dict[int, StoreMetrics] = {}
        self._cursor = 0

    async def aclose(self) -> None:
        self.prober.close()

    def _turn(self, stores: list[tuple[int, str]]) -> set[int]:
        if len(stores) <= self.scrape_budget:
            return {sid for sid, _ in stores}
        ids = sorted(sid for sid, _ in stores)
        start = self._cursor % len(ids)
        self._cursor = start + self.scrape_budget
        wrapped = max(0, start + self.scrape_budget - len(ids))
        return set(ids[start:start + self.scrape_budget] + ids[:wrapped])

    async def collect(self, stores: list[tuple[int, str]]) -> MetricsResult:
        answers = await self.prober.run(stores, self._turn(stores))
        out: dict[int, StoreMetrics] = {}
        for (sid, address), (ok, error, ms, body, at) in zip(stores, answers, strict=True):
            if not ok or error:  # down, or alive with a page that cannot be read: no figures
                out[sid] = StoreMetrics(ok, error, ms, at=at)
                self._previous.pop(sid, None)
                self._latest.pop(sid, None)
                continue
            if body is None:  # probed only this tick: carry its last scraped figures
                last = self._latest.get(sid)
                out[sid] = StoreMetrics(True, "", ms, dict(last.values) if last else {}, at=at)
                continue
            try:
                m = summarize(promtext.parse(body.decode("utf-8", "replace"), WANTED))
            except ValueError as e:  # promtext.ParseError, or a bucket bound that is not a number
                # Alive (it answered) but its metrics are unreadable: liveness holds, values unknown.
                out[sid] = StoreMetrics(True, f"unreadable metrics from {address}: {e}", ms, at=at)
                self._previous.pop(sid, None)
                self._latest.pop(sid, None)
                continue
            m.probe_ms, m.at = ms, at
            self._rates(sid, m)
            out[sid] = self._latest[sid] = m
        return self._cluster(out)

    def _rates(self, sid: int, m: StoreMetrics) -> None:
        prev = self._previous.get(sid)
        if prev is None or prev.requests is None or m.requests is None:
            self._previous[sid] = m
            return
        dt = m.at - prev.at
        if dt < 0.5:
            # Two scrapes close together (another observer, e.g. a precheck) say little about
            # rates: keep the older baseline and carry the figures of the last real interval.
            last = self._latest.get(sid)
            if last is not None:
                for key in ("qps", "fail_qps", "p99_ms"):
                    if key in last.values:
                        m.values[key] = last.values[key]
                m.deltas, m.delta_requests = last.deltas, last.delta_requests
                m.delta_fails, m.delta_seconds = last.delta_fails, last.delta_seconds
            return
        reset = m.requests < prev.requests
        d_req = _delta(m.requests, prev.requests) or 0.0
        d_fail = _delta(m.fails or 0.0, prev.fails) or 0.0
        m.values["qps"] = d_req / dt
        m.values["fail_qps"] = d_fail / dt
        m.deltas = {b: c - (0.0 if reset else prev.buckets.get(b, 0.0)) for b, c in m.buckets.items()}
        m.delta_requests, m.delta_fails, m.delta_seconds = d_req, d_fail, dt
        p99 = promtext.histogram_quantile(0.99, m.deltas)
        if p99 is not None:
            m.values["p99_ms"] = p99 * 1000
        self._previous[sid] = m

    def _cluster(self, out: dict[int, StoreMetrics]) -> MetricsResult:
        """Cluster figures from each live store's latest interval (all fresh in small clusters)."""
        result = MetricsResult(out)
        merged: dict[float, float] = {}
        qps = fails = 0.0
        seen = False
        for sid, m in out.items():
            latest = self._latest.get(sid)
            if not m.probe_ok or latest is None or latest.delta_seconds <= 0:
                continue
            seen = True
            qps += latest.delta_requests / latest.delta_seconds
            fails += latest.delta_fails / latest.delta_seconds
            for b, c in latest.deltas.items():
                merged[b] = merged.get(b, 0.0) + c
        if seen:
            result.cluster_qps = qps
            result.cluster_error_rate = fails / (qps + fails) if qps + fails else 0.0
            p99 = promtext.histogram_quantile(0.99, merged)
            result.cluster_p99_ms = None if p99 is None else p99 * 1000
        return result


HEAVY_QUERIES = ("p99_ms", "cluster:p99")
HEAVY_EVERY = 5


class PrometheusSource:
    """Store metrics through PromQL. Series are matched to stores by `instance` = status address."""

    def __init__(self, url: str, timeout: float = 2.0, window: str = "30s", probe_timeout: float = 1.0,
                 ssl_context: Any = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.window = window
        self.ssl_context = ssl_context
        self.prober = Prober(probe_timeout, ssl_context=ssl_context)
        self._session: aiohttp.ClientSession | None = None
        self._ticks = 0
        self._heavy: dict[str, list[dict[str, Any]]] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def aclose(self) -> None:
        self.prober.close()
        if self._session is not None:
            await self._session.close()

    async def query(self, promql: str) -> list[dict[str, Any]]:
        try:
            async with self._http().get(f"{self.url}/api/v1/query", params={"query": promql},
                                        ssl=self.ssl_context if self.ssl_context is not None else True) as response:
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
        queries, cluster = self._queries()
        names = list(queries) + [f"cluster:{k}" for k in cluster]
        texts = [*queries.values(), *cluster.values()]
        # Histogram quantiles over every store's buckets are by far the dearest queries (over a
        # second on a 1,000-store cluster); a percentile over a rate window moves slowly, so
        # large clusters refresh them every HEAVY_EVERY ticks and reuse them in between.
        self._ticks += 1
        refresh = len(stores) <= 100 or self._ticks % HEAVY_EVERY == 1 or not self._heavy
        run = [(n, q) for n, q in zip(names, texts, strict=True) if refresh or n not in HEAVY_QUERIES]
        probes, *answers = await asyncio.gather(self.prober.run(stores, set()), *(self.query(q) for _, q in run),
                                                return_exceptions=True)
        if isinstance(probes, BaseException):
            raise probes
        fresh = dict(zip((n for n, _ in run), answers, strict=True))
        for name in HEAVY_QUERIES:
            if name in fresh and not isinstance(fresh[name], Exception):
                self._heavy[name] = fresh[name]
        answers = [fresh.get(n, self._heavy.get(n, [])) for n in names]
        out = {sid: StoreMetrics(ok, err, ms, at=at)
               for (sid, _), (ok, err, ms, _body, at) in zip(stores, probes, strict=True)}
        by_instance = {addr: sid for sid, addr in stores}
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

    def _queries(self) -> tuple[dict[str, str], dict[str, str]]:
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
        return queries, cluster


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
