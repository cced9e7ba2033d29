"""The fault proxy as a real process between real clients and a real redis-server."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from rl_support import assert_dead, assert_ports_closed, free_port

from subjects import processes

PING = b"*1\r\n$4\r\nPING\r\n"


@pytest.fixture(scope="module")
def proxy(redis_server, tmp_path_factory) -> Iterator[dict]:
    redis_port = int(redis_server.rsplit(":", 1)[1].split("/")[0])
    control, a, b = free_port(), free_port(), free_port()
    argv = [sys.executable, "-m", "subjects.ratelimiter.proxy", "--control-port", str(control)]
    argv += ["--upstream", f"127.0.0.1:{redis_port}", "--link", f"a={a}", "--link", f"b={b}"]
    rec = processes.spawn("proxy", argv, tmp_path_factory.mktemp("proxy") / "proxy.log", port=control)
    try:
        assert processes.wait_port(control, 20.0, alive=rec), processes.log_tail(rec.log)
        yield {"url": f"http://127.0.0.1:{control}", "a": a, "b": b}
    finally:
        processes.stop(rec)
        assert_dead([rec])
        assert_ports_closed([control, a, b])


@pytest.fixture(autouse=True)
def links_back_to_pass(proxy):
    yield
    httpx.put(f"{proxy['url']}/links/*", json={"mode": "pass"}, timeout=5.0).raise_for_status()


def set_mode(proxy, name, mode, delay_ms=0) -> dict:
    r = httpx.put(f"{proxy['url']}/links/{name}", json={"mode": mode, "delay_ms": delay_ms}, timeout=5.0)
    assert r.status_code == 200, r.text
    return r.json()


def client(port: int, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout, retry=None)


def raw_ping(port: int, timeout: float = 2.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(PING)
    assert s.recv(100) == b"+PONG\r\n"
    return s


def test_pass_forwards(proxy):
    c = client(proxy["a"])
    try:
        assert c.ping() is True
        c.set("proxied", "yes")
        assert c.get("proxied") == b"yes"
    finally:
        c.close()
    links = httpx.get(f"{proxy['url']}/links").json()["links"]
    assert set(links) == {"a", "b"}
    assert links["a"]["mode"] == "pass" and links["a"]["listen_port"] == proxy["a"]


def test_delay_adds_latency_to_each_round_trip(proxy):
    set_mode(proxy, "a", "delay", 300)
    c = client(proxy["a"], timeout=5.0)
    try:
        for _ in range(2):
            started = time.monotonic()
            assert c.ping() is True
            assert time.monotonic() - started >= 0.29
    finally:
        c.close()
    assert httpx.get(f"{proxy['url']}/links/a").json()["delay_ms"] == 300
    other = client(proxy["b"])
    try:
        assert other.ping() is True  # only link a is delayed
    finally:
        other.close()


def test_blackhole_accepts_but_never_answers(proxy):
    set_mode(proxy, "a", "blackhole")
    s = socket.create_connection(("127.0.0.1", proxy["a"]), timeout=0.5)
    try:
        s.sendall(PING)
        with pytest.raises(TimeoutError):
            s.recv(100)
    finally:
        s.close()


def test_reset_refuses_new_connections(proxy):
    set_mode(proxy, "a", "reset")
    c = client(proxy["a"])
    try:
        with pytest.raises(redis.ConnectionError):
            c.ping()
    finally:
        c.close()


@pytest.mark.parametrize("mode", ["reset", "blackhole", "delay"])
def test_mode_change_resets_existing_connections(proxy, mode):
    s = raw_ping(proxy["b"])
    try:
        answer = set_mode(proxy, "b", mode, 100 if mode == "delay" else 0)
        assert answer["reset_connections"] >= 1
        assert answer["previous"] == {"b": {"mode": "pass", "delay_ms": 0}}
        s.settimeout(5.0)
        try:
            s.sendall(PING)
            got = s.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            got = b""
        assert got == b""  # the client notices: reset or EOF, never a late answer
    finally:
        s.close()


def test_star_sets_every_link_and_errors_are_clear(proxy):
    answer = set_mode(proxy, "*", "delay", 50)
    assert {n: link["mode"] for n, link in answer["links"].items()} == {"a": "delay", "b": "delay"}
    r = httpx.put(f"{proxy['url']}/links/zz", json={"mode": "pass"})
    assert r.status_code == 404 and "a, b" in r.json()["error"]
    r = httpx.put(f"{proxy['url']}/links/a", json={"mode": "sideways"})
    assert r.status_code == 422 and "pass" in r.json()["error"]
    r = httpx.put(f"{proxy['url']}/links/a", json={"mode": "delay"})
    assert r.status_code == 422 and "delay_ms" in r.json()["error"]
    r = httpx.put(f"{proxy['url']}/links/a", content="{")
    assert r.status_code == 422
