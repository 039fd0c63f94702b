"""Structured fuzzing of LLM exchanges: the sse and llm stages never raise, and every record they emit encodes.

The exchanges are shaped like the real APIs (the paths, content types and field names
the extractors look for) with values drawn from everything JSON can carry: lone
surrogates (``JSON.stringify`` of a string cut inside an emoji), integers past 64 bits,
deep nesting, wrong types where objects are expected, broken timelines.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentsight import wire
from agentsight.actors.analyzers.llm import Llm
from agentsight.actors.analyzers.sse import Sse
from agentsight.event import Event, repair

KEYS = [
    "arguments", "cache_creation_input_tokens", "cache_read_input_tokens", "cached_tokens", "call_id", "candidates",
    "candidatesTokenCount", "choices", "code", "content", "content_block", "contents", "data", "delta",
    "error", "finishReason", "finish_reason", "function", "functionCall", "functionResponse", "id", "index",
    "input", "input_tokens", "instructions", "item", "message", "messages", "model", "modelVersion", "name",
    "output", "output_index", "output_tokens", "partial_json", "parts", "promptTokenCount", "reasoning",
    "reasoning_content", "response", "responseId", "role", "status", "stop_reason", "stream", "system",
    "systemInstruction", "text", "thinking", "thought", "tool_calls", "tool_use_id", "tools", "traceId",
    "type", "usage", "usageMetadata", "prompt_tokens", "completion_tokens", "total_tokens",
]
TYPES = ["text", "tool_use", "message_start", "content_block_start", "content_block_delta", "message_delta",
         "message_stop", "text_delta", "input_json_delta", "thinking_delta", "response.output_text.delta",
         "response.completed", "response.output_item.added", "response.output_item.done",
         "response.function_call_arguments.delta", "response.create", "error", "function_call", "output_text"]
PATHS = ["/v1/chat/completions", "/v1/responses", "/v1/messages",
         "/v1beta/models/gemini-2.5-pro:generateContent", "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
         "/v1internal:streamGenerateContent", "/v1internal:generateContent"]

texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(TYPES),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.builds(lambda a, b: a + b, st.text(max_size=5), st.sampled_from(["\ud83d", "\udc00", "\udfff"])),
)
ints = st.one_of(st.integers(-5, 1000), st.integers(2 ** 63 - 2, 2 ** 70), st.integers(-(2 ** 70), -(2 ** 63)))
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False, allow_infinity=False), texts)
values = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=4)), kids, max_size=6)),
    max_leaves=25,
)
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)


def dump(v: Any) -> str:
    return json.dumps(v)  # ensure_ascii: lone surrogates go out as \\udXXX escapes, as JSON.stringify writes them


timelines = st.one_of(st.none(), st.lists(st.one_of(st.lists(ints, max_size=3), scalars), max_size=4))


@st.composite
def exchanges(draw: st.DrawFn) -> dict[str, Any]:
    req_text = dump(draw(objects)) if draw(st.booleans()) else draw(st.text(max_size=20))
    stream = draw(st.booleans())
    if stream:
        body_text = "".join(f"event: {draw(st.sampled_from(TYPES))}\ndata: {dump(draw(objects))}\n\n"
                            for _ in range(draw(st.integers(0, 5))))
        if draw(st.booleans()):
            body_text += "data: [DONE]\n\n"
        ctype = "text/event-stream"
    else:
        body_text = dump(draw(st.one_of(objects, st.lists(objects, max_size=3), values)))
        ctype = draw(st.sampled_from(["application/json", "text/plain", None]))
    body = body_text.encode("utf-8", "surrogatepass")
    response: dict[str, Any] = {
        "status_code": draw(st.one_of(st.sampled_from([200, 400, 429, 500]), ints, texts, st.none())),
        "content_type": ctype, "body": draw(st.one_of(st.just(body), ints, st.none())) if draw(st.booleans())
        else body,
        "body_text": body_text if draw(st.booleans()) else None,
        "timeline": draw(timelines), "complete": draw(st.booleans()), "error": draw(st.one_of(st.none(), texts)),
        "ts_first_byte_ns": draw(st.one_of(ints, st.none())),
    }
    if draw(st.integers(0, 4)) == 0:
        response["sse"] = draw(st.one_of(objects, st.fixed_dictionaries({"events": st.lists(objects, max_size=3)})))
    return {
        "conn": "7:1", "seq": draw(st.integers(0, 3)), "host": draw(st.sampled_from(
            ["api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "x"])),
        "request": {"method": "POST", "path": draw(st.sampled_from(PATHS)), "host": "api.anthropic.com",
                    "query": draw(st.sampled_from(["", "alt=sse", "key=abc"])),
                    "headers": draw(st.one_of(st.just([["user-agent", "x"]]), values)),
                    "body": req_text.encode("utf-8", "surrogatepass"), "body_text": req_text},
        "response": response if draw(st.integers(0, 5)) else draw(values),
        "ts_request_start_ns": draw(st.one_of(ints, st.none())),
        "ts_response_first_byte_ns": draw(st.one_of(ints, st.none())),
        "ts_response_end_ns": draw(st.one_of(ints, st.none())),
    }


@st.composite
def ws_messages(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = [{"conn": "7:2", "seq": 0, "index": 0, "opcode": 1, "dir": "write",
            "text": dump({"type": "response.create", **draw(objects)})}]
    for i in range(draw(st.integers(0, 4))):
        event = {"type": draw(st.sampled_from(TYPES)), **draw(objects)}
        out.append({"conn": "7:2", "seq": 0, "index": i, "opcode": draw(st.sampled_from([1, 2, 8])), "dir": "read",
                    "text": dump(event), "ts_start_ns": draw(st.one_of(ints, st.none())),
                    "close_code": draw(st.one_of(st.none(), ints))})
    return out


def run_stages(events: list[Event]) -> list[Event]:
    """Through sse then llm; the inputs are what a frame can carry (bodies hold the odd JSON)."""
    sse, llm = Sse("sse"), Llm("llm")
    out: list[Event] = []
    for e in events:
        e.data = repair(e.data)
        for s in sse.process(e):
            out.extend(llm.process(s))
    return out


def assert_encodes(events: list[Event]) -> None:
    for e in events:
        wire.encode_events([e])  # strict: raises on anything msgpack refuses


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(exchanges())
def test_an_llm_exchange_of_any_shape_never_raises_and_every_record_encodes(exchange):
    head = Event("http.stream.head", 1, "http", 7, 7, "node",
                 {"conn": "7:1", "seq": 0, "content_type": exchange["response"].get("content_type")
                  if isinstance(exchange["response"], dict) else None})
    chunk = Event("http.stream.chunk", 2, "http", 7, 7, "node", {"conn": "7:1", "seq": 0, "offset": 0,
                                                                  "data": exchange["request"]["body"]})
    out = run_stages([head, chunk, Event("http.exchange", 3, "http", 7, 7, "node", exchange)])
    assert_encodes(out)
    assert [e.topic for e in out].count("http.exchange") == 1


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(ws_messages())
def test_a_websocket_call_of_any_shape_never_raises_and_every_record_encodes(messages):
    events = [Event("http.ws", i, "http", 7, 7, "node", m) for i, m in enumerate(messages)]
    events.append(Event("http.ws.end", 99, "http", 7, 7, "node", {"conn": "7:2", "seq": 0}))
    assert_encodes(run_stages(events))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(values, objects), min_size=1, max_size=4))
def test_stream_records_of_any_field_types_never_raise(fields):
    events = [Event(t, 1, "http", 7, 7, "node", f if isinstance(f, dict) else {"seq": f, "conn": f, "data": f})
              for t, f in zip(["http.stream.head", "http.stream.chunk", "http.exchange", "http.stream.chunk"],
                              fields, strict=False)]
    assert_encodes(run_stages(events))
