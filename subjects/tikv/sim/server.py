"""The simulator as a server: PD's port, one status port per store, the admin listener (faults,
workload read-out: a harness's, never the operator's), the host agent (restart or stop a store),
and the tick loop.

`SimServer` runs on the caller's event loop; `SimThread` runs one on its own loop in a daemon
thread (so that simulated time keeps going whatever the UI's loop is doing); `run_until_signal` is
the `operator-tui sim tikv` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from subjects.tikv.sim import metrics_text, pd_views
from subjects.tikv.sim.clock import Clock, WallClock
from subjects.tikv.sim.config import SimConfig
from subjects.tikv.sim.faults import FaultManager
from subjects.tikv.sim.model import Cluster
from subjects.tikv.sim.pd_api import Routes
from subjects.tikv.sim.status_server import StatusListener

log = logging.getLogger("subjects.tikv.sim")
T = TypeVar("T")

_WILDCARDS = {"0.0.0.0", "::", ""}


class SimServer:
    """A simulated TiKV cluster behind a PD endpoint, on the running event loop."""

    def __init__(self, config: SimConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self._clock = clock
        self.clock: Clock = clock or WallClock(config.time_scale)
        self.cluster: Cluster
        self.faults: FaultManager
        self.listeners: dict[int, StatusListener] = {}
        self._runner: web.AppRunner | None = None
        self._side_runners: list[web.AppRunner] = []
        self._tick_task: asyncio.Task[None] | None = None
        self._port = 0
        self._admin_port = 0
        self._host_agent_port = 0
        # one workload bucket per wall second, for the admin listener's read-out (the last hour)
        self._buckets: deque[dict[str, Any]] = deque(maxlen=3600)
        self._bucket_second: int | None = None
        self._started = False
        self._workload_cache: tuple[int, dict[str, Any]] | None = None
        self._warmer = pd_views.RegionCacheWarmer()

    @property
    def pd_url(self) -> str:
        host = self.config.host
        if host in _WILDCARDS:
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.config.tls_cert else 'http'}://{host}:{self._port}"

    @staticmethod
    def _url(host: str, port: int) -> str:
        if host in _WILDCARDS:
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def admin_url(self) -> str:
        return self._url(self.config.admin_host or self.config.host, self._admin_port)

    @property
    def host_agent_url(self) -> str:
        return self._url(self.config.host_agent_host or self.config.host, self._host_agent_port)

    @property
    def status_host(self) -> str:
        return "127.0.0.1" if self.config.host in _WILDCARDS else self.config.host

    def store_host(self, sid: int) -> str:
        if self.config.store_hosts:
            return self.config.store_hosts[sid - 1]
        return self.status_host

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("the simulator is already started")
        cfg = self.config
        if self._clock is None:
            self.clock = WallClock(cfg.time_scale)
        try:
            await self._start_pd()
            routes = Routes(self)
            self._admin_port = await self._start_side(routes.build_admin_app(), cfg.admin_host or cfg.host,
                                                      cfg.admin_port)
            self._host_agent_port = await self._start_side(routes.build_host_app(),
                                                           cfg.host_agent_host or cfg.host, cfg.host_agent_port)
            for sid in range(1, cfg.stores + 1):
                port = cfg.status_base_port + sid if cfg.status_base_port else 0
                listener = StatusListener(sid, self.store_host(sid), port, self._handle_status, ssl=cfg.server_ssl())
                try:
                    listener.open()
                except OSError as e:
                    raise OSError(e.errno, f"status port {port} of store {sid}: {e.strerror or e}") from e
                self.listeners[sid] = listener
            def address(sid: int) -> str:
                host = self.store_host(sid)
                return f"[{host}]:{self.listeners[sid].port}" if ":" in host else f"{host}:{self.listeners[sid].port}"

            self.cluster = Cluster(cfg, self.clock.now(), status_address=address)
            self.cluster.pd.pd_url = self.pd_url
            self.cluster.process_hook = self._on_process
            self.faults = FaultManager(self.cluster, on_unhang=self._on_unhang)
        except BaseException:
            await self._close_all()
            raise
        self._started = True
        self._tick_task = asyncio.get_running_loop().create_task(self._tick_loop())
        log.info(
            "simulator up: PD %s, %d stores, %d regions, time-scale %g, seed %d",
            self.pd_url,
            cfg.stores,
            cfg.regions,
            cfg.time_scale,
            cfg.seed,
        )

    async def _start_pd(self) -> None:
        app = Routes(self).build_app()
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True, backlog=1024,
                           ssl_context=self.config.server_ssl())
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self._port = server.sockets[0].getsockname()[1]

    async def _start_side(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        self._side_runners.append(runner)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        return int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close every listener and the tick task; idempotent."""
        self._started = False
        await self._close_all()

    async def _close_all(self) -> None:
        task, self._tick_task = self._tick_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        listeners = list(self.listeners.values())
        self.listeners = {}
        for listener in listeners:
            listener.close()
        for listener in listeners:
            await listener.aclose()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        side, self._side_runners = self._side_runners, []
        for runner in side:
            await runner.cleanup()

    def sync(self) -> None:
        """Bring the model up to the clock's current simulated time (ending transient faults whose
        time is up)."""
        self.cluster.advance_to(self.clock.now())
        self.faults.expire()

    async def _tick_loop(self) -> None:
        interval = self.config.tick_interval
        while True:
            await asyncio.sleep(interval)
            try:
                self.sync()
                self._warmer.step(self.cluster)
                self._record_bucket()
            except Exception:
                log.exception("simulator tick failed")

    def _record_bucket(self) -> None:
        """At each new wall second, the workload model's figures as that second's bucket (the
        model's request rate, split by its error rate; its client-side p99)."""
        second = int(time.time())
        if second == self._bucket_second:
            return
        self._bucket_second = second
        view = self.workload_view()
        planned = round(float(view["qps"]))
        fail = min(planned, math.ceil(planned * float(view["error_rate"])))
        self._buckets.append({"t_wall": float(second), "planned": planned, "ok": planned - fail, "fail": fail,
                              "indeterminate": 0, "p50_ms": None, "p99_ms": float(view["p99_ms"]), "over_slo": 0})

    def workload_buckets(self, after: float | None) -> list[dict[str, Any]]:
        """Complete buckets (the current second's is not) after `after`, oldest first."""
        current = self._bucket_second
        return [b for b in self._buckets if (after is None or b["t_wall"] > after) and b["t_wall"] != current]

    def workload_view(self) -> dict[str, Any]:
        version = self.cluster.load_version
        if self._workload_cache is None or self._workload_cache[0] != version:
            self._workload_cache = (version, self.cluster.workload_view())
        return self._workload_cache[1]

    # ------------------------------------------------------------------ store status ports

    def _on_process(self, sid: int, running: bool) -> None:
        listener = self.listeners.get(sid)
        if listener is None:
            return
        if running:
            try:
                listener.open()
            except OSError as e:
                log.error("store %d restarted but cannot bind its status port %d: %s", sid, listener.port, e)
        else:
            listener.close()

    def _on_unhang(self, sid: int) -> None:
        listener = self.listeners.get(sid)
        if listener is not None:
            listener.release_hung()

    async def _handle_status(self, sid: int, request: web.BaseRequest) -> web.StreamResponse:
        try:
            listener = self.listeners.get(sid)
            while listener is not None and sid in self.faults.hung_stores and listener.is_open:
                await listener.wait_unhung()  # a hung process: the connection stays open, unanswered
            self.sync()
            store = self.cluster.stores.get(sid)
            if store is None or not store.running:
                return web.Response(status=503)  # only seen by a request caught mid-kill
            if request.method not in ("GET", "HEAD"):
                return web.Response(status=405)
            if request.path == "/metrics":
                body = metrics_text.store_metrics(self.cluster, store)
                return web.Response(body=body, headers={"Content-Type": metrics_text.CONTENT_TYPE})
            if request.path == "/status":
                return web.Response(status=200)
            return web.Response(status=404, text="not found\n")
        except Exception as e:
            log.exception("store %d status request %s failed", sid, request.path)
            return web.Response(status=500, text=f"internal error: {type(e).__name__}: {e}\n")


class SimThread:
    """A SimServer on its own event loop in a daemon thread. Also a context manager."""

    def __init__(self, config: SimConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self._clock = clock
        self.server: SimServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._stopped = False

    def start(self, timeout: float = 120.0) -> SimThread:
        self._thread = threading.Thread(target=self._run, name="tikv-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the simulator did not start within {timeout:g}s")
        if self._error is not None:
            self._thread.join(5.0)
            raise self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # surfaced to start(); never lost
            if not self._ready.is_set():
                self._error = e
                self._ready.set()
            else:
                log.exception("simulator thread failed")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = SimServer(self.config, clock=self._clock)
        try:
            await server.start()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self.server = server
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop()

    @property
    def pd_url(self) -> str:
        if self.server is None:
            raise RuntimeError("the simulator is not running")
        return self.server.pd_url

    @property
    def admin_url(self) -> str:
        if self.server is None:
            raise RuntimeError("the simulator is not running")
        return self.server.admin_url

    @property
    def host_agent_url(self) -> str:
        if self.server is None:
            raise RuntimeError("the simulator is not running")
        return self.server.host_agent_url

    @property
    def cluster(self) -> Cluster:
        if self.server is None:
            raise RuntimeError("the simulator is not running")
        return self.server.cluster

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run fn on the simulator's loop (the model is not thread-safe) and return its result."""
        if self._loop is None or self.server is None:
            raise RuntimeError("the simulator is not running")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> SimThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sim_thread(config: SimConfig, *, clock: Clock | None = None) -> SimThread:
    """Start a simulator in a daemon thread; returns once PD and every status port are listening."""
    return SimThread(config, clock=clock).start()


def run_until_signal(config: SimConfig, log_level: str = "info") -> int:
    """The `operator-tui sim tikv` process: serve until SIGINT or SIGTERM, then close everything."""
    logging.basicConfig(
        level=getattr(logging, str(log_level).upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        server = SimServer(config)
        await server.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(
            f"PD API listening on {server.pd_url} ({config.stores} stores, {config.regions} regions, "
            f"time-scale {config.time_scale:g})",
            flush=True,
        )
        print(f"admin API (faults, workload) on {server.admin_url}", flush=True)
        print(f"host agent (restart, stop) on {server.host_agent_url}", flush=True)
        try:
            await stop.wait()
            log.info("signal received: shutting down")
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await server.stop()

    asyncio.run(main())
    return 0
