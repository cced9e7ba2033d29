"""A lean HTTP/1.1 GET client for TiKV status ports: one kept-alive connection per store.

Probing and scraping a thousand stores every second leaves no room for a general-purpose
client's per-request cost; this one does only what status ports need (GET, Content-Length or
chunked bodies, keep-alive) and reconnects whenever anything about a connection is off.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

MAX_BODY = 8 * 1024 * 1024


class StatusError(Exception):
    """The status port did not give a usable answer; `reason` says how, for people."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class BodyTooLarge(StatusError):
    """The store answered (it is alive), but with a body over the cap, which was not read."""


class StatusConnection:
    def __init__(self, address: str, ssl_context: Any = None):
        self.address = address
        self.ssl_context = ssl_context
        host, _, port = address.rpartition(":")
        self.host = host or "127.0.0.1"
        try:
            self.port = int(port)
        except ValueError as e:
            raise StatusError(f"status address {address!r} has no port") from e
        self.max_body = MAX_BODY
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        # Two observers may probe the same store at once (the monitor and a precheck): one
        # request at a time on a connection.
        self._lock = asyncio.Lock()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def get(self, path: str, timeout: float) -> tuple[int, bytes]:
        """One GET; reuses the connection when it is still open. Raises StatusError."""
        async with self._lock:
            return await self._get_timed(path, timeout)

    async def _get_timed(self, path: str, timeout: float) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(timeout):  # no extra task per request, unlike wait_for
                return await self._get(path)
        except TimeoutError as e:
            self.close()
            raise StatusError(f"status port {self.address} did not answer within {timeout:g} s") from e
        except ConnectionRefusedError as e:
            self.close()
            raise StatusError(f"status port {self.address}: connection refused") from e
        except ssl.SSLError as e:
            self.close()
            raise StatusError(f"status port {self.address}: TLS failed: {e.reason or e}") from e
        except (OSError, asyncio.IncompleteReadError, ValueError, StatusError) as e:
            self.close()  # also after BodyTooLarge: the unread rest of the body is still on the wire
            if isinstance(e, StatusError):
                raise
            raise StatusError(f"status port {self.address}: {type(e).__name__}: {e}") from e

    async def _get(self, path: str) -> tuple[int, bytes]:
        for attempt in (1, 2):
            fresh = self._writer is None
            if fresh:
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.ssl_context,
                    server_hostname=self.host.strip("[]") if self.ssl_context is not None else None)
            try:
                return await self._exchange(path)
            except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
                # A kept-alive connection the server has since closed: one retry on a new one.
                self.close()
                if fresh or attempt == 2:
                    raise
        raise StatusError("unreachable")  # pragma: no cover - the loop always returns or raises

    def _too_large(self, status: int) -> BodyTooLarge:
        return BodyTooLarge(f"status port {self.address} answered HTTP {status} with a body over "
                            f"{self.max_body // (1024 * 1024)} MiB: not read")

    async def _exchange(self, path: str) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.address}\r\nConnection: keep-alive\r\n\r\n".encode())
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise StatusError(f"status port {self.address} answered something that is not HTTP")
        status = int(parts[1])
        length = None
        chunked, keep_alive = False, True
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and value == b"close":
                keep_alive = False
        if chunked:
            body = bytearray()
            while True:
                size = int((await self._reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self._reader.readline()
                    break
                if len(body) + size > self.max_body:
                    raise self._too_large(status)
                body += await self._reader.readexactly(size)
                await self._reader.readexactly(2)
            data = bytes(body)
        elif length is not None:
            if length > self.max_body:
                raise self._too_large(status)
            data = await self._reader.readexactly(length)
        else:
            data = await self._reader.read(self.max_body + 1)
            keep_alive = False
            if len(data) > self.max_body:
                raise self._too_large(status)
        if not keep_alive:
            self.close()
        return status, data
