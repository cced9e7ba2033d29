"""Run one rate limiter node: ``python -m subjects.ratelimiter.service --node-id n1 --port P --redis URL``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import prometheus_client
from aiohttp import web
from pydantic import ValidationError

from subjects.ratelimiter.service.app import Node, build_app
from subjects.ratelimiter.service.models import NodeSettings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m subjects.ratelimiter.service", description="One rate limiter node."
    )
    p.add_argument("--node-id", required=True, help="unique id of this node in the registry (e.g. n1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, required=True, help="HTTP port")
    p.add_argument("--redis", required=True, metavar="URL", help="Redis URL, possibly through a proxy link")
    p.add_argument(
        "--advertise", metavar="HOST:PORT", help="address other parties should use (default: HOST:PORT)"
    )
    p.add_argument(
        "--source-address", metavar="ADDRESS", help="local address to connect to Redis from (default: any)"
    )
    p.add_argument(
        "--fail-mode", choices=["closed", "open"], default="closed", help="when Redis fails: deny or allow"
    )
    p.add_argument(
        "--local-cache-ms", type=int, default=0, help="local cache TTL in ms, 0 = off (default: 0)"
    )
    p.add_argument("--default-limit", type=int, default=100, help="limit of keys with none configured")
    p.add_argument("--default-window-ms", type=int, default=1000, help="window of keys with none configured")
    p.add_argument("--heartbeat-ms", type=int, default=1000, help="registry heartbeat interval")
    p.add_argument(
        "--node-ttl-ms", type=int, default=3000, help="a node with no heartbeat for this long is down"
    )
    p.add_argument("--redis-timeout-ms", type=int, default=500, help="connect/read timeout for Redis")
    p.add_argument("--max-tracked-keys", type=int, default=1000, help="keys kept in /api/stats (most recent)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    return p


def parse_args(argv: list[str] | None = None) -> NodeSettings:
    p = build_parser()
    a = p.parse_args(argv)
    try:
        return NodeSettings(
            node_id=a.node_id,
            host=a.host,
            port=a.port,
            redis_url=a.redis,
            advertise=a.advertise,
            source_address=a.source_address,
            fail_mode=a.fail_mode,
            cache_ttl_ms=a.local_cache_ms,
            default_limit=a.default_limit,
            default_window_ms=a.default_window_ms,
            heartbeat_ms=a.heartbeat_ms,
            node_ttl_ms=a.node_ttl_ms,
            redis_timeout_ms=a.redis_timeout_ms,
            max_tracked_keys=a.max_tracked_keys,
            log_level=a.log_level,
        )
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        flag = {"redis_url": "redis", "cache_ttl_ms": "local_cache_ms"}.get(name, name)
        field = "--" + flag.replace("_", "-") if flag else "arguments"
        p.error(f"{field}: {first['msg']}")
        raise  # unreachable: p.error exits


async def serve(settings: NodeSettings) -> None:
    node = Node(settings)
    runner = web.AppRunner(build_app(node), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, shutdown_timeout=2.0)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        await node.store.close()
        raise SystemExit(
            f"node {settings.node_id}: cannot listen on {settings.host}:{settings.port}: {e.strerror or e}"
        ) from e
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("ratelimiter.node").info(
        "serving on %s:%s, redis %s, fail_mode %s",
        settings.host,
        settings.port,
        settings.redis_url,
        settings.fail_mode,
    )
    beats = asyncio.create_task(node.heartbeat_loop(stop))
    try:
        await stop.wait()
    finally:
        await beats
        await node.announce_stop()
        node.metrics.up.labels(node.node_id).set(0)
        await runner.cleanup()
        await node.store.close()


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s {settings.node_id} %(levelname)s %(name)s: %(message)s",
    )
    # One process, one node: the *_created series add nothing but noise to every scrape.
    prometheus_client.disable_created_metrics()
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
