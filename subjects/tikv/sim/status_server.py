"""One status listener per store (TiKV's :20180): GET /status and GET /metrics.

A listener lives exactly as long as its store's process: a killed store's port is CLOSED (connections
refused, open ones dropped), and a restart binds the SAME port again. Binding happens synchronously
inside the model's process hook, so the port's state always matches the model's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class StatusListener:
    def __init__(
        self,
        store_id: int,
        host: str,
        port: int,
        handle: Callable[[int, web.BaseRequest], Awaitable[web.StreamResponse]],
        ssl: Any = None,
    ) -> None:
        self.store_id = store_id
        self.ssl = ssl  # an SSLContext: the port serves HTTPS
        self.host = host
        self.port = port
        self._handle = handle
        self._web: web.Server | None = None
        self._server: asyncio.Server | None = None
        self._sock: socket.socket | None = None
        self._gen = 0
        self._unhang = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def open(self) -> None:
        """Bind and listen now (connections queue in the backlog); serving starts on the next loop turn."""
        if self._sock is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(512)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._gen += 1
        if self._web is None:
            self._web = web.Server(self._serve, access_log=None)
        task = asyncio.get_running_loop().create_task(self._start_serving(sock, self._gen))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_serving(self, sock: socket.socket, gen: int) -> None:
        if gen != self._gen or self._web is None:
            return
        try:
            server = await asyncio.get_running_loop().create_server(self._web, sock=sock, ssl=self.ssl)
        except OSError as e:
            log.error("store %d: cannot serve its status port %d: %s", self.store_id, self.port, e)
            return
        if gen != self._gen:
            server.close()
            return
        self._server = server

    def close(self) -> None:
        """The process is gone: stop listening and drop every open connection at once."""
        self._gen += 1
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._web is not None:
            for conn in self._web.connections:
                conn.force_close()
        self.release_hung()

    def release_hung(self) -> None:
        """Wake requests held by a status_hang fault (they answer, or find their connection gone)."""
        self._unhang.set()
        self._unhang = asyncio.Event()

    async def wait_unhung(self) -> None:
        await self._unhang.wait()

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        return await self._handle(self.store_id, request)

    async def aclose(self) -> None:
        self.close()
        if self._web is not None:
            await self._web.shutdown(0.2)
        for task in list(self._tasks):
            task.cancel()
