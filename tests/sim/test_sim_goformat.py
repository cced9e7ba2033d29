"""Go renderings the simulator must reproduce exactly (durations, times, sizes, floats, JSON)."""

from __future__ import annotations

import pytest

from subjects.tikv.sim.goformat import (
    bytes_size,
    go_duration,
    go_duration_ns,
    go_float,
    go_time_string,
    indent_json,
    parse_go_duration,
    rfc3339nano,
)
from subjects.tikv.sim.metrics_text import rust_float


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1800, "30m0s"),
        (3600, "1h0m0s"),
        (660, "11m0s"),
        (60, "1m0s"),
        (0.0015, "1.5ms"),
        (2180.478896272, "36m20.478896272s"),
        (93784, "26h3m4s"),
    ],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_go_duration_small_units() -> None:
    assert go_duration_ns(999) == "999ns"
    assert go_duration_ns(1500) == "1.5µs"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m0s", 1800), ("1h", 3600), ("1.5h", 5400), ("10ms", 0.01), ("0", 0)]
)
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", 'time: invalid duration "abc"'),
        ("1", 'time: missing unit in duration "1"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("", 'time: invalid duration ""'),
    ],
)
def test_parse_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_go_duration(text)
    assert str(info.value) == message


def test_times() -> None:
    assert rfc3339nano(1735098083478896272) == "2024-12-25T03:41:23.478896272Z"
    assert rfc3339nano(1735095903 * 10**9) == "2024-12-25T03:05:03Z"
    assert (
        go_time_string(1736411505749305225, 110335827093)
        == "2025-01-09 08:31:45.749305225 +0000 UTC m=+110.335827093"
    )
    assert go_time_string(None) == "0001-01-01 00:00:00 +0000 UTC"


def test_bytes_size_like_go_units() -> None:
    assert bytes_size(334688133120) == "311.7GiB"
    assert bytes_size(307757056) == "293.5MiB"
    assert bytes_size(1) == "1B"
    assert bytes_size(0) == "0B"


@pytest.mark.parametrize(
    ("value", "go", "rust"),
    [
        (5e-05, "5e-05", "0.00005"),
        (0.0001, "0.0001", "0.0001"),
        (104.8576, "104.8576", "104.8576"),
        (1234567.0, "1.234567e+06", "1234567"),
        (100000.0, "100000", "100000"),
        (60, "60", "60"),
        (0.5, "0.5", "0.5"),
    ],
)
def test_metric_value_formats(value: float, go: str, rust: str) -> None:
    assert go_float(value) == go
    assert rust_float(value) == rust


def test_indent_json_is_go_marshal_indent() -> None:
    assert indent_json({"a": [1, {}], "b": "x<y>&", "c": []}) == (
        b'{\n  "a": [\n    1,\n    {}\n  ],\n  "b": "x\\u003cy\\u003e\\u0026",\n  "c": []\n}\n'
    )
    assert indent_json("The store is set as Offline.") == b'"The store is set as Offline."\n'
