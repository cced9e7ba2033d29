"""A real HTTP server on 127.0.0.1 that speaks the Anthropic Messages API wire format, and
behaves as today's models do (claude-sonnet-5-5 and its kin; see shared/reference/machine.md).

The anthropic SDK is pointed at it with `base_url`, so the diagnoser's real client code (request
building, headers, retries, response parsing, error classes) runs unchanged. The server is driven
by a script: each `POST /v1/messages` consumes the next step, which is either a canned reply or a
function of the received request (so a test can look at the tool results the client sent back
before deciding what the "model" says next). Every request is recorded, and every departure from
the wire format that the real API would reject is answered with a 400 and listed in `problems`.

Like today's models, it:
- thinks by default: `message()` starts every reply with a signed `thinking` block whose text is
  omitted (and can add `redacted_thinking` blocks); replies come plain or streamed (SSE);
- answers 400 to sampling parameters (temperature, top_p, top_k), forced tool_choice (any,
  tool), assistant prefill, thinking budgets and `thinking: {"type": "disabled"}`;
- requires every assistant turn to come back exactly as it was sent: thinking and
  redacted_thinking blocks first and unmodified, nothing dropped, reordered or rebuilt;
- may end a turn with `pause_turn` (the client sends the turn back, as is, to continue; the only
  trailing assistant message it accepts) or `refusal`.

    async with FakeMessagesAPI([message(tool_use("list_actions", {})), ...]) as api:
        ... base_url=api.url ...
    assert api.problems == []
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "sk-ant-test-key"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
SAMPLING = ("temperature", "top_p", "top_k")
THINKING_ACCEPTED = (None, {"type": "adaptive"}, {"type": "between_tools"})
_SIGNING_KEY = b"fake-messages-api-thinking-signatures"
_ids = itertools.count(1)


@dataclass
class Reply:
    """A raw HTTP reply: use it for errors (or anything `message()` cannot express)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    """One request as the server saw it."""

    headers: dict[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    @property
    def tool_names(self) -> list[str]:
        return [t.get("name") for t in self.body.get("tools", [])] if isinstance(self.body, dict) else []

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the last (user) message."""
        if not self.messages:
            return []
        content = self.messages[-1].get("content")
        if not isinstance(content, list):
            return []
        return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]

    def result_for(self, tool_use_id: str) -> dict[str, Any]:
        for block in self.tool_results():
            if block.get("tool_use_id") == tool_use_id:
                return block
        raise AssertionError(f"no tool_result for {tool_use_id} in the last message: {self.messages[-1]!r}")

    def last_user_text(self) -> str:
        content = self.messages[-1].get("content") if self.messages else ""
        if isinstance(content, str):
            return content
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


Step = dict[str, Any] | Reply | Callable[[Received], "dict[str, Any] | Reply | Awaitable[dict[str, Any] | Reply]"]


# -- building replies ---------------------------------------------------------------------------


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def signature(thinking_text: str) -> str:
    return hmac.new(_SIGNING_KEY, thinking_text.encode(), hashlib.sha256).hexdigest()


def thinking(value: str = "") -> dict[str, Any]:
    """A thinking block as today's models return it: signed, its text usually omitted ("")."""
    return {"type": "thinking", "thinking": value, "signature": signature(value)}


def redacted_thinking(data: str = "EncryptedThinkingPayload==") -> dict[str, Any]:
    return {"type": "redacted_thinking", "data": data}


def tool_use(name: str, tool_input: Any, tool_id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id or f"toolu_{next(_ids):06d}", "name": name, "input": tool_input}


def message(*blocks: dict[str, Any], stop_reason: str | None = None, input_tokens: int = 100,
            output_tokens: int = 20, model: str = "claude-test", thinks: bool = True) -> dict[str, Any]:
    """A Messages API response body; stop_reason defaults to tool_use when a tool is called.
    Like today's models it thinks first (a signed thinking block, text omitted) unless the blocks
    already start with thinking or `thinks` is False."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    content = list(blocks)
    if thinks and not any(b["type"] in ("thinking", "redacted_thinking") for b in content):
        content.insert(0, thinking())
    return {
        "id": f"msg_{next(_ids):06d}", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403, "not_found_error": 404,
    "request_too_large": 413, "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529,
}


def error(kind: str, msg: str = "", status: int | None = None, retry_after_ms: int | None = 20) -> Reply:
    """An error in the API's shape. retry_after_ms keeps the SDK's own retries quick in tests."""
    headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    return Reply(status or ERROR_STATUS[kind], {"type": "error", "error": {"type": kind, "message": msg or kind}},
                 headers)


# -- validating requests ------------------------------------------------------------------------


def wire_problems(headers: dict[str, str], body: Any, api_key: str | None,
                  issued: dict[str, str] | None = None) -> list[str]:
    """What the real API would reject in this request. `issued`: the assistant turns this server
    sent (canonical JSON of their content -> stop reason), which must come back exactly."""
    problems: list[str] = []
    lower = {k.lower(): v for k, v in headers.items()}
    # The key travels as x-api-key or, as this SDK version sends it, as a bearer token.
    auth = lower.get("authorization", "")
    sent = lower.get("x-api-key") or (auth[len("Bearer "):] if auth.startswith("Bearer ") else None)
    if api_key is not None and sent != api_key:
        problems.append(f"the API key sent is {sent!r}, expected the test key")
    if not lower.get("anthropic-version"):
        problems.append("anthropic-version header missing")
    if "application/json" not in lower.get("content-type", ""):
        problems.append("content-type is not application/json")
    if not isinstance(body, dict):
        return [*problems, "body is not a JSON object"]
    if not isinstance(body.get("model"), str) or not body["model"]:
        problems.append("model: a non-empty string is required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        problems.append("max_tokens: a positive integer is required")
    for name in SAMPLING:
        if name in body:
            problems.append(f"{name}: sampling parameters are not supported by this model; remove {name}")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        problems.append(f"tool_choice: forced tool use ({choice.get('type')}) is not supported with thinking; "
                        "use auto or none")
    problems.extend(_thinking_problems(body.get("thinking", None), "thinking" in body))
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        problems.append("system: must be a string or a list of text blocks")
    problems.extend(_tool_problems(body.get("tools")))
    problems.extend(_message_problems(body.get("messages"), issued if issued is not None else {}))
    return problems


def _thinking_problems(value: Any, given: bool) -> list[str]:
    if not given or value in THINKING_ACCEPTED:
        return []
    if isinstance(value, dict) and value.get("type") == "disabled":
        return ['thinking: {"type": "disabled"} is not supported by this model; use {"type": "between_tools"} '
                "to turn up-front thinking off"]
    if isinstance(value, dict) and "budget_tokens" in value:
        return ["thinking.budget_tokens: thinking budgets are not supported by this model (it thinks adaptively)"]
    return [f"thinking: {value!r} is not a valid thinking configuration"]


def canonical(content: Any) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"))


def _turn_problems(i: int, content: Any, issued: dict[str, str]) -> list[str]:
    """An assistant turn must be one this server sent, exactly."""
    if isinstance(content, list) and canonical(content) in issued:
        return []
    if not isinstance(content, list):
        return [f"messages.{i}: the assistant turn was rebuilt as a string; send its content blocks back as "
                "received"]
    sent = [json.loads(k) for k in issued]
    thinking_now = [b for b in content if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]
    for b in thinking_now:
        if b.get("type") == "thinking" and not hmac.compare_digest(str(b.get("signature", "")),
                                                                   signature(str(b.get("thinking", "")))):
            return [f"messages.{i}: invalid signature in thinking block: it was modified"]
    if content and thinking_now and content[0] not in thinking_now:
        return [f"messages.{i}: thinking blocks must come first in the assistant turn, as they were sent"]
    tool_ids = {b.get("id") for b in content if isinstance(b, dict) and b.get("type") == "tool_use"}
    for original in sent:
        ids = {b.get("id") for b in original if b.get("type") == "tool_use"}
        if (ids and ids == tool_ids) or (not ids and not tool_ids and [b for b in original if b.get("type") == "text"]
                                      == [b for b in content if isinstance(b, dict) and b.get("type") == "text"]):
            thinking_then = [b for b in original if b.get("type") in ("thinking", "redacted_thinking")]
            if thinking_then and not thinking_now:
                return [f"messages.{i}: the assistant turn lacks the thinking blocks it was sent with: with tool "
                        "use, thinking blocks must be passed back unmodified"]
            return [f"messages.{i}: the assistant turn differs from the one that was sent: send it back exactly "
                    "as received"]
    return [f"messages.{i}: this assistant turn was never sent by the model (prefill is not supported)"]


def _tool_problems(tools: Any) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        return ["tools: must be a list"]
    out, seen = [], set()
    for i, t in enumerate(tools):
        name = t.get("name") if isinstance(t, dict) else None
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            out.append(f"tools.{i}.name: {name!r} is not a valid tool name")
        if name in seen:
            out.append(f"tools.{i}.name: duplicate {name!r}")
        seen.add(name)
        schema = t.get("input_schema") if isinstance(t, dict) else None
        if not isinstance(schema, dict) or schema.get("type") != "object":
            out.append(f"tools.{i}.input_schema: must be a JSON schema of type object")
    return out


def _message_problems(messages: Any, issued: dict[str, str]) -> list[str]:
    if not isinstance(messages, list) or not messages:
        return ["messages: a non-empty list is required"]
    out: list[str] = []
    pending: set[str] = set()  # tool_use ids of the previous assistant turn awaiting results
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            out.append(f"messages.{i}.role: {role!r}; roles must alternate, starting with user")
            continue
        content = m.get("content")
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}]
        elif isinstance(content, list) and content:
            blocks = content
        else:
            out.append(f"messages.{i}.content: a string or a non-empty list of blocks is required")
            continue
        if role == "user":
            results = [b.get("tool_use_id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
            if pending and set(results) != pending:
                out.append(f"messages.{i}: tool_use ids {sorted(pending)} need exactly one tool_result each, "
                           f"got {results}")
            if results and any(b.get("type") != "tool_result" for b in blocks[:len(results)]):
                out.append(f"messages.{i}: tool_result blocks must come first")
            for b in blocks:
                if b.get("type") == "tool_result" and not isinstance(b.get("content", ""), str | list):
                    out.append(f"messages.{i}: tool_result content must be a string or a list of blocks")
            pending = set()
        else:
            pending = set()
            out.extend(_turn_problems(i, content, issued))
            for b in blocks:
                if isinstance(b, dict) and b.get("type") == "tool_use":
                    pending.add(b.get("id"))
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    if last.get("role") == "assistant":
        # Only a turn that ended in pause_turn may be sent back last (to let the model continue).
        if issued.get(canonical(last.get("content"))) != "pause_turn":
            out.append("messages: the last message is an assistant turn: prefill is not supported by this model")
        elif pending:
            out.append("messages: the last message must not be an assistant turn with unanswered tool_use blocks")
    return out


# -- the server ---------------------------------------------------------------------------------


class FakeMessagesAPI:
    def __init__(self, script: list[Step] | None = None, *, api_key: str | None = API_KEY):
        self.script: list[Step] = list(script or [])
        self.api_key = api_key
        self.requests: list[Received] = []
        self.problems: list[str] = []
        self.issued: dict[str, str] = {}  # canonical content of every assistant turn sent -> its stop reason
        self.step_errors: list[Exception] = []  # raised by step functions (failed assertions)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def remaining(self) -> int:
        return len(self.script)

    async def start(self) -> FakeMessagesAPI:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    def raise_step_errors(self) -> None:
        if self.step_errors:
            raise self.step_errors[0]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeMessagesAPI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _messages(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        received = Received(dict(request.headers), body)
        self.requests.append(received)
        problems = wire_problems(received.headers, body, self.api_key, self.issued)
        if problems:
            self.problems.extend(problems)
            return self._send(error("invalid_request_error", "; ".join(problems), retry_after_ms=None))
        stream = isinstance(body, dict) and bool(body.get("stream"))
        if not self.script:
            self.problems.append(f"request {len(self.requests)} arrived after the script ended")
            return self._send(error("api_error", "the test script has no more steps", retry_after_ms=None))
        step = self.script.pop(0)
        if callable(step):
            try:
                step = step(received)
                if isinstance(step, Awaitable):
                    step = await step
            except Exception as e:  # a failed assertion in a step: make it visible, never retried
                self.step_errors.append(e)
                msg = f"test step {len(self.requests)} raised {type(e).__name__}: {e}"
                return self._send(Reply(500, {"type": "error", "error": {"type": "api_error", "message": msg}},
                                        {"x-should-retry": "false"}))
        if isinstance(step, Reply):
            return self._send(step)
        self.issued[canonical(step["content"])] = step["stop_reason"]
        if stream:
            return await self._stream(request, step)
        return self._send(Reply(200, step))

    def _send(self, reply: Reply) -> web.Response:
        headers = {"request-id": f"req_{next(_ids):06d}", **reply.headers}
        return web.json_response(reply.body, status=reply.status, headers=headers)

    async def _stream(self, request: web.Request, msg: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "request-id": f"req_{next(_ids):06d}"})
        await response.prepare(request)
        for event in stream_events(msg):
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response


def stream_events(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """The server-sent events of one reply, as the Messages API streams it: thinking arrives as
    thinking_delta + signature_delta, tool input as input_json_delta pieces."""
    head = {**msg, "content": [], "stop_reason": None,
            "usage": {"input_tokens": msg["usage"]["input_tokens"], "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": head}]
    for index, block in enumerate(msg["content"]):
        kind = block["type"]
        if kind == "thinking":
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            if block["thinking"]:
                events.append({"type": "content_block_delta", "index": index,
                               "delta": {"type": "thinking_delta", "thinking": block["thinking"]}})
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "signature_delta", "signature": block["signature"]}})
        elif kind == "text":
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}})
            half = len(block["text"]) // 2
            for piece in (block["text"][:half], block["text"][half:]):
                if piece:
                    events.append({"type": "content_block_delta", "index": index,
                                   "delta": {"type": "text_delta", "text": piece}})
        elif kind == "tool_use":
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {**block, "input": {}}})
            raw = json.dumps(block["input"])
            half = len(raw) // 2
            for piece in (raw[:half], raw[half:]):
                events.append({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": piece}})
        else:  # redacted_thinking and anything else arrive whole
            events.append({"type": "content_block_start", "index": index, "content_block": block})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": msg["usage"]["output_tokens"]}})
    events.append({"type": "message_stop"})
    return events
