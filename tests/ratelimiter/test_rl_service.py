"""The node service over HTTP: 3 real nodes, a real redis-server, the fault proxy between them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rl_support import healthy, unique_key, wait_until

from subjects.ratelimiter.service import schema


def check(http, url, key, **extra):
    return http.post(f"{url}/check", json={"key": key, **extra})


def nodes_by_id(http, url) -> dict[str, dict]:
    r = http.get(f"{url}/api/nodes")
    assert r.status_code == 200, r.text
    return {n["id"]: n for n in r.json()["nodes"]}


def test_allowed_then_429_with_headers(lab, http):
    url = lab.node_urls()["n1"]
    key = unique_key("hdr")
    for i in range(3):
        r = check(http, url, key, limit=3, window_ms=10_000)
        assert r.status_code == 200
        body = r.json()
        assert body == {
            "allowed": True,
            "key": key,
            "limit": 3,
            "window_ms": 10_000,
            "remaining": 2 - i,
            "reset_ms": body["reset_ms"],
            "node": "n1",
            "result": "allowed",
        }
        assert 0 < body["reset_ms"] <= 10_000
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert r.headers["X-RateLimit-Remaining"] == str(2 - i)
    r = check(http, url, key, limit=3, window_ms=10_000)
    assert r.status_code == 429
    body = r.json()
    assert body["allowed"] is False and body["remaining"] == 0 and body["result"] == "denied"
    assert r.headers["X-RateLimit-Limit"] == "3"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    reset_s = int(r.headers["X-RateLimit-Reset"])
    assert 1 <= reset_s <= 10
    assert int(r.headers["Retry-After"]) == reset_s


def test_admits_again_once_the_window_slides(lab, http):
    url = lab.node_urls()["n2"]
    key = unique_key("slide")
    for _ in range(2):
        assert check(http, url, key, limit=2, window_ms=400).status_code == 200
    denied = check(http, url, key, limit=2, window_ms=400)
    assert denied.status_code == 429
    time.sleep(denied.json()["reset_ms"] / 1000 + 0.05)
    assert check(http, url, key, limit=2, window_ms=400).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", None),
        ("[1, 2]", None),
        ("{}", "key"),
        ('{"key": ""}', "key"),
        ('{"key": "   "}', "key"),
        ('{"key": 5}', "key"),
        ('{"key": "a\\u0000b"}', "key"),
        ('{"key": "k", "limit": 0}', "limit"),
        ('{"key": "k", "limit": -3}', "limit"),
        ('{"key": "k", "limit": 2.5}', "limit"),
        ('{"key": "k", "limit": "5"}', "limit"),
        ('{"key": "k", "limit": true}', "limit"),
        ('{"key": "k", "window_ms": 0}', "window_ms"),
        ('{"key": "k", "window_ms": "1000"}', "window_ms"),
        ('{"key": "k", "bogus": 1}', "bogus"),
    ],
)
def test_bad_requests_get_422_naming_the_field(lab, http, body, field):
    r = http.post(
        f"{lab.node_urls()['n1']}/check", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    out = r.json()
    assert out["field"] == field
    assert isinstance(out["error"], str) and out["error"]


def test_limits_api(lab, http):
    n1, n2 = lab.node_urls()["n1"], lab.node_urls()["n2"]
    key = unique_key("limits")
    r = http.get(f"{n1}/api/limits/{key}")
    assert r.json() == {"key": key, "limit": 100, "window_ms": 1000, "source": "default"}
    r = http.put(f"{n1}/api/limits/{key}", json={"limit": 2, "window_ms": 30_000})
    assert r.status_code == 200 and r.json()["source"] == "configured"
    assert http.get(f"{n2}/api/limits/{key}").json() == {  # shared through Redis
        "key": key,
        "limit": 2,
        "window_ms": 30_000,
        "source": "configured",
    }
    assert check(http, n2, key).json()["limit"] == 2
    assert check(http, n1, key).status_code == 200
    assert check(http, n2, key).status_code == 429  # the configured limit applies on every node
    assert check(http, n2, key, limit=5).status_code == 200  # the request's own limit wins
    assert http.put(f"{n1}/api/limits/{key}", json={"limit": 0}).json()["field"] == "limit"
    assert http.put(f"{n1}/api/limits/{key}", content="x").status_code == 422
    assert http.delete(f"{n1}/api/limits/{key}").json() == {"key": key, "deleted": True}
    assert http.get(f"{n1}/api/limits/{key}").json()["source"] == "default"
    slashed = f"{key}/with/slashes"
    assert http.put(f"{n1}/api/limits/{slashed}", json={"limit": 4}).json()["window_ms"] == 1000
    assert http.get(f"{n2}/api/limits/{slashed}").json()["limit"] == 4


def test_counters_pagination_and_reset(lab, http):
    url = lab.node_urls()["n3"]
    prefix = unique_key("ctr")
    keys = [f"{prefix}:{i}" for i in range(23)]
    for i, key in enumerate(keys):
        for _ in range(i % 4 + 1):
            check(http, url, key, limit=10, window_ms=60_000)
    seen: dict[str, dict] = {}
    cursor, pages = "0", 0
    while True:
        r = http.get(f"{url}/api/counters", params={"cursor": cursor, "count": 5})
        assert r.status_code == 200
        page = r.json()
        pages += 1
        for row in page["counters"]:
            seen[row["key"]] = row
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
        assert pages < 200
    assert pages > 1
    for i, key in enumerate(keys):
        assert seen[key]["count"] == i % 4 + 1
        assert (seen[key]["limit"], seen[key]["window_ms"], seen[key]["configured"]) == (10, 60_000, False)
    r = http.post(f"{url}/api/counters/{keys[3]}/reset")
    assert r.json() == {"key": keys[3], "reset": True, "removed": 4}
    assert check(http, url, keys[3], limit=10, window_ms=60_000).json()["remaining"] == 9
    assert http.get(f"{url}/api/counters", params={"count": 0}).json()["field"] == "count"
    assert http.get(f"{url}/api/counters", params={"cursor": "x"}).json()["field"] == "cursor"


async def test_concurrent_checks_across_nodes_admit_exactly_the_limit(lab):
    urls = list(lab.node_urls().values())
    key = unique_key("race")
    connector = aiohttp.TCPConnector(limit=300)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def one(i: int) -> int:
            async with s.post(
                f"{urls[i % 3]}/check", json={"key": key, "limit": 50, "window_ms": 60_000}
            ) as r:
                return r.status

        statuses = await asyncio.gather(*(one(i) for i in range(300)))
    assert statuses.count(200) == 50
    assert statuses.count(429) == 250


def test_stats_contract_and_over_admission_bookkeeping(lab, http):
    urls = lab.node_urls()
    key = unique_key("stats")
    for node in ("n1", "n2", "n1"):
        check(http, urls[node], key, limit=5, window_ms=30_000)
    per_node = {}
    at_ms = None
    for node, url in urls.items():
        params = {"at_ms": at_ms} if at_ms else {}
        st = http.get(f"{url}/api/stats", params=params).json()
        at_ms = at_ms or st["at_ms"]  # one instant for every node, so the sum is exact
        assert set(st) >= {
            "node_id",
            "address",
            "fail_mode",
            "redis_ok",
            "redis_error",
            "draining",
            "cache",
            "keys",
            "checks",
            "latency_p99_ms",
        }
        assert st["node_id"] == node and st["address"] == url.removeprefix("http://")
        assert st["redis_ok"] is True and st["redis_error"] is None
        assert st["cache"] == {"enabled": False, "ttl_ms": 0, "entries": 0}
        assert set(st["checks"]) == set(schema.CHECK_RESULTS)
        per_node[node] = st["keys"].get(key)
    assert per_node["n3"] is None
    assert per_node["n1"] == {
        "limit": 5,
        "window_ms": 30_000,
        "admitted_in_window": 2,
        "allowed_total": 2,
        "denied_total": 0,
        "local_count": None,
    }
    assert per_node["n2"]["admitted_in_window"] == 1
    assert http.get(f"{urls['n1']}/api/stats", params={"at_ms": "soon"}).status_code == 422
    later = http.get(f"{urls['n1']}/api/stats", params={"at_ms": at_ms + 31_000}).json()
    assert later["keys"][key]["admitted_in_window"] == 0  # the window has passed by then


def test_metrics_parse(lab, http):
    url = lab.node_urls()["n2"]
    check(http, url, unique_key("metrics"), limit=1)
    text = http.get(f"{url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "ratelimiter_checks",
        "ratelimiter_check_latency_seconds",
        "ratelimiter_node_up",
        "ratelimiter_redis_errors",
        "ratelimiter_cache_hits",
        "ratelimiter_redis_ok",
        "ratelimiter_draining",
        "ratelimiter_fail_open",
    ):
        assert name in families, name
    results = {
        s.labels["result"] for s in families["ratelimiter_checks"].samples if s.name.endswith("_total")
    }
    assert results == set(schema.CHECK_RESULTS)
    assert all(s.labels["node"] == "n2" for f in families.values() for s in f.samples)
    up = [s.value for s in families["ratelimiter_node_up"].samples]
    assert up == [1.0]
    allowed = [
        s.value
        for s in families["ratelimiter_checks"].samples
        if s.labels.get("result") == "allowed" and s.name.endswith("_total")
    ]
    assert allowed[0] >= 1
    count = [
        s.value for s in families["ratelimiter_check_latency_seconds"].samples if s.name.endswith("_count")
    ]
    assert count[0] >= 1


def test_health_and_node_registry(lab, http):
    urls = lab.node_urls()
    h = http.get(f"{urls['n1']}/health")
    assert h.status_code == 200
    assert h.json()["fail_mode"] == "closed" and h.json()["redis_ok"] is True
    nodes = nodes_by_id(http, urls["n3"])
    assert set(nodes) == {"n1", "n2", "n3"}
    for node_id, n in nodes.items():
        assert n["state"] == "up" and n["url"] == urls[node_id]
        assert n["last_heartbeat_ms"] > 0 and n["ttl_ms"] == 1000


def test_killed_node_shows_down_after_ttl_and_up_after_restart(lab, http):
    urls = lab.node_urls()
    lab.kill_node("n3")
    try:
        down = wait_until(
            lambda: (n := nodes_by_id(http, urls["n1"])["n3"])["state"] == "down" and n,
            what="n3 down in the registry",
        )
        assert down["heartbeat_age_ms"] > 1000  # down because its TTL passed, and still listed
        assert nodes_by_id(http, urls["n2"])["n3"]["state"] == "down"
    finally:
        lab.start_node("n3")
    wait_until(lambda: healthy(urls["n3"]), what="n3 healthy")
    wait_until(lambda: nodes_by_id(http, urls["n1"])["n3"]["state"] == "up", what="n3 up again")


def test_cleanly_stopped_node_is_down_at_once(lab, http):
    urls = lab.node_urls()
    assert lab.stop_node("n2") == "terminated"
    try:
        n2 = nodes_by_id(http, urls["n1"])["n2"]
        assert n2["state"] == "down" and n2["stopped"] is True
    finally:
        lab.start_node("n2")
    wait_until(lambda: nodes_by_id(http, urls["n1"])["n2"]["state"] == "up", what="n2 up again")


def test_drain_keeps_serving_but_shows_draining(lab, http):
    urls = lab.node_urls()
    r = http.post(f"{urls['n2']}/admin/drain")
    assert r.json() == {"node_id": "n2", "draining": True, "previous": False}
    try:
        assert nodes_by_id(http, urls["n1"])["n2"]["state"] == "draining"
        assert check(http, urls["n2"], unique_key("drain")).status_code == 200
        assert http.get(f"{urls['n2']}/api/stats").json()["draining"] is True
        assert http.get(f"{urls['n2']}/health").json()["draining"] is True
    finally:
        http.post(f"{urls['n2']}/admin/undrain")
    assert nodes_by_id(http, urls["n1"])["n2"]["state"] == "up"


def test_fail_closed_and_fail_open_when_redis_is_unreachable(lab, http):
    url = lab.node_urls()["n1"]
    key = unique_key("fail")
    check(http, url, key, limit=7, window_ms=10_000)  # the node learns the key's limit
    lab.set_link("n1", "reset")
    try:
        r = check(http, url, key)
        assert r.status_code == 429
        assert r.json()["result"] == "denied_fail_closed" and r.json()["remaining"] is None
        assert r.json()["limit"] == 7  # remembered, since Redis cannot be asked
        assert r.headers["X-RateLimit-Limit"] == "7" and "X-RateLimit-Remaining" not in r.headers
        h = http.get(f"{url}/health")
        assert h.status_code == 503
        assert h.json()["fail_mode"] == "closed" and "redis unreachable" in h.json()["reason"]
        st = http.get(f"{url}/api/stats").json()
        assert st["redis_ok"] is False and st["redis_error"]
        assert http.get(f"{url}/api/nodes").status_code == 503
        changed = http.post(f"{url}/admin/config", json={"fail_mode": "open"}).json()
        assert changed["previous"]["fail_mode"] == "closed" and changed["config"]["fail_mode"] == "open"
        r = check(http, url, key)
        assert r.status_code == 200 and r.json()["result"] == "allowed_fail_open"
        assert http.get(f"{url}/health").json()["fail_mode"] == "open"
        lab.set_link("n1", "blackhole")  # a silent Redis: answers come from the timeout instead
        r = check(http, url, key)
        assert r.status_code == 200 and r.json()["result"] == "allowed_fail_open"
        checks = http.get(f"{url}/api/stats").json()["checks"]
        assert checks["denied_fail_closed"] >= 1 and checks["allowed_fail_open"] >= 2
    finally:
        lab.set_link("n1", "pass")
        http.post(f"{url}/admin/config", json={"fail_mode": "closed"})
    wait_until(lambda: healthy(url), what="n1 healthy again")
    assert check(http, url, key).json()["result"] in ("allowed", "denied")


def test_bad_admin_config_is_rejected_and_changes_nothing(lab, http):
    url = lab.node_urls()["n3"]
    before = http.get(f"{url}/admin/config").json()
    for body in ({"fail_mode": "sideways"}, {"cache_ttl_ms": -1}, {"cache_ttl_ms": "5"}, {"other": 1}):
        r = http.post(f"{url}/admin/config", json=body)
        assert r.status_code == 422 and r.json()["field"] == next(iter(body))
    assert http.get(f"{url}/admin/config").json() == before


def test_local_cache_over_admits_and_drifts_from_redis(lab, http):
    """The drift mechanism: a node trusting its cached view admits what Redis would deny."""
    urls = lab.node_urls()
    key = unique_key("drift")
    limit, window = 10, 60_000
    assert (
        http.put(f"{urls['n1']}/api/limits/{key}", json={"limit": limit, "window_ms": window}).status_code
        == 200
    )
    http.post(f"{urls['n1']}/admin/config", json={"cache_ttl_ms": 60_000})
    try:
        assert check(http, urls["n1"], key).json()["remaining"] == 9  # a miss: asks Redis, caches the view
        for _ in range(9):
            assert check(http, urls["n2"], key).status_code == 200
        assert check(http, urls["n2"], key).status_code == 429  # Redis is full
        admitted = sum(check(http, urls["n1"], key).status_code == 200 for _ in range(12))
        assert admitted == 9  # n1 still sees 1 of 10 used
        r = lab.redis()
        try:
            seconds, micros = r.time()
            start = schema.window_start_us(seconds * 1_000_000 + micros, window)
            redis_count = r.zcount(schema.counter_key(key), f"({start}", "+inf")
        finally:
            r.close()
        assert redis_count == 10
        stats = {n: http.get(f"{u}/api/stats").json() for n, u in urls.items()}
        total = sum(s["keys"][key]["admitted_in_window"] for s in stats.values() if key in s["keys"])
        assert total == 19 > limit  # over-admission, visible by summing the nodes
        assert stats["n1"]["keys"][key]["local_count"] == 10
        assert stats["n1"]["cache"] == {"enabled": True, "ttl_ms": 60_000, "entries": 1}
        hits = [
            f
            for f in text_string_to_metric_families(http.get(f"{urls['n1']}/metrics").text)
            if f.name == "ratelimiter_cache_hits"
        ]
        assert hits[0].samples[0].value >= 9
    finally:
        off = http.post(f"{urls['n1']}/admin/config", json={"cache_ttl_ms": 0}).json()
    assert off["config"]["cache_ttl_ms"] == 0
    assert http.get(f"{urls['n1']}/api/stats").json()["cache"]["entries"] == 0
    assert check(http, urls["n1"], key).status_code == 429  # back to Redis's view
    assert http.post(f"{urls['n1']}/admin/cache/flush").json()["flushed"] == 0


def test_unknown_route_is_json_404(lab, http):
    r = http.get(f"{lab.node_urls()['n1']}/nope")
    assert r.status_code == 404 and r.json()["error"]


def test_load_generator_stops_by_itself_and_spreads_over_up_nodes(lab, http, tmp_path):
    status_file = tmp_path / "load.json"
    argv = [sys.executable, "-m", "subjects.ratelimiter.loadgen", "--seed-url", lab.node_urls()["n1"]]
    argv += ["--duration-s", "2", "--status-file", str(status_file)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)  # bounded: it must end by itself
    assert done.returncode == 0, done.stderr
    status = json.loads(status_file.read_text())
    assert status["done"] is True and status["sent"] > 0 and status["results"]["error"] == 0
    assert set(status["by_node"]) == {"n1", "n2", "n3"}  # discovered through /api/nodes from one seed
    assert status["results"]["denied"] > 0  # hot:steady runs over its limit, hot:bursty bursts over its own
    assert http.get(f"{lab.node_urls()['n2']}/api/limits/hot:steady").json()["source"] == "configured"
