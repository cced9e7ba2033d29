"""The Claude path on today's models (issue 10, defect 1): the test server behaves as the real API
does with thinking models, and the diagnoser copes: thinking blocks round-tripped exactly,
pause_turn continued, refusal ended, sampling and forced tool choice never sent."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from agent_support import Setup, diagnosis_input
from fakes.messages_api import (
    API_KEY,
    FakeMessagesAPI,
    Received,
    message,
    redacted_thinking,
    text,
    thinking,
    tool_use,
)

from operator_tui.agent.loop import DiagnosisFailed

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-5-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **extra}


async def post(api: FakeMessagesAPI, payload: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(f"{api.url}/v1/messages", json=payload, headers=HEADERS)


@pytest.mark.parametrize(("extra", "complaint"), [
    ({"temperature": 0.2}, "temperature: sampling parameters are not supported"),
    ({"top_p": 0.9}, "top_p: sampling parameters are not supported"),
    ({"top_k": 5}, "top_k: sampling parameters are not supported"),
    ({"tool_choice": {"type": "any"}}, "forced tool use (any)"),
    ({"tool_choice": {"type": "tool", "name": "x"}}, "forced tool use (tool)"),
    ({"thinking": {"type": "disabled"}}, '"disabled"} is not supported'),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking budgets are not supported"),
])
async def test_server_refuses_what_todays_models_refuse(fake_api: FakeMessagesAPI, extra: dict[str, Any],
                                                        complaint: str) -> None:
    fake_api.script = [message(text("never sent"))]
    reply = await post(fake_api, body(**extra))
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error" and complaint in reply.json()["error"]["message"]
    assert fake_api.remaining == 1, "a refused request consumes no script step"
    fake_api.problems.clear()


async def test_server_accepts_adaptive_and_between_tools_thinking(fake_api: FakeMessagesAPI) -> None:
    fake_api.script = [message(text("a")), message(text("b")), message(text("c"))]
    for extra in ({}, {"thinking": {"type": "adaptive"}}, {"thinking": {"type": "between_tools"}}):
        reply = await post(fake_api, body(**extra))
        assert reply.status_code == 200, reply.text
        content = reply.json()["content"]
        # Thinking first, signed, its text omitted, as today's models answer.
        assert content[0]["type"] == "thinking" and content[0]["thinking"] == "" and content[0]["signature"]
    assert fake_api.problems == []


async def test_assistant_turns_must_come_back_exactly_as_sent(fake_api: FakeMessagesAPI) -> None:
    first = message(thinking("let me look"), redacted_thinking(), text("Looking."), tool_use("observe_cluster", {}, "t1"))
    fake_api.script = [first] + [message(text("ok")) for _ in range(6)]
    assert (await post(fake_api, body())).status_code == 200
    answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "data"}]}

    def history(turn: list[dict[str, Any]]) -> dict[str, Any]:
        return body(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": turn}, answer])

    exact = copy.deepcopy(first["content"])
    dropped = [b for b in exact if b["type"] not in ("thinking", "redacted_thinking")]
    modified = copy.deepcopy(exact)
    modified[0]["thinking"] = "I changed my mind"
    reordered = [exact[2], exact[0], exact[1], exact[3]]
    rebuilt = copy.deepcopy(exact)
    rebuilt[3]["input"] = {"entity": None}
    cases = [(dropped, "lacks the thinking blocks"), (modified, "invalid signature"),
             (reordered, "thinking blocks must come first"), (rebuilt, "differs from the one that was sent")]
    for turn, complaint in cases:
        reply = await post(fake_api, history(turn))
        assert reply.status_code == 400 and complaint in reply.json()["error"]["message"], (complaint, reply.text)
    as_string = body(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Looking."},
                               {"role": "user", "content": "go on"}])
    assert "rebuilt as a string" in (await post(fake_api, as_string)).json()["error"]["message"]
    prefill = body(messages=[{"role": "user", "content": "hi"},
                             {"role": "assistant", "content": [text("The answer is")]}])
    assert "prefill is not supported" in (await post(fake_api, prefill)).json()["error"]["message"]
    assert (await post(fake_api, history(exact))).status_code == 200
    fake_api.problems.clear()


async def test_streamed_replies_carry_signed_thinking_through_the_sdk(fake_api: FakeMessagesAPI) -> None:
    import anthropic

    fake_api.script = [message(thinking(), redacted_thinking("Zm9v"), text("Streaming works."),
                               tool_use("list_actions", {"verbose": True}, "t_s"))]
    client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=fake_api.url, max_retries=0)
    try:
        async with client.messages.stream(model="claude-sonnet-5-5", max_tokens=100,
                                          messages=[{"role": "user", "content": "hi"}]) as stream:
            final = await stream.get_final_message()
    finally:
        await client.close()
    kinds = [b.type for b in final.content]
    assert kinds == ["thinking", "redacted_thinking", "text", "tool_use"]
    assert final.content[0].signature == thinking()["signature"] and final.content[0].thinking == ""
    assert final.content[1].data == "Zm9v" and final.content[2].text == "Streaming works."
    assert final.content[3].input == {"verbose": True} and final.stop_reason == "tool_use"
    assert fake_api.requests[0].body["stream"] is True and fake_api.problems == []


async def test_diagnosis_round_trips_thinking_blocks(setup: Setup) -> None:
    """Every turn thinks (one with visible thinking, one redacted): the diagnoser must send each
    turn back exactly, or the server answers 400 and the session fails."""
    def second(req: Received) -> dict[str, Any]:
        turn = req.messages[1]["content"]
        assert turn[0] == thinking("the node looks stuck") and turn[1]["type"] == "redacted_thinking"
        return message(tool_use("submit_diagnosis", diagnosis_input(), "t_sub"))

    setup.api.script = [message(thinking("the node looks stuck"), redacted_thinking(),
                                tool_use("observe_cluster", {}, "t_obs")), second]
    diagnosis = await setup.claude().diagnose(setup.context, setup.record)
    assert diagnosis.recommended_actions[0].name == "unstick_node"
    assert setup.api.problems == []
    model_steps = [s for s in await setup.steps() if s.kind == "model"]
    assert model_steps[0].content["thinking_blocks"] == 2 and "looks stuck" in model_steps[0].content["thinking"]


async def test_pause_turn_is_sent_back_to_continue(setup: Setup) -> None:
    paused = message(thinking(), text("Still looking..."), stop_reason="pause_turn")

    def resumed(req: Received) -> dict[str, Any]:
        assert req.messages[-1] == {"role": "assistant", "content": paused["content"]}
        return message(tool_use("submit_diagnosis", diagnosis_input(), "t_sub"))

    setup.api.script = [paused, resumed]
    diagnosis = await setup.claude().diagnose(setup.context, setup.record)
    assert diagnosis.summary and setup.api.problems == []
    assert any(s.kind == "pause" for s in await setup.steps())


async def test_refusal_ends_the_session_and_runs_nothing(setup: Setup) -> None:
    setup.api.script = [message(tool_use("observe_cluster", {}, "t_obs"), stop_reason="refusal")]
    observations = setup.subject.observations
    with pytest.raises(DiagnosisFailed) as info:
        await setup.claude().diagnose(setup.context, setup.record)
    assert "refused" in info.value.reason and not info.value.retryable
    assert setup.subject.observations == observations, "a refused turn's tool calls must not run"
    assert len(setup.api.requests) == 1 and setup.api.problems == []


async def test_diagnoser_sends_no_sampling_or_forced_tool_choice(setup: Setup) -> None:
    setup.api.script = [message(tool_use("submit_diagnosis", diagnosis_input()))]
    await setup.claude().diagnose(setup.context, setup.record)
    sent = setup.api.requests[0].body
    assert not {"temperature", "top_p", "top_k"} & set(sent)
    assert sent.get("tool_choice", {"type": "auto"})["type"] in ("auto", "none")
    assert sent.get("thinking") in (None, {"type": "adaptive"}, {"type": "between_tools"})
