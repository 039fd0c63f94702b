"""Usage normalisation, API detection, errors and unknowns in llm.call records."""

from __future__ import annotations

import json

import pytest

from agentsight.analysis.llm import LlmCalls, detect_api, extract_call, provider_for_host
from agentsight.event import Event


def exchange(path: str, req: dict, resp: object, status: int = 200, ctype: str = "application/json",
             host: str = "api.anthropic.com") -> dict:
    body = resp if isinstance(resp, bytes) else json.dumps(resp).encode()
    return {
        "conn": "1:a", "seq": 0, "host": host,
        "request": {"method": "POST", "path": path, "query": "", "host": host, "headers": [],
                    "body": json.dumps(req).encode(), "body_text": json.dumps(req)},
        "response": {"status_code": status, "content_type": ctype, "body": body,
                     "body_text": body.decode("utf-8", "replace"), "complete": True, "timeline": [[len(body), 50]],
                     "ts_first_byte_ns": 40},
        "ts_request_start_ns": 10, "ts_response_first_byte_ns": 40, "ts_response_end_ns": 90,
    }


@pytest.mark.parametrize("method,path,api", [
    ("POST", "/v1/chat/completions", "openai.chat"),
    ("POST", "/openai/deployments/gpt4/chat/completions", "openai.chat"),
    ("POST", "/v1/responses", "openai.responses"),
    ("POST", "/v1/messages", "anthropic.messages"),
    ("POST", "/v1beta/models/gemini-2.5-pro:streamGenerateContent", "gemini.generate"),
    ("POST", "/v1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:generateContent", "gemini.generate"),
    ("GET", "/v1/models", None),
    ("POST", "/v1/messages/count_tokens", None),
    ("POST", "/v1/embeddings", None),
])
def test_detect_api(method: str, path: str, api: str | None) -> None:
    assert detect_api(method, path) == api


def test_provider_for_host() -> None:
    assert provider_for_host("api.openai.com:443") == "openai"
    assert provider_for_host("myres.openai.azure.com") == "azure"
    assert provider_for_host("llm.internal.corp", "openai.chat") == "llm.internal.corp"


def test_anthropic_cache_tokens_are_added_to_input() -> None:
    rec = extract_call(exchange("/v1/messages", {"model": "claude-sonnet-4-5", "messages": []}, {
        "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5,
                  "output_tokens": 7}}))
    assert rec is not None
    u = rec["usage"]
    assert (u["input_tokens"], u["uncached_input_tokens"], u["cache_read_tokens"], u["cache_write_tokens"]) == (
        115, 10, 100, 5)
    assert u["output_tokens"] == 7 and u["total_tokens"] == 122 and u["reasoning_tokens"] is None
    assert rec["cost"]["currency"] == "USD" and rec["cost"]["total"] > 0 and "genai-prices" in rec["cost"]["price_source"]
    assert rec["ttft_ms"] == (50 - 10) / 1e6 and rec["duration_ms"] == 80 / 1e6


def test_missing_usage_is_unknown_not_zero() -> None:
    rec = extract_call(exchange("/v1/chat/completions", {"model": "gpt-4o"}, {
        "model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                        "finish_reason": "stop"}]}, host="api.openai.com"))
    assert rec is not None
    assert set(rec["usage"].values()) == {None} and rec["cost"] is None
    assert rec["output_text"] == "ok"


def test_openai_stream_without_include_usage_has_unknown_usage() -> None:
    body = b'data: {"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"a"}}]}\n\ndata: [DONE]\n\n'
    rec = extract_call(exchange("/v1/chat/completions", {"model": "gpt-4o", "stream": True}, body,
                                ctype="text/event-stream", host="api.openai.com"))
    assert rec is not None and rec["stream"] and rec["output_text"] == "a"
    assert rec["usage"]["input_tokens"] is None and rec["usage"]["output_tokens"] is None


def test_gemini_streamed_json_array_without_alt_sse() -> None:
    chunks = [{"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]},
              {"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
               "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}, "modelVersion": "gemini-2.0-flash"}]
    rec = extract_call(exchange("/v1beta/models/gemini-2.0-flash:streamGenerateContent", {"contents": []},
                                chunks, host="generativelanguage.googleapis.com"))
    assert rec is not None and rec["output_text"] == "Hello" and rec["stream"] is True
    assert rec["usage"]["input_tokens"] == 3 and rec["usage"]["output_tokens"] == 2
    assert rec["usage"]["reasoning_tokens"] is None


def test_error_status_and_body() -> None:
    rec = extract_call(exchange("/v1/chat/completions", {"model": "gpt-4o"},
                                {"error": {"message": "Invalid API key", "type": "invalid_request_error"}},
                                status=401, host="api.openai.com"))
    assert rec is not None and rec["error"]["status"] == 401 and rec["error"]["type"] == "invalid_request_error"
    assert "Invalid API key" in rec["error"]["body"]


def test_anthropic_stream_error_event() -> None:
    body = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-x","usage":'
            b'{"input_tokens":5,"output_tokens":1}}}\n\nevent: error\ndata: {"type":"error","error":'
            b'{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    rec = extract_call(exchange("/v1/messages", {"model": "claude-x", "stream": True}, body, ctype="text/event-stream"))
    assert rec is not None and rec["error"]["type"] == "overloaded_error" and rec["usage"]["input_tokens"] == 5


def test_garbage_bodies_do_not_crash_the_stage() -> None:
    stage = LlmCalls()
    ex = exchange("/v1/messages", {}, b"\x00\xffnot json")
    ex["request"]["body"] = b"{not json"
    ex["request"]["body_text"] = "{not json"
    (ev,) = stage.feed(Event("http.exchange", 1, "http", data=ex))
    assert ev.topic == "llm.call" and "request body is not JSON" in ev.data["notes"]
    weird = exchange("/v1/messages", {"messages": "nope", "system": 5, "tools": {"a": 1}},
                     {"content": "str", "usage": [1]})
    (ev,) = stage.feed(Event("http.exchange", 1, "http", data=weird))
    assert ev.data["messages"] == [] and ev.data["usage"]["input_tokens"] is None
    assert stage.feed(Event("http.request", 1, "http", data={})) == []
    assert stage.stats.calls == 2 and stage.stats.errors == 0


def test_free_form_tool_calls_of_the_responses_api() -> None:
    """Codex's `exec` tool is free-form: its call carries plain text (custom_tool_call), streamed or not."""
    code = 'const r = await tools.exec_command({cmd: "ls"});\ntext(r.output);\n'
    req = {"model": "gpt-5", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "custom_tool_call", "call_id": "call_0", "name": "exec", "input": "text('hi')"},
        {"type": "custom_tool_call_output", "call_id": "call_0", "output": "hi"}],
        "tools": [{"type": "custom", "name": "exec"}]}
    item = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1", "name": "exec", "input": code}
    plain = extract_call(exchange("/v1/responses", req, {"id": "resp_1", "model": "gpt-5", "status": "completed",
                                                         "output": [item]}, host="api.openai.com"))
    sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in [
        {"type": "response.created", "response": {"id": "resp_2", "model": "gpt-5", "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "input": ""}},
        *({"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": code[i:i + 9]}
          for i in range(0, len(code), 9)),
        {"type": "response.completed", "response": {"id": "resp_2", "model": "gpt-5", "status": "completed"}}])
    streamed = extract_call(exchange("/v1/responses", {**req, "stream": True}, sse, ctype="text/event-stream",
                                     host="api.openai.com"))
    for rec in (plain, streamed):
        assert rec is not None
        assert rec["tool_calls"] == [{"id": "call_1", "name": "exec", "arguments": code, "input": code}]
        parts = [p for m in rec["messages"] for p in m["parts"]]
        assert {"type": "tool_call", "id": "call_0", "name": "exec", "arguments": "text('hi')", "input": "text('hi')"} in parts
        assert {"type": "tool_result", "id": "call_0", "content": "hi"} in parts
