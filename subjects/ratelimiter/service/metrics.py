"""A node's Prometheus metrics (its own registry: several nodes may share one process in tests).

Exposed names (every series has a ``node`` label):

- ``ratelimiter_checks_total{node,result}``  counter; result in allowed, denied,
  allowed_fail_open, denied_fail_closed
- ``ratelimiter_check_latency_seconds{node}``  histogram of /check handling time
- ``ratelimiter_node_up{node}``  gauge, 1 while the process serves
- ``ratelimiter_redis_ok{node}``  gauge, 1 when the last Redis round trip succeeded
- ``ratelimiter_redis_errors_total{node}``  counter of failed Redis round trips
- ``ratelimiter_cache_hits_total{node}`` / ``ratelimiter_cache_misses_total{node}``  local cache
- ``ratelimiter_draining{node}``, ``ratelimiter_fail_open{node}``, ``ratelimiter_cache_ttl_ms{node}``
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from subjects.ratelimiter.service.schema import CHECK_RESULTS

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class NodeMetrics:
    def __init__(self, node_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.checks = Counter(
            "ratelimiter_checks", "Rate-limit checks by result", ["node", "result"], registry=r
        )
        self.latency = Histogram(
            "ratelimiter_check_latency_seconds",
            "Time to answer one /check",
            ["node"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.up = Gauge("ratelimiter_node_up", "1 while the node serves", ["node"], registry=r)
        self.redis_ok = Gauge(
            "ratelimiter_redis_ok", "1 when the last Redis round trip succeeded", ["node"], registry=r
        )
        self.redis_errors = Counter(
            "ratelimiter_redis_errors", "Failed Redis round trips", ["node"], registry=r
        )
        self.cache_hits = Counter(
            "ratelimiter_cache_hits", "Checks answered from the local cache", ["node"], registry=r
        )
        self.cache_misses = Counter(
            "ratelimiter_cache_misses",
            "Checks that had to ask Redis while the cache was on",
            ["node"],
            registry=r,
        )
        self.draining = Gauge("ratelimiter_draining", "1 while the node is draining", ["node"], registry=r)
        self.fail_open = Gauge(
            "ratelimiter_fail_open", "1 when the node admits if Redis fails", ["node"], registry=r
        )
        self.cache_ttl = Gauge(
            "ratelimiter_cache_ttl_ms", "Local cache TTL, 0 when off", ["node"], registry=r
        )
        self.node_id = node_id
        # Touch every labelled series so a scrape shows zeros rather than absent series.
        for result in CHECK_RESULTS:
            self.checks.labels(node_id, result)
        for metric in (self.latency, self.redis_errors, self.cache_hits, self.cache_misses):
            metric.labels(node_id)
        self.up.labels(node_id).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
