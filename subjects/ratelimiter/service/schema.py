"""The rate limiter's Redis layout, and how to read it.

Everything an observer needs to read Redis directly, without going through a node. Pure
functions and constants only (no I/O), so an adapter can import this module cheaply.

Keys (KEY is the client's rate-limit key, verbatim):

- ``rl:c:KEY``  sorted set, the sliding-window log. One member per ADMITTED request; its score is
  the admission time in MICROSECONDS on Redis's clock (``TIME``). Denied requests are not logged.
  A member is ``SCORE:NODE_ID:PID:SEQ``: the node that admitted it (``member_node`` reads it), so
  an observer can tell which node's admissions Redis holds.
  Count in the window at time NOW_US: ``ZCOUNT rl:c:KEY (NOW_US-WINDOW_US +inf`` (entries with
  score <= NOW_US-WINDOW_US have left the window). Expires ``window_ms + 1000`` ms after the last
  check.
- ``rl:m:KEY``  hash ``limit``, ``window_ms``, ``last_us``: the limit and window the last check on
  KEY used (the request's own, else the configured one, else the node default), and when. Same
  expiry as the log. This is how an observer knows which window to count a log over.
- ``rl:l:KEY``  hash ``limit``, ``window_ms``: the configured limit of KEY (``PUT /api/limits/KEY``).
  No expiry.
- ``rl:nodes``  hash NODE_ID -> JSON object (see ``NodeInfo`` fields below), rewritten on every
  heartbeat. Entries are never deleted by the service, so a dead node stays listed.
- ``rl:heartbeats``  hash NODE_ID -> last heartbeat, milliseconds on Redis's clock.

A node's state (``node_state``): ``down`` if it said it stopped, has no heartbeat, or its last
heartbeat is older than its ``ttl_ms``; else ``draining`` if it is draining; else ``up``.
"""

from __future__ import annotations

import json

PREFIX = "rl:"
COUNTER_PREFIX = "rl:c:"
META_PREFIX = "rl:m:"
LIMIT_PREFIX = "rl:l:"
NODES_KEY = "rl:nodes"
HEARTBEATS_KEY = "rl:heartbeats"
COUNTER_MATCH = COUNTER_PREFIX + "*"

# Rate-limit keys are client data: bounded in length and free of control characters so that
# they stay printable in logs, Redis key names and URLs.
MAX_KEY_LENGTH = 256

NODE_STATES = ("up", "down", "draining")
CHECK_RESULTS = ("allowed", "denied", "allowed_fail_open", "denied_fail_closed")


def counter_key(key: str) -> str:
    return COUNTER_PREFIX + key


def meta_key(key: str) -> str:
    return META_PREFIX + key


def limit_key(key: str) -> str:
    return LIMIT_PREFIX + key


def key_from_counter(name: str | bytes) -> str:
    """The rate-limit key of a counter's Redis key name (``rl:c:KEY`` -> ``KEY``)."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if not name.startswith(COUNTER_PREFIX):
        raise ValueError(f"not a counter key: {name!r}")
    return name[len(COUNTER_PREFIX) :]


def key_problem(key: object) -> str | None:
    """Why `key` is not a valid rate-limit key, or None when it is."""
    if not isinstance(key, str):
        return "key must be a string"
    if not key.strip():
        return "key must not be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"key must be at most {MAX_KEY_LENGTH} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "key must not contain control characters"
    return None


def member_node(member: str | bytes) -> str | None:
    """The id of the node that wrote a log member (``SCORE:NODE_ID:PID:SEQ``), None if foreign."""
    text = _text(member) or ""
    parts = text.split(":")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1]:
        return None
    return parts[1]


def window_start_us(now_us: int, window_ms: int) -> int:
    """Entries with a score at or below this have left the window ending at `now_us`."""
    return now_us - window_ms * 1000


def node_state(info: dict, heartbeat_ms: int | None, now_ms: int) -> str:
    """``up``, ``down`` or ``draining`` for one registry entry, judged at `now_ms` (Redis clock)."""
    if info.get("stopped") or heartbeat_ms is None:
        return "down"
    if now_ms - heartbeat_ms > int(info.get("ttl_ms") or 0):
        return "down"
    return "draining" if info.get("draining") else "up"


def _text(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def registry_rows(infos: dict, heartbeats: dict, now_ms: int) -> list[dict]:
    """Every registered node, from ``HGETALL rl:nodes`` and ``HGETALL rl:heartbeats``.

    Returns one dict per node sorted by id: the node's info fields plus ``state``,
    ``last_heartbeat_ms`` and ``heartbeat_age_ms`` (None when it never beat). An entry whose JSON
    is unreadable is still listed, as ``down`` with an ``error``, rather than dropped.
    """
    rows = []
    beats = {_text(k): _text(v) for k, v in heartbeats.items()}
    for raw_id, raw_info in infos.items():
        node_id = _text(raw_id) or ""
        try:
            info = json.loads(_text(raw_info) or "")
            if not isinstance(info, dict):
                raise ValueError("not an object")
            error = None
        except ValueError as e:
            info, error = {}, f"unreadable registry entry: {e}"
        beat = beats.get(node_id)
        heartbeat_ms = int(beat) if beat and beat.isdigit() else None
        row = {
            "id": node_id,
            "address": info.get("address"),
            "url": info.get("url"),
            "state": "down" if error else node_state(info, heartbeat_ms, now_ms),
            "last_heartbeat_ms": heartbeat_ms,
            "heartbeat_age_ms": None if heartbeat_ms is None else max(0, now_ms - heartbeat_ms),
            "ttl_ms": info.get("ttl_ms"),
            "draining": bool(info.get("draining")),
            "stopped": bool(info.get("stopped")),
            "fail_mode": info.get("fail_mode"),
            "pid": info.get("pid"),
            "started_ms": info.get("started_ms"),
        }
        if error:
            row["error"] = error
        rows.append(row)
    rows.sort(key=lambda r: r["id"])
    return rows
