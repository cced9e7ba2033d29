"""Request parsing and response helpers shared by the PD and simulator routes.

JSON bodies are parsed the way Go's json.Unmarshal would fail on them, so that malformed requests
get PD's errcode object with Go's message and offset.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from subjects.tikv.sim.errors import PDError, invalid_input
from subjects.tikv.sim.goformat import indent_json, json_kind

JSON_CT = "application/json; charset=UTF-8"
BINARY_CT = "application/octet-stream"


def pd_json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=indent_json(value), status=status, headers={"Content-Type": JSON_CT})


def pd_error(e: PDError) -> web.Response:
    resp = pd_json(e.body, e.status)
    if isinstance(e.body, dict):
        resp.headers["TiDB-Error-Code"] = str(e.body.get("code", ""))
    return resp


def sim_json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(value, indent=2).encode() + b"\n", status=status, content_type="application/json"
    )


def sim_error(message: str, status: int = 400) -> web.Response:
    return sim_json({"error": message}, status)


def _quote_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    if ch.isprintable():
        return f"'{ch}'"
    return json.dumps(ch)


def _go_syntax_error(doc: str, e: json.JSONDecodeError) -> tuple[str, int]:
    """Translate Python's JSON error into Go's encoding/json message and SyntaxError.Offset."""
    pos = e.pos
    if pos >= len(doc) or not doc[pos:].strip():
        return "unexpected end of JSON input", len(doc.encode())
    ch = doc[pos]
    offset = len(doc[: pos + 1].encode())
    if e.msg == "Expecting value":
        for literal in ("true", "false", "null"):
            if ch == literal[0]:
                for i, expected in enumerate(literal):
                    if pos + i >= len(doc):
                        return "unexpected end of JSON input", len(doc.encode())
                    if doc[pos + i] != expected:
                        got = doc[pos + i]
                        return (
                            f"invalid character {_quote_char(got)} in literal {literal} (expecting {_quote_char(expected)})",
                            len(doc[: pos + i + 1].encode()),
                        )
        return f"invalid character {_quote_char(ch)} looking for beginning of value", offset
    if e.msg.startswith("Expecting property name"):
        return f"invalid character {_quote_char(ch)} looking for beginning of object key string", offset
    if e.msg == "Expecting ':' delimiter":
        return f"invalid character {_quote_char(ch)} after object key", offset
    if e.msg == "Expecting ',' delimiter":
        return f"invalid character {_quote_char(ch)} after object key:value pair", offset
    if e.msg == "Extra data":
        return f"invalid character {_quote_char(ch)} after top-level value", offset
    return f"invalid character {_quote_char(ch)} looking for beginning of value", offset



def parse_json(raw: bytes) -> Any:
    """json.Unmarshal's errors as PD's errcode object; returns the decoded value."""
    try:
        doc = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid_input("invalid character in string literal", {"Offset": e.start + 1}) from None
    try:
        return json.loads(doc)
    except json.JSONDecodeError as e:
        msg, offset = _go_syntax_error(doc, e)
        raise invalid_input(msg, {"Offset": offset}) from None
    except RecursionError:
        raise invalid_input("exceeded max depth", {"Offset": 0}) from None


async def read_json_object(request: web.BaseRequest) -> dict[str, Any]:
    """The body as map[string]any, with Go's errors for anything else (curl -d sends form types: ignored)."""
    raw = await request.read()
    value = parse_json(raw)
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = json_kind(value)
        raise invalid_input(
            f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}",
            {"Value": kind, "Type": {}, "Offset": 1, "Struct": "", "Field": ""},
        )
    return value


async def read_sim_json(request: web.BaseRequest) -> tuple[Any, str | None]:
    """(value, error message) for the simulator's own routes."""
    raw = await request.read()
    if not raw.strip():
        return None, "empty body: send a JSON object"
    try:
        return json.loads(raw), None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, f"invalid JSON body: {e}"
    except RecursionError:
        return None, "invalid JSON body: nested too deeply"
