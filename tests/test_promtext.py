"""The exposition parser the monitor scrapes with: both paths (all series, wanted series) agree."""

from __future__ import annotations

import math

import pytest

from subjects import promtext

TEXT = """# HELP tikv_grpc_msg_duration_seconds Bucketed histogram
# TYPE tikv_grpc_msg_duration_seconds histogram
tikv_grpc_msg_duration_seconds_bucket{type="kv_get",priority="unknown",le="0.001"} 10
tikv_grpc_msg_duration_seconds_bucket{type="kv_get",priority="unknown",le="0.002"} 30
tikv_grpc_msg_duration_seconds_bucket{type="kv_get",priority="unknown",le="+Inf"} 40
tikv_grpc_msg_duration_seconds_count{type="kv_get",priority="unknown"} 40
tikv_raftstore_slow_score 1
pd_cluster_status{engine="tikv",store="1",type="store_up_count"} 1
odd_label{path="a,b",quote="say \\"hi\\""} 2 1700000000000
"""


def test_wanted_series_match_the_full_parse() -> None:
    full = promtext.parse(TEXT)
    wanted = promtext.parse(TEXT, ["tikv_grpc_msg_duration_seconds", "tikv_raftstore_slow_score", "odd_label"])
    assert wanted == [s for s in full if not s[0].startswith("pd_")]
    assert ("odd_label", {"path": "a,b", "quote": 'say "hi"'}, 2.0) in wanted


def test_garbage_is_an_error_not_an_empty_page() -> None:
    with pytest.raises(promtext.ParseError):
        promtext.parse("<html>502 Bad Gateway</html>", ["tikv_raftstore_slow_score"])
    with pytest.raises(promtext.ParseError):
        promtext.parse("tikv_raftstore_slow_score abc", ["tikv_raftstore_slow_score"])


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.001: 10.0, 0.002: 30.0, math.inf: 40.0}
    assert promtext.histogram_quantile(0.5, buckets) == pytest.approx(0.0015)
    assert promtext.histogram_quantile(0.99, buckets) == 0.002  # beyond the last finite bound
    assert promtext.histogram_quantile(0.5, {}) is None
    assert promtext.histogram_quantile(0.5, {math.inf: 0.0}) is None
