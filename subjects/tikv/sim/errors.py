"""Errors the model raises with the exact status and body PD would answer with."""

from __future__ import annotations

from typing import Any


class PDError(Exception):
    """A refused request. `body` is a JSON string (a pingcap error text) or an errcode object."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(body if isinstance(body, str) else repr(body))
        self.status = status
        self.body = body


def store_not_found(store_id: int, status: int = 404) -> PDError:
    return PDError(status, f"[PD:core:ErrStoreNotFound]store {store_id} not found")


def store_removed(store_id: int, status: int = 410) -> PDError:
    return PDError(status, f"[PD:core:ErrStoreRemoved]store {store_id} has been removed")


def region_not_found(region_id: int, status: int = 500) -> PDError:
    return PDError(status, f"[PD:region:ErrRegionNotFound]region {region_id} not found")


def invalid_input(msg: str, data: Any) -> PDError:
    """errcode's invalid-input object, as apiutil.ErrorResp renders it (400, header TiDB-Error-Code)."""
    return PDError(400, {"code": "input", "msg": msg, "data": data})


def parse_uint_path(text: str) -> int:
    """strconv.ParseUint(text, 10, 64) on a path variable, with errcode's object on failure."""
    if text.isdigit() and text.isascii():
        value = int(text)
        if value < 2**64:
            return value
        raise invalid_input(f'strconv.ParseUint: parsing "{text}": value out of range', {})
    raise invalid_input(f'strconv.ParseUint: parsing "{text}": invalid syntax', {})


def parse_uint_plain(text: str) -> int:
    """The same parse where PD answers with the error text as a JSON string (regions, operators)."""
    if text.isdigit() and text.isascii() and int(text) < 2**64:
        return int(text)
    reason = "value out of range" if text.isdigit() and text.isascii() else "invalid syntax"
    raise PDError(400, f'strconv.ParseUint: parsing "{text}": {reason}')
