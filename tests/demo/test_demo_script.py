"""Chapter files: the built-in demos validate and tell the story the issue asks for; a bad file is
one line naming the file, the line and the field, and `operator-tui demo` exits 2 on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from operator_tui.cli import demo_names, main
from scenarios.demo import ScriptError, builtin, load_script, parse_script

GOOD_HEAD = """title: T
subject: tikv
chapters:
  - id: start
    title: Start
    narration: Hello.
    start: [lab]
"""


def test_builtin_demos_tell_the_whole_loop() -> None:
    assert demo_names() == ["ratelimiter", "tikv"]
    tikv, rl = load_script(builtin("tikv")), load_script(builtin("ratelimiter"))
    assert [c.id for c in tikv.chapters] == ["welcome", "healthy", "load", "store-kill", "detection", "diagnosis",
                                            "remediation", "verification", "what-happened"]
    assert [c.id for c in rl.chapters] == ["welcome", "healthy", "traffic", "counter-drift", "detection",
                                          "diagnosis", "remediation", "verification", "what-happened"]
    for s, fault in ((tikv, ("kill_store", "2")), (rl, ("counter_drift", "n2"))):
        faults = [c.fault for c in s.chapters if c.fault]
        assert [(f.kind, f.target) for f in faults] == [fault] and faults[0].countdown_s > 0
        waits = [c.wait.event for c in s.chapters if c.wait]
        assert waits[-4:] == ["ticket_opened", "diagnosis_recorded", "action_executed", "ticket_resolved"]
        assert s.chapters[-1].show == "timeline"
    assert "load" in rl.chapters[2].start and rl.lab == {"nodes": 3, "no_load": True}


@pytest.mark.parametrize(("body", "expected"), [
    ("    narations: x\n", "test.yaml:8: chapters[0].narations: Extra inputs are not permitted"),
    ("  - id: two\n    title: Two\n    narration: x\n    wait: {event: ticket_closed, timeout_s: 5, on_timeout: x}\n",
     "test.yaml:11: chapters[1].wait.event: Input should be 'cluster_healthy'"),
    ("  - id: two\n    title: Two\n    narration: x\n    wait:\n      event: ticket_opened\n      timeout_s: -1\n"
     "      on_timeout: x\n", "test.yaml:13: chapters[1].wait.timeout_s: Input should be greater than 0"),
    ("  - id: two\n    title: Two\n    narration: x\n    wait: {event: ticket_opened}\n",
     "test.yaml:11: chapters[1].wait.on_timeout: Field required"),
    ("  - id: two\n    title: Two\n    narration: x\n    fault:\n      kind: melt_store\n",
     "test.yaml:12: chapters[1].fault.kind: 'melt_store' is not a tikv fault (known: disk_full, hot_region, "),
    ("  - id: start\n    title: Again\n    narration: x\n", "test.yaml:8: chapters[1].id: 'start' is used twice"),
    ("  - id: two\n    title: Two\n    narration: x\n    start: [load]\n",
     "test.yaml:11: chapters[1].start: the tikv demo cluster has no load to start"),
    ("  - id: two\n    title: Two\n    narration: [x\n", "test.yaml:11: not valid YAML"),
])
def test_a_bad_chapter_file_is_one_line_naming_file_line_and_field(body: str, expected: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(GOOD_HEAD + body, "test.yaml")
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


@pytest.mark.parametrize(("text", "expected"), [
    ("- a list\n", "test.yaml:1: a demo script is a mapping"),
    ("title: T\nsubject: tikv\nchapters:\n  - id: x\n    title: X\n    narration: x\n    wait: {event: ticket_opened, "
     "on_timeout: x}\n", "test.yaml:4: chapters[0]: starts load, injects a fault or waits before any chapter starts"),
    ("title: T\nsubject: etcdx\nchapters: []\n", "test.yaml:3: chapters: List should have at least 1 item"),
    (GOOD_HEAD.replace("subject: tikv", "subject: etcdx"), "test.yaml:2: subject: unknown subject 'etcdx'"),
    (GOOD_HEAD + "lab: {nodes: 3}\n", "test.yaml:8: lab.nodes: not an option of the tikv lab"),
    (GOOD_HEAD.replace("tikv", "ratelimiter") + "lab: {stores: 3}\n",
     "test.yaml:8: lab.stores: not an option of the ratelimiter lab (options: addresses, base_port, docker, "),
])
def test_whole_file_problems(text: str, expected: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(text, "test.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_the_command_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD_HEAD + "    dwell_s: forever\n")
    db = str(tmp_path / "d.db")
    assert main(["demo", "tikv", "--chapters", str(bad), "--db", db]) == 2
    err = capsys.readouterr().err
    assert err == (f"operator-tui: error: {bad}:8: chapters[0].dwell_s: Input should be a valid number, unable to "
                   "parse string as a number\n")
    assert main(["demo", "ratelimiter", "--chapters", str(builtin("tikv")), "--db", db]) == 2
    assert "is a tikv demo, not a ratelimiter one" in capsys.readouterr().err
    assert main(["demo", "tikv", "--speed", "0", "--db", db]) == 2
    assert capsys.readouterr().err == "operator-tui: error: --speed must be between 0.1 and 100, got 0\n"
    assert main(["demo", "tikv", "--chapters", str(tmp_path / "missing.yaml"), "--db", db]) == 2
    assert "cannot read the demo script" in capsys.readouterr().err
    assert not (tmp_path / "d.db").exists()  # refused before anything was opened or started


def test_docker_needs_a_lab_that_runs_as_containers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "d.db"
    assert main(["demo", "tikv", "--docker", "--db", str(db)]) == 2
    assert capsys.readouterr().err == ("operator-tui: error: --docker: the tikv demo has no Docker lab (its cluster is "
                                       "the embedded simulator)\n")
    assert not db.exists()  # refused before anything was opened or started
    # The rate limiter's Docker chapters: its lab as containers, a node's container killed and restarted.
    docker = load_script(builtin("ratelimiter", "docker"))
    assert docker.lab == {"nodes": 3, "no_load": True, "docker": True}
    assert [c.id for c in docker.chapters] == ["welcome", "healthy", "traffic", "node-kill", "detection", "diagnosis",
                                              "remediation", "verification", "what-happened"]
    assert [(c.fault.kind, c.fault.target) for c in docker.chapters if c.fault] == [("node_kill", "n2")]
    assert [c.wait.invariant for c in docker.chapters if c.wait and c.wait.event == "ticket_opened"] == ["node_down"]
    assert builtin("tikv", "docker") == builtin("tikv")  # no Docker chapters of its own: the usual ones
