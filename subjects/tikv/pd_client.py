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
from pydantic import BaseModel, ValidationError

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
                 transport: httpx.AsyncBaseTransport | None = None, ssl_context: Any = None):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            transport=transport,
            headers={"User-Agent": "operator-tui"},
            verify=ssl_context if ssl_context is not None else True,
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

    def _shape(self, path: str, body: Any, kind: type) -> Any:
        """PD's answer must have the shape its API documents; anything else is a garbled answer
        (one line, naming what came), never a crash further in or a silently empty result."""
        if not isinstance(body, kind):
            raise PDUnreachable(f"PD at {self.base_url} answered {path} with {type(body).__name__}, not a JSON "
                                f"{'object' if kind is dict else 'list'}")
        return body

    def _model(self, path: str, model: type[BaseModel], value: Any) -> Any:
        try:
            return model.model_validate(value)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "the body"
            raise PDUnreachable(f"PD at {self.base_url} answered {path} with something unreadable: {where}: "
                                f"{first['msg']}") from None

    async def stores(self) -> list[StoreInfo]:
        body = self._shape("/stores", await self.get_json("stores"), dict)
        if not isinstance(body.get("stores", []), list):
            raise PDUnreachable(f"PD at {self.base_url} answered /stores without a stores list")
        return [self._model("/stores", StoreInfo, s) for s in body.get("stores") or []]

    async def store(self, store_id: int) -> StoreInfo:
        return self._model(f"/store/{store_id}", StoreInfo, await self.get_json(f"store/{store_id}"))

    async def region(self, region_id: int) -> RegionInfo:
        return self._model(f"/region/id/{region_id}", RegionInfo, await self.get_json(f"region/id/{region_id}"))

    async def region_by_key(self, key: str) -> RegionInfo:
        path = f"region/key/{quote(key, safe='')}"
        return self._model(f"/{path}", RegionInfo, await self.get_json(path))

    async def regions_check(self, kind: str) -> list[RegionInfo]:
        path = f"regions/check/{kind}"
        body = self._shape(f"/{path}", await self.get_json(path) or {}, dict)
        regions = body.get("regions") or []
        if not isinstance(regions, list):
            raise PDUnreachable(f"PD at {self.base_url} answered /{path} without a regions list")
        return [self._model(f"/{path}", RegionInfo, r) for r in regions]

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
        ranges = self._shape(f"/scheduler-config/{scheduler}/list", body or {}, dict).get("store-id-ranges") or {}
        if not isinstance(ranges, dict) or not all(str(k).isdigit() for k in ranges):
            raise PDUnreachable(f"PD at {self.base_url} answered /scheduler-config/{scheduler}/list with store ids "
                                "that are not numbers")
        return sorted(int(k) for k in ranges)

    async def config(self) -> dict[str, Any]:
        return self._shape("/config", await self.get_json("config"), dict)

    async def schedule_config(self) -> dict[str, Any]:
        return self._shape("/config/schedule", await self.get_json("config/schedule"), dict)

    async def members(self) -> dict[str, Any]:
        return self._shape("/members", await self.get_json("members"), dict)

    async def health(self) -> list[dict[str, Any]]:
        body = self._shape("/health", await self.get_json("health"), list)
        return [m for m in body if isinstance(m, dict)]

    async def hotspot(self, kind: str) -> dict[str, Any]:
        return self._shape(f"/hotspot/regions/{kind}", await self.get_json(f"hotspot/regions/{kind}") or {}, dict)

    async def operator_status(self, region_id: int) -> str:
        return str(await self.get_json(f"operators/{region_id}"))

    async def metrics_text(self) -> str:
        response = await self.request("GET", "/metrics")
        return response.text
