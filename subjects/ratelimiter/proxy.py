"""A small TCP fault proxy: named links `listen port -> upstream`, each switchable at runtime.

Run: ``python -m subjects.ratelimiter.proxy --control-port C --upstream 127.0.0.1:6379
--link n1=17201 --link n2=127.11.0.102:17202 [--bind 127.0.0.1] [--source-address A]``. The control
API and links without an address of their own listen on ``--bind`` (default 127.0.0.1; a container
uses 0.0.0.0); connections to the upstream leave from ``--source-address`` when given.

Modes of a link:
- ``pass``       forward both ways.
- ``delay``      hold every chunk the client sends for ``delay_ms`` before forwarding it, so each
                 request/response round trip takes ``delay_ms`` longer.
- ``blackhole``  accept connections, read and discard what clients send, never answer: clients
                 see timeouts.
- ``reset``      refuse service: new connections are accepted and reset at once.
Changing a link's mode (or delay) resets the connections it holds, so that every client notices
at once and reconnects under the new mode.

Control API (HTTP on BIND:C):
- ``GET /health`` -> ``{"status": "ok", "links": N}``
- ``GET /links`` -> ``{"links": {NAME: LINK}}`` with LINK = ``{"name", "listen_port", "upstream",
  "mode", "delay_ms", "connections", "accepted_total"}``
- ``GET /links/NAME`` -> LINK
- ``PUT /links/NAME`` body ``{"mode": "pass|delay|blackhole|reset", "delay_ms"?: int}`` ->
  ``{"links": {NAME: LINK}, "previous": {NAME: {"mode", "delay_ms"}}, "reset_connections": N}``.
  NAME ``*`` applies the change to every link. Unknown NAME -> 404, bad body -> 422.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import struct
import sys
import time
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

log = logging.getLogger("ratelimiter.proxy")

MODES = ("pass", "delay", "blackhole", "reset")
MAX_DELAY_MS = 60_000
CHUNK = 65536
UPSTREAM_CONNECT_TIMEOUT_S = 2.0


class LinkChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["pass", "delay", "blackhole", "reset"]
    delay_ms: StrictInt = Field(default=0, ge=0, le=MAX_DELAY_MS)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: the peer gets 'connection reset', not a quiet EOF."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Connection:
    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task] = []

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        _reset(self.client)
        if self.upstream is not None:
            self.upstream.transport.abort()


class Link:
    def __init__(
        self,
        name: str,
        listen_port: int,
        upstream: tuple[str, int],
        bind: str = "127.0.0.1",
        source_address: str | None = None,
    ) -> None:
        self.name = name
        self.bind = bind
        self.listen_port = listen_port
        self.upstream = upstream
        self.local_addr = (source_address, 0) if source_address else None
        self.mode = "pass"
        self.delay_ms = 0
        self.connections: set[Connection] = set()
        self.accepted_total = 0
        self.server: asyncio.Server | None = None

    def describe(self) -> dict:
        return {
            "name": self.name,
            "listen": f"{self.bind}:{self.listen_port}",
            "listen_port": self.listen_port,
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            "mode": self.mode,
            "delay_ms": self.delay_ms,
            "connections": len(self.connections),
            "accepted_total": self.accepted_total,
        }

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.bind, self.listen_port, reuse_address=True)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        self.reset_all()

    def reset_all(self) -> int:
        n = len(self.connections)
        for conn in list(self.connections):
            conn.reset()
        self.connections.clear()
        return n

    def set_mode(self, mode: str, delay_ms: int) -> int:
        if mode == self.mode and delay_ms == self.delay_ms:
            return 0
        log.info("link %s: %s/%dms -> %s/%dms", self.name, self.mode, self.delay_ms, mode, delay_ms)
        self.mode, self.delay_ms = mode, delay_ms
        return self.reset_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted_total += 1
        if self.mode == "reset":
            _reset(writer)
            return
        conn = Connection(writer)
        self.connections.add(conn)
        try:
            if self.mode == "blackhole":
                await self._discard(reader)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream, local_addr=self.local_addr),
                    timeout=UPSTREAM_CONNECT_TIMEOUT_S,
                )
            except (OSError, TimeoutError) as e:
                log.warning("link %s: upstream %s:%s unreachable: %s", self.name, *self.upstream, e)
                conn.reset()
                return
            conn.upstream = up_writer
            delay = self.delay_ms / 1000 if self.mode == "delay" else 0.0
            conn.tasks = [
                asyncio.create_task(_pump(reader, up_writer, delay)),
                asyncio.create_task(_pump(up_reader, writer, 0.0)),
            ]
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
            conn.reset()
        except asyncio.CancelledError:
            conn.reset()
            raise
        finally:
            self.connections.discard(conn)

    @staticmethod
    async def _discard(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(CHUNK):
                pass


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy one direction until EOF; with a delay, each chunk leaves `delay_s` after it arrived."""
    if delay_s <= 0:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        return
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=1024)

    async def send() -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                await queue.put((time.monotonic() + delay_s, data))
        await queue.put(None)
        with contextlib.suppress(OSError):
            await sender
    finally:
        sender.cancel()


class Proxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        links: dict[str, tuple[str | None, int]],
        bind: str = "127.0.0.1",
        source_address: str | None = None,
    ) -> None:
        self.links = {
            name: Link(name, port, upstream, host or bind, source_address)
            for name, (host, port) in links.items()
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/links", self._list)
        app.router.add_get("/links/{name}", self._get)
        app.router.add_put("/links/{name}", self._put)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "links": len(self.links)})

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"links": {n: link.describe() for n, link in self.links.items()}})

    def _select(self, name: str) -> list[Link] | web.Response:
        if name == "*":
            return list(self.links.values())
        if name not in self.links:
            known = ", ".join(sorted(self.links)) or "none"
            return web.json_response(
                {"error": f"no link {name!r}; links: {known} (or * for all)"}, status=404
            )
        return [self.links[name]]

    async def _get(self, request: web.Request) -> web.Response:
        links = self._select(request.match_info["name"])
        if isinstance(links, web.Response):
            return links
        if len(links) > 1:
            return await self._list(request)
        return web.json_response(links[0].describe())

    async def _put(self, request: web.Request) -> web.Response:
        links = self._select(request.match_info["name"])
        if isinstance(links, web.Response):
            return links
        try:
            change = LinkChange.model_validate(await request.json())
        except ValueError as e:
            message = (
                e.errors(include_url=False)[0]["msg"]
                if isinstance(e, ValidationError)
                else "body must be JSON"
            )
            return web.json_response(
                {"error": f"bad link change: {message}; modes: {', '.join(MODES)}"}, status=422
            )
        if change.mode == "delay" and change.delay_ms <= 0:
            return web.json_response({"error": "mode delay needs delay_ms > 0"}, status=422)
        delay_ms = change.delay_ms if change.mode == "delay" else 0
        previous = {link.name: {"mode": link.mode, "delay_ms": link.delay_ms} for link in links}
        closed = sum(link.set_mode(change.mode, delay_ms) for link in links)
        return web.json_response(
            {
                "links": {link.name: link.describe() for link in links},
                "previous": previous,
                "reset_connections": closed,
            }
        )


async def serve(
    control_port: int,
    upstream: tuple[str, int],
    links: dict[str, tuple[str | None, int]],
    bind: str = "127.0.0.1",
    source_address: str | None = None,
) -> None:
    proxy = Proxy(upstream, links, bind, source_address)
    started: list[Link] = []
    runner = web.AppRunner(proxy.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        for link in proxy.links.values():
            await link.start()
            started.append(link)
        await web.TCPSite(runner, bind, control_port).start()
    except OSError as e:
        for link in started:
            await link.stop()
        await runner.cleanup()
        raise SystemExit(f"proxy: cannot listen: {e.strerror or e}") from e
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "control on %s:%d, upstream %s:%d, links %s",
        bind,
        control_port,
        *upstream,
        ", ".join(f"{n}={h + ':' if h else ''}{p}" for n, (h, p) in links.items()),
    )
    await stop.wait()
    for link in proxy.links.values():
        await link.stop()
    await runner.cleanup()


def _parse_link(text: str) -> tuple[str, tuple[str | None, int]]:
    name, sep, where = text.partition("=")
    host, _, port = where.rpartition(":")
    if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected NAME=[HOST:]PORT, got {text!r}")
    return name, (host or None, int(port))


def _parse_upstream(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m subjects.ratelimiter.proxy", description=__doc__.split("\n")[0]
    )
    p.add_argument("--control-port", type=int, required=True, help="HTTP control API port")
    p.add_argument(
        "--upstream", type=_parse_upstream, required=True, metavar="HOST:PORT", help="where links forward"
    )
    p.add_argument(
        "--link", type=_parse_link, action="append", required=True, metavar="NAME=[HOST:]PORT",
        help="a link (on --bind unless it names its own address)"
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    p.add_argument("--bind", default="127.0.0.1", help="address links and the control API listen on")
    p.add_argument("--source-address", metavar="ADDRESS", help="local address of connections to the upstream")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s proxy %(levelname)s: %(message)s")
    links = dict(a.link)
    if len(links) != len(a.link):
        p.error("link names must be unique")
    asyncio.run(serve(a.control_port, a.upstream, links, a.bind, a.source_address))
    return 0


if __name__ == "__main__":
    sys.exit(main())
