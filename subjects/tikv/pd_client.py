"""An async client for PD's HTTP API (`/pd/api/v1`).

Every failure becomes a PDError or PDUnreachable with a message a person can act on; nothing
here returns a half-parsed answer. Parsing tolerates what PD omits (see models.py).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from subjects.tikv.models import RegionInfo, StoreInfo

API = "/pd/api/v1"


class PDUnreachable(Exception):
    """PD did not answer (refused, timed out, dropped the connection) or answered garbage."""


class PDError(Exception):
    """PD answered with an error status. `message` is PD's own text, unwrapped."""

    def __init__(self, status: int, message: str, method: str = "", path: str = ""):
        super().__init__(f"PD {method} {path} -> {status}: {message}")
        self.status = status
        self.message = message


def error_message(response: httpx.Response) -> str:
    """PD's two error shapes: a JSON string "[PD:...]msg", or an errcode object {"code","msg"}."""
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500] or response.reason_phrase
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return str(body.get("msg") or body.get("error") or body.get("message") or text)[:500]
    return text[:500]


def describe(exc: Exception) -> str:
    kind = type(exc).__name__
    text = str(exc) or {
        "ConnectError": "connection refused",
        "ConnectTimeout": "connect timed out",
        "ReadTimeout": "no answer in time",
        "RemoteProtocolError": "connection dropped without an answer",
    }.get(kind, "")
    return f"{kind}: {text}" if text else kind


class PDClient:
    def __init__(self, base_url: str, *, timeout: float = 2.0, connect_timeout: float = 1.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            transport=transport,
            headers={"User-Agent": "operator-tui"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      params: dict[str, Any] | None = None, timeout: float | None = None) -> httpx.Response:
        url = path if path.startswith("/") else f"{API}/{path}"
        try:
            kwargs: dict[str, Any] = {"params": params}
            if json_body is not None:
                kwargs["content"] = json.dumps(json_body)
                kwargs["headers"] = {"Content-Type": "application/json"}
            if timeout is not None:
                kwargs["timeout"] = timeout
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as e:
            raise PDUnreachable(f"PD at {self.base_url} did not answer {method} {url}: {describe(e)}") from e
        if response.status_code >= 400:
            raise PDError(response.status_code, error_message(response), method, url)
        return response

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        response = await self.request("GET", path, params=params)
        try:
            return orjson.loads(response.content)  # /stores of a 1,000-store cluster is over 1 MB
        except orjson.JSONDecodeError as e:
            raise PDUnreachable(
                f"PD at {self.base_url} answered GET {path} with something that is not JSON: {response.text[:80]!r}"
            ) from e

    async def send(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> str:
        """A mutating call; returns PD's confirmation text ("The operator is created.")."""
        response = await self.request(method, path, json_body=body, params=params)
        text = response.text.strip()
        try:
            value = json.loads(text) if text else ""
        except ValueError:
            return text
        return value if isinstance(value, str) else json.dumps(value)

    # -- reads ---------------------------------------------------------------------------------

    async def stores(self) -> list[StoreInfo]:
        body = await self.get_json("stores")
        if not isinstance(body, dict) or not isinstance(body.get("stores", []), list):
            raise PDUnreachable(f"PD at {self.base_url} answered /stores without a stores list")
        return [StoreInfo.model_validate(s) for s in body.get("stores") or []]

    async def store(self, store_id: int) -> StoreInfo:
        return StoreInfo.model_validate(await self.get_json(f"store/{store_id}"))

    async def region(self, region_id: int) -> RegionInfo:
        return RegionInfo.model_validate(await self.get_json(f"region/id/{region_id}"))

    async def region_by_key(self, key: str) -> RegionInfo:
        return RegionInfo.model_validate(await self.get_json(f"region/key/{quote(key, safe='')}"))

    async def regions_check(self, kind: str) -> list[RegionInfo]:
        body = await self.get_json(f"regions/check/{kind}")
        return [RegionInfo.model_validate(r) for r in (body or {}).get("regions") or []]

    async def schedulers(self) -> list[str]:
        body = await self.get_json("schedulers")
        if not isinstance(body, list):
            raise PDUnreachable(f"PD at {self.base_url} answered /schedulers with {type(body).__name__}")
        return [str(s) for s in body]

    async def scheduler_stores(self, scheduler: str) -> list[int]:
        """Store ids an evict-leader / grant-leader scheduler applies to ([] if it does not exist)."""
        try:
            body = await self.get_json(f"/pd/api/v1/scheduler-config/{scheduler}/list")
        except PDError as e:
            if e.status in (404, 500):
                return []
            raise
        ranges = (body or {}).get("store-id-ranges") or {}
        return sorted(int(k) for k in ranges)

    async def config(self) -> dict[str, Any]:
        return await self.get_json("config")

    async def schedule_config(self) -> dict[str, Any]:
        return await self.get_json("config/schedule")

    async def members(self) -> dict[str, Any]:
        return await self.get_json("members")

    async def health(self) -> list[dict[str, Any]]:
        body = await self.get_json("health")
        return body if isinstance(body, list) else []

    async def hotspot(self, kind: str) -> dict[str, Any]:
        return await self.get_json(f"hotspot/regions/{kind}")

    async def operator_status(self, region_id: int) -> str:
        return str(await self.get_json(f"operators/{region_id}"))

    async def metrics_text(self) -> str:
        response = await self.request("GET", "/metrics")
        return response.text
