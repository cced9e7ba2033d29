"""The NOSPACE alarm and its recovery on a lab of its own: the raft log keeps the quota fill, and a
member added later to a shared lab would replay it and raise the alarm again."""

from __future__ import annotations

import pytest
from etcd_support import clears, fires, inject, leader, module_lab, problems, revert, run

from subjects.etcd.client import EtcdError

pytestmark = pytest.mark.slow

lab = module_lab("etcd-alarm")


async def test_disarm_alarm_waits_for_the_space_and_then_writes_work_again(lab, subject, client) -> None:
    assert await problems(subject, "disarm_alarm") == ["no NOSPACE alarm is raised"]
    record = await inject(lab, "quota_fill")
    try:
        await fires(subject, "no_alarms")
        assert "compact and defragment first" in (await problems(subject, "disarm_alarm"))[0]
        with pytest.raises(EtcdError, match="database space exceeded"):
            await client.put(lab.client_urls()["m1"], "/test/blocked", "x")
        await run(subject, "compact")
        current = leader(await subject.observe())
        others = [m for m in ("m1", "m2", "m3") if m != current]
        for member in others:
            await run(subject, "defragment", member=member)
        await run(subject, "move_leader", target=others[0])
        await run(subject, "defragment", member=current)
        out = await run(subject, "disarm_alarm")
        assert out.data["disarmed"] >= 1 and out.data["probe_revision"] > 0
        await client.put(lab.client_urls()["m1"], "/test/unblocked", "x")
        await clears(subject, "no_alarms")
    finally:
        await revert(lab, record)
