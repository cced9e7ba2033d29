"""A recording, fault-injecting HTTP proxy in front of PD (the simulator), on 127.0.0.1.

The operator talks to the proxy as to PD. Every request is recorded (method, path, body), which
is the ground truth of what the operator sent: a non-idempotent request sent twice for one action
shows here. `fail(...)` makes matching requests answer with an error (once or always), the way a
flaky PD or network does: after a request that changed the cluster, say, its confirmation fails.

    async with PDProxy(sim.pd_url) as proxy:
        proxy.fail("GET", r"/pd/api/v1/region/id/10", status=503, after=("POST", "/pd/api/v1/operators"))
        ... pd_url=proxy.url ...
        proxy.count("POST", "/pd/api/v1/operators")
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class Sent:
    method: str
    path: str
    body: Any
    at: float = 0.0  # time.time() when it arrived
    status: int | None = None  # what PD (or an injected fault) answered


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    times: int  # how many matching requests fail (then it is spent); -1: all
    after: tuple[str, str] | None  # only once a request like this was seen
    drop: bool = False  # close the connection without an answer instead
    hits: int = 0


@dataclass
class PDProxy:
    upstream: str
    requests: list[Sent] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # (path pattern, function of PD's answer body -> the body to send instead): PD answers as it
    # would with other contents (store labels set at deploy time, extra metric series, ...)
    rewrites: list[tuple[re.Pattern[str], Callable[[bytes], bytes]]] = field(default_factory=list)
    port: int = 0
    hide_sim: bool = False  # answer 404 to the simulator's own API: the operator sees "a real PD"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, method: str, pattern: str, *, status: int = 503, body: Any = "[PD:server:ErrServerNotStarted]",
             times: int = 1, after: tuple[str, str] | None = None, drop: bool = False) -> Fault:
        fault = Fault(method, re.compile(pattern), status, body, times, after, drop)
        self.faults.append(fault)
        return fault

    def rewrite(self, pattern: str, fn: Callable[[bytes], bytes]) -> None:
        self.rewrites.append((re.compile(pattern), fn))

    def count(self, method: str, path_pattern: str, body_has: dict[str, Any] | None = None) -> int:
        rx = re.compile(path_pattern)
        return sum(1 for r in self.requests if r.method == method and rx.search(r.path)
                   and (body_has is None or (isinstance(r.body, dict)
                                             and all(r.body.get(k) == v for k, v in body_has.items()))))

    async def __aenter__(self) -> PDProxy:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        await self._session.close()

    def _seen(self, method: str, path: str) -> bool:
        return any(r.method == method and r.path.startswith(path) for r in self.requests)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = request.path_qs
        sent = Sent(request.method, path, body, time.time())
        self.requests.append(sent)
        if self.hide_sim and request.path.startswith("/sim/"):
            sent.status = 404
            return web.Response(status=404, text="404 page not found")
        for fault in self.faults:
            if fault.times == 0 or fault.method != request.method or not fault.pattern.search(path):
                continue
            if fault.after is not None and not self._seen(*fault.after):
                continue
            fault.hits += 1
            if fault.times > 0:
                fault.times -= 1
            sent.status = fault.status
            if fault.drop:
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            return web.json_response(fault.body, status=fault.status)
        async with self._session.request(request.method, self.upstream + path, data=raw or None,
                                         headers={k: v for k, v in request.headers.items()
                                                  if k.lower() in ("content-type",)}) as upstream:
            data = await upstream.read()
            sent.status = upstream.status
            for pattern, fn in self.rewrites:
                if upstream.status == 200 and pattern.search(request.path):
                    data = fn(data)
            return web.Response(status=upstream.status, body=data,
                                content_type=upstream.content_type, charset=upstream.charset)
