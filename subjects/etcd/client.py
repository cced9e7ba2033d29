"""etcd 3.4's JSON gateway (grpc-gateway over the client port), with its quirks handled in one place.

- Every `/v3/...` call is a POST with a JSON body; keys and values travel base64-encoded.
- int64/uint64 values (revisions, IDs, sizes) come back as decimal strings; member IDs exceed 2^53,
  so they are kept as strings here and sent back as strings.
- Zero, false and empty fields are left out (`leader` without a leader, `isLearner`, `kvs` ...).
- Metrics and logs name members by their ID in hex without zero padding: `hex_id`.
- Errors are `{"error", "message", "code"}` with the HTTP status following the gRPC code.

`EtcdClient` is the async client the observer, the actions and the faults use; `call_sync` serves
the lab's blocking start and stop. Both decode through `decode`, so they fail alike.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

DEFAULT_TIMEOUT_S = 1.0
QUORUM_TIMEOUT_S = 10.0  # etcd itself gives up on a proposal after 7 s without quorum
DEFRAG_TIMEOUT_S = 60.0


class EtcdError(Exception):
    """A call that failed. `kind`: refused | timeout | connect | http | bad_response."""

    def __init__(self, message: str, *, kind: str, url: str, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.url = url
        self.status = status
        self.code = code

    @property
    def unreachable(self) -> bool:
        return self.kind in ("refused", "timeout", "connect")


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def hex_id(member_id: str | int) -> str:
    """A member ID as metrics and logs print it: hex, no zero padding."""
    return format(int(member_id), "x")


def prefix_end(prefix: bytes) -> bytes:
    """The `range_end` that makes a range cover every key starting with `prefix`."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def as_int(value: Any, default: int = 0) -> int:
    """A decimal-string int64 (or an omitted field) as an int."""
    if value is None or value == "":
        return default
    return int(value)


def _refused(e: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError) or "refused" in str(cur).lower():
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def transport_error(e: httpx.HTTPError, url: str, timeout: float) -> EtcdError:
    if isinstance(e, httpx.ConnectError):
        if _refused(e):
            return EtcdError("connection refused (nothing listens: the process is gone)", kind="refused", url=url)
        return EtcdError(f"cannot connect: {e}", kind="connect", url=url)
    if isinstance(e, httpx.TimeoutException):
        what = "connect" if isinstance(e, httpx.ConnectTimeout) else "no answer"
        return EtcdError(f"{what} within {timeout:g} s (stopped, hung or cut off)", kind="timeout", url=url)
    return EtcdError(f"{type(e).__name__}: {e}", kind="connect", url=url)


def decode(status: int, text: str, url: str) -> dict[str, Any]:
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError:
        body = None
    if status >= 400:
        if isinstance(body, dict) and (body.get("error") or body.get("message")):
            raise EtcdError(str(body.get("error") or body.get("message")), kind="http", url=url, status=status,
                            code=body.get("code"))
        raise EtcdError(f"HTTP {status}: {text.strip()[:200]}", kind="http", url=url, status=status)
    if not isinstance(body, dict):
        raise EtcdError(f"not a JSON object: {text.strip()[:120]!r}", kind="bad_response", url=url, status=status)
    return body


def call_sync(url: str, path: str, body: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
              method: str = "POST") -> dict[str, Any]:
    target = url.rstrip("/") + path
    try:
        r = httpx.request(method, target, json=body if method == "POST" else None, timeout=timeout)
    except httpx.HTTPError as e:
        raise transport_error(e, target, timeout) from e
    return decode(r.status_code, r.text, target)


class EtcdClient:
    """Async calls to any member's gateway; every call names the member URL it goes to."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_S):
        self.timeout = timeout
        self.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(self, url: str, path: str, body: dict[str, Any] | None = None,
                   timeout: float | None = None) -> dict[str, Any]:
        target = url.rstrip("/") + path
        limit = timeout or self.timeout
        try:
            r = await self.http.post(target, json=body or {}, timeout=limit)
        except httpx.HTTPError as e:
            raise transport_error(e, target, limit) from e
        return decode(r.status_code, r.text, target)

    async def get_text(self, url: str, path: str, timeout: float | None = None) -> str:
        target = url.rstrip("/") + path
        limit = timeout or self.timeout
        try:
            r = await self.http.get(target, timeout=limit)
        except httpx.HTTPError as e:
            raise transport_error(e, target, limit) from e
        if r.status_code >= 400:
            raise EtcdError(f"HTTP {r.status_code}: {r.text[:200]}", kind="http", url=target, status=r.status_code)
        return r.text

    # -- calls that answer without quorum (what observation may use) ---------------------------

    async def status(self, url: str, timeout: float | None = None) -> dict[str, Any]:
        return await self.post(url, "/v3/maintenance/status", {}, timeout)

    async def member_list(self, url: str, timeout: float | None = None) -> list[dict[str, Any]]:
        return (await self.post(url, "/v3/cluster/member/list", {}, timeout)).get("members") or []

    async def metrics(self, url: str, timeout: float | None = None) -> str:
        return await self.get_text(url, "/metrics", timeout)

    async def get(self, url: str, key: str | bytes, *, serializable: bool = True,
                  timeout: float | None = None) -> bytes | None:
        body = {"key": b64(key), "serializable": serializable}
        kvs = (await self.post(url, "/v3/kv/range", body, timeout)).get("kvs") or []
        return unb64(kvs[0].get("value")) if kvs else None

    # -- writes and maintenance (through raft unless said otherwise) --------------------------

    async def put(self, url: str, key: str | bytes, value: str | bytes, timeout: float | None = None) -> int:
        out = await self.post(url, "/v3/kv/put", {"key": b64(key), "value": b64(value)}, timeout)
        return as_int((out.get("header") or {}).get("revision"))

    async def delete_prefix(self, url: str, prefix: str | bytes, timeout: float | None = None) -> int:
        raw = prefix.encode() if isinstance(prefix, str) else prefix
        out = await self.post(url, "/v3/kv/deleterange", {"key": b64(raw), "range_end": b64(prefix_end(raw))},
                              timeout)
        return as_int(out.get("deleted"))

    async def compact(self, url: str, revision: int, timeout: float | None = None) -> dict[str, Any]:
        return await self.post(url, "/v3/kv/compaction", {"revision": str(revision), "physical": True},
                               timeout or QUORUM_TIMEOUT_S)

    async def defragment(self, url: str, timeout: float | None = None) -> dict[str, Any]:
        """Defragments the member at `url` only (each member has its own backend file)."""
        return await self.post(url, "/v3/maintenance/defragment", {}, timeout or DEFRAG_TIMEOUT_S)

    async def transfer_leadership(self, leader_url: str, target_id: str, timeout: float | None = None) -> None:
        """Must be sent to the current leader; a follower answers 412 "not leader"."""
        await self.post(leader_url, "/v3/maintenance/transfer-leadership", {"targetID": str(target_id)},
                        timeout or QUORUM_TIMEOUT_S)

    async def alarms(self, url: str, timeout: float | None = None) -> list[dict[str, Any]]:
        out = await self.post(url, "/v3/maintenance/alarm", {"action": "GET"}, timeout or QUORUM_TIMEOUT_S)
        return out.get("alarms") or []

    async def disarm(self, url: str, member_id: str, alarm: str, timeout: float | None = None) -> dict[str, Any]:
        return await self.post(url, "/v3/maintenance/alarm",
                               {"action": "DEACTIVATE", "memberID": str(member_id), "alarm": alarm},
                               timeout or QUORUM_TIMEOUT_S)

    async def member_add(self, url: str, peer_urls: list[str], learner: bool,
                         timeout: float | None = None) -> dict[str, Any]:
        return await self.post(url, "/v3/cluster/member/add", {"peerURLs": peer_urls, "isLearner": learner},
                               timeout or QUORUM_TIMEOUT_S)

    async def member_remove(self, url: str, member_id: str, timeout: float | None = None) -> dict[str, Any]:
        return await self.post(url, "/v3/cluster/member/remove", {"ID": str(member_id)},
                               timeout or QUORUM_TIMEOUT_S)

    async def member_promote(self, url: str, member_id: str, timeout: float | None = None) -> dict[str, Any]:
        return await self.post(url, "/v3/cluster/member/promote", {"ID": str(member_id)},
                               timeout or QUORUM_TIMEOUT_S)

    async def snapshot(self, url: str, timeout: float = 60.0) -> AsyncIterator[bytes]:
        """The member's backend as a stream of chunks (newline-delimited JSON, base64 blobs)."""
        target = url.rstrip("/") + "/v3/maintenance/snapshot"
        try:
            async with self.http.stream("POST", target, json={}, timeout=timeout) as r:
                if r.status_code >= 400:
                    text = (await r.aread()).decode(errors="replace")
                    decode(r.status_code, text, target)
                async for line in r.aiter_lines():
                    if not line.strip():
                        continue
                    chunk = decode(200, line, target)
                    if "error" in chunk:
                        err = chunk["error"]
                        raise EtcdError(str(err.get("message") if isinstance(err, dict) else err), kind="http",
                                        url=target, code=err.get("code") if isinstance(err, dict) else None)
                    blob = (chunk.get("result") or {}).get("blob")
                    if blob:
                        yield unb64(blob)
        except httpx.HTTPError as e:
            raise transport_error(e, target, timeout) from e
