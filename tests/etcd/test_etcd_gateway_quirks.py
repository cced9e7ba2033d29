"""The gateway's quirks as etcd 3.4.23 really sends them (shapes from the reference), each handled:
decimal-string IDs, omitted zero fields, hex IDs in metrics, alarms naming the member that raised
them, members without name or client URLs, errors with the HTTP status following the gRPC code."""

from __future__ import annotations

from collections import deque

import pytest

from screens.state import tile_view
from subjects.base import Node, NodeState
from subjects.etcd.client import EtcdError, as_int, decode, hex_id, prefix_end
from subjects.etcd.observe import EtcdObserver, Reply, alarm_list, window_p99

STATUS = ('{"header":{"cluster_id":"7011392316401442587","member_id":"2749418553129937219","revision":"1",'
          '"raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":"12196972554297941881",'
          '"raftIndex":"12","raftTerm":"2","raftAppliedIndex":"12","dbSizeInUse":"16384"}')


def test_ids_beyond_2_53_stay_exact_and_print_as_metrics_do() -> None:
    body = decode(200, STATUS, "http://x")
    assert body["leader"] == "12196972554297941881"  # a string: a float would have lost the last digits
    assert hex_id(body["leader"]) == "a94459ea721e1f79"
    assert hex_id("966689237309239183") == "d6a5ebd5602af8f"  # 15 digits: no zero padding, as in metrics
    assert as_int(body["dbSize"]) == 20480 and as_int(None) == 0 and as_int("") == 0  # omitted zero fields


def test_errors_keep_message_status_and_grpc_code() -> None:
    with pytest.raises(EtcdError) as info:
        decode(429, '{"error":"etcdserver: mvcc: database space exceeded","message":"x","code":8}', "http://x/put")
    assert (info.value.status, info.value.code, info.value.kind) == (429, 8, "http")
    assert "space exceeded" in info.value.message and not info.value.unreachable
    with pytest.raises(EtcdError, match="HTTP 502"):
        decode(502, "<html>bad gateway</html>", "http://x")
    with pytest.raises(EtcdError, match="not a JSON object"):
        decode(200, "[1, 2]", "http://x")


def test_prefix_ranges_and_alarm_strings() -> None:
    assert prefix_end(b"/chaos/") == b"/chaos0" and prefix_end(b"a\xff") == b"b" and prefix_end(b"\xff") == b"\0"
    errors = ["memberID:2749418553129937219 alarm:NOSPACE ", "etcdserver: no leader"]
    assert alarm_list(errors) == [("2749418553129937219", "NOSPACE")] and alarm_list(None) == []


def test_p99_comes_from_bucket_deltas_and_survives_a_restart() -> None:
    samples: deque = deque()
    slow = {0.001: 100.0, 0.512: 100.0, 1.024: 100.0, float("inf"): 100.0}
    assert window_p99(samples, 0.0, 30.0, slow, 5) == (None, 0.0)  # one sample: nothing seen in a window yet
    later = {0.001: 100.0, 0.512: 100.0, 1.024: 110.0, float("inf"): 110.0}
    p99, count = window_p99(samples, 10.0, 30.0, later, 5)
    assert count == 10 and 0.512 < p99 <= 1.024  # only the new, slow observations count
    restarted = {0.001: 3.0, 0.512: 3.0, 1.024: 3.0, float("inf"): 3.0}
    assert window_p99(samples, 20.0, 30.0, restarted, 5) == (None, 3.0)  # counters went down: a restart
    assert len(samples) == 1


def test_a_member_added_but_never_started_is_shown_not_dropped() -> None:
    observer = EtcdObserver(endpoints=["http://127.0.0.1:9"])
    members = [{"ID": "2749418553129937219", "name": "m1", "peerURLs": ["http://a:2380"], "clientURLs": ["http://a"]},
               {"ID": "966689237309239183", "peerURLs": ["http://c:2380"], "isLearner": True}]
    reply = Reply(url="http://a", lab_name=None, status=decode(200, STATUS, "http://a"), members=members)
    membership = observer._membership([reply])
    assert set(membership) == {"2749418553129937219", "966689237309239183"}
    node = observer._member_down("966689237309239183", hex_id("966689237309239183"), membership["966689237309239183"],
                                 None, None)
    assert node.state == NodeState.unknown and node.labels["started"] == "false" and node.role == "learner"
    assert node.id == "d6a5ebd5602af8f"


def test_the_console_tile_marks_the_leader() -> None:
    node = Node(id="m2", kind="member", name="m2", state=NodeState.up, role="leader",
                metrics={"raft_term": 4.0, "db_size": 1_600_000.0, "applied": 1234.0})
    view = tile_view(node, None, True)
    text = [" ".join(str(part[0]) if isinstance(part, tuple) else str(part) for part in line) for line in view.lines]
    assert view.title == "m2" and "leader" in text[0]
    assert any("raft_term 4" in t for t in text) and any("db_size 1.6M" in t for t in text)


async def test_graces_follow_the_profile_and_the_settings_section(monkeypatch, tmp_path) -> None:
    from operator_tui.config import load_settings
    from subjects.etcd.settings import build

    monkeypatch.setenv("OPERATOR_TUI_ETCD__GRACES", '{"member_reachable": 7}')
    monkeypatch.setenv("OPERATOR_TUI_ETCD__ENDPOINTS", '["http://127.0.0.1:9"]')
    settings = load_settings(subject="etcd")
    from subjects.plugin import SubjectContext

    subject = await build(settings.section(), SubjectContext(tmp_path / "no-lab"))
    try:
        graces = {i.name: i.grace_s for i in subject.invariants()}
        assert subject.thresholds.profile == "production"  # endpoints, no lab: the reference's graces
        assert graces["member_reachable"] == 7 and graces["quorum_available"] == 10 and graces["no_alarms"] == 0
        assert subject.observer.endpoints == ["http://127.0.0.1:9"]
    finally:
        await subject.aclose()
