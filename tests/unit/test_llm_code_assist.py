"""Gemini CLI logged in with Google: Code Assist (``cloudcode-pa.googleapis.com/v1internal``) calls.

The payloads follow gemini-cli's code_assist converter: the request wraps a Gemini request as
``{model, project, user_prompt_id, request}``, each answer or SSE chunk wraps a Gemini response
as ``{response, traceId}``; errors are plain Google RPC errors. Ids and tokens are made up.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentsight.analysis.llm import detect_api, extract_call
from tests.chain import llm_calls, run_chain
from tests.unit.test_llm_fixtures import stable

TOKEN = "ya29.a0AQQ_BDSfakeFakeFakeOAuthAccessToken0123456789"
HOST = "cloudcode-pa.googleapis.com"
UA = "GeminiCLI/0.9.0/gemini-2.5-pro (linux; x64)"
SYSTEM = "You are an interactive CLI agent specializing in software engineering tasks."
CONTENTS = [
    {"role": "user", "parts": [{"text": "What is in package.json?"}]},
    {"role": "model", "parts": [{"functionCall": {"id": "read_file-1760000000000-a1b2", "name": "read_file",
                                                  "args": {"absolute_path": "/work/app/package.json"}}}]},
    {"role": "user", "parts": [{"functionResponse": {"id": "read_file-1760000000000-a1b2", "name": "read_file",
                                                     "response": {"output": "{\"name\": \"app\"}"}}}]},
]
TOOLS = [{"functionDeclarations": [
    {"name": "read_file", "description": "Reads and returns the content of a specified file.",
     "parametersJsonSchema": {"type": "object", "properties": {"absolute_path": {"type": "string"}},
                              "required": ["absolute_path"]}},
    {"name": "run_shell_command", "description": "Executes a given shell command.",
     "parametersJsonSchema": {"type": "object", "properties": {"command": {"type": "string"}}}},
]}]


def ca_request(model: str = "gemini-2.5-pro") -> dict[str, Any]:
    return {"model": model, "project": "sunny-arbor-4k2j1", "user_prompt_id": "0b8e4c1d-2f6a-4e3b-9c7d-5a1f8e2d6b40########2",
            "request": {"contents": CONTENTS, "systemInstruction": {"role": "user", "parts": [{"text": SYSTEM}]},
                        "tools": TOOLS, "generationConfig": {"temperature": 0, "topP": 1, "thinkingConfig": {
                            "includeThoughts": True, "thinkingBudget": -1}},
                        "session_id": "0b8e4c1d-2f6a-4e3b-9c7d-5a1f8e2d6b40"}}


def http_request(path: str, body: dict[str, Any]) -> bytes:
    raw = json.dumps(body, separators=(",", ":")).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nUser-Agent: {UA}\r\nx-goog-api-client: gl-node/22.19.0\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n")
    return head.encode() + raw


def http_response(status: str, ctype: str, chunks: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n"
            "Server: ESF\r\n\r\n").encode() + body


def wrapped(response: dict[str, Any], trace: str = "7d1e0f3a9b2c4d5e") -> dict[str, Any]:
    return {"response": response, "traceId": trace}


STREAM_CHUNKS = [
    wrapped({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "**Reading the manifest**\n\nThe user wants the package name.", "thought": True}]}}],
        "usageMetadata": {"promptTokenCount": 8450, "totalTokenCount": 8450, "trafficType": "ON_DEMAND"},
        "modelVersion": "gemini-2.5-pro", "createTime": "2025-10-09T08:15:02.114522Z"}),
    wrapped({"candidates": [{"content": {"role": "model", "parts": [{"text": "The package is named "}]}}],
             "usageMetadata": {"promptTokenCount": 8450, "totalTokenCount": 8450, "trafficType": "ON_DEMAND"},
             "modelVersion": "gemini-2.5-pro", "createTime": "2025-10-09T08:15:02.114522Z"}),
    wrapped({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "`app`. Let me check the scripts too."},
        {"functionCall": {"name": "run_shell_command", "args": {"command": "npm run"}}}]},
        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 8450, "candidatesTokenCount": 41, "totalTokenCount": 8623,
                          "cachedContentTokenCount": 7987, "thoughtsTokenCount": 132, "trafficType": "ON_DEMAND",
                          "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8450}]},
        "modelVersion": "gemini-2.5-pro", "createTime": "2025-10-09T08:15:02.114522Z"}),
]


def stream_wire() -> tuple[bytes, bytes]:
    events = [f"data: {json.dumps(c)}\r\n\r\n".encode() for c in STREAM_CHUNKS]
    return (http_request("/v1internal:streamGenerateContent?alt=sse", ca_request()),
            http_response("200 OK", "text/event-stream", events))


def generate_wire() -> tuple[bytes, bytes]:
    body = wrapped({"candidates": [{"content": {"role": "model", "parts": [{"text": "{\"complexity\": 2}"}]},
                                    "finishReason": "STOP", "avgLogprobs": -0.12}],
                    "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 9, "totalTokenCount": 421,
                                      "trafficType": "ON_DEMAND"},
                    "modelVersion": "gemini-2.5-flash-lite", "responseId": "mFnmaOqkB9KSn9kPq5ab8AQ"}, "c0ffee00")
    raw = json.dumps(body).encode()
    return (http_request("/v1internal:generateContent", ca_request("gemini-2.5-flash-lite")),
            http_response("200 OK", "application/json; charset=UTF-8", [raw[:100], raw[100:]]))


def error_wire() -> tuple[bytes, bytes]:
    err = {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                     "status": "RESOURCE_EXHAUSTED"}}
    return (http_request("/v1internal:streamGenerateContent?alt=sse", ca_request()),
            http_response("429 Too Many Requests", "application/json; charset=UTF-8", [json.dumps(err).encode()]))


WIRES = {"stream": stream_wire, "generate": generate_wire, "error": error_wire}


def call_of(name: str) -> dict[str, Any]:
    req, resp = WIRES[name]()
    calls = llm_calls(run_chain([("write", req), ("read", resp)]))
    assert len(calls) == 1
    return calls[0].data


def test_paths() -> None:
    assert detect_api("POST", "/v1internal:streamGenerateContent") == "gemini.code_assist"
    assert detect_api("POST", "/v1internal:generateContent") == "gemini.code_assist"
    assert detect_api("POST", "/v1internal:countTokens") is None
    assert detect_api("POST", "/v1internal:loadCodeAssist") is None


def test_streamed_call() -> None:
    c = call_of("stream")
    assert (c["api"], c["provider"], c["host"], c["endpoint"], c["transport"], c["stream"], c["status_code"]) == (
        "gemini.code_assist", "google", HOST, "/v1internal:streamGenerateContent", "http", True, 200)
    assert (c["model_requested"], c["model"], c["response_id"], c["system"]) == (
        "gemini-2.5-pro", "gemini-2.5-pro", "7d1e0f3a9b2c4d5e", SYSTEM)
    assert [(m["role"], [p["type"] for p in m["parts"]]) for m in c["messages"]] == [
        ("user", ["text"]), ("assistant", ["tool_call"]), ("user", ["tool_result"])]
    assert c["messages"][1]["parts"][0]["input"] == {"absolute_path": "/work/app/package.json"}
    assert c["messages"][2]["parts"][0]["content"] == '{"output":"{\\"name\\": \\"app\\"}"}'
    assert [t["name"] for t in c["tools"]] == ["read_file", "run_shell_command"]
    assert c["tools"][0]["parameters"]["required"] == ["absolute_path"]
    assert c["output_text"] == "The package is named `app`. Let me check the scripts too."
    assert c["reasoning"] == "**Reading the manifest**\n\nThe user wants the package name."
    assert c["tool_calls"] == [{"id": None, "name": "run_shell_command", "arguments": '{"command":"npm run"}',
                                "input": {"command": "npm run"}}]
    assert (c["stop_reason"], c["error"], c["stream_events"], c["notes"]) == ("STOP", None, 3, [])
    assert {k: v for k, v in c["usage"].items() if k != "raw"} == {
        "input_tokens": 8450, "output_tokens": 173, "cache_read_tokens": 7987, "cache_write_tokens": None,
        "reasoning_tokens": 132, "uncached_input_tokens": 463, "total_tokens": 8623}
    assert c["usage"]["raw"]["trafficType"] == "ON_DEMAND"
    assert c["user_agent"] == UA and c["cost"] is not None
    assert TOKEN not in repr(c)


def test_one_shot_call() -> None:
    c = call_of("generate")
    assert (c["api"], c["stream"], c["model_requested"], c["model"], c["response_id"]) == (
        "gemini.code_assist", False, "gemini-2.5-flash-lite", "gemini-2.5-flash-lite", "mFnmaOqkB9KSn9kPq5ab8AQ")
    assert (c["output_text"], c["stop_reason"], c["reasoning"], c["tool_calls"]) == (
        '{"complexity": 2}', "STOP", None, [])
    assert (c["usage"]["input_tokens"], c["usage"]["output_tokens"], c["usage"]["total_tokens"]) == (412, 9, 421)


def test_quota_error() -> None:
    c = call_of("error")
    assert c["status_code"] == 429 and c["output_text"] == ""
    assert {k: c["error"][k] for k in ("type", "message", "status")} == {
        "type": "RESOURCE_EXHAUSTED", "message": "Resource has been exhausted (e.g. check quota).", "status": 429}


def test_streamed_json_array_answer_unwraps_each_element() -> None:
    """Without alt=sse, a stream comes as one JSON array of wrapped chunks."""
    req = {"method": "POST", "path": "/v1internal:streamGenerateContent", "host": HOST, "headers": [],
           "body_text": json.dumps(ca_request())}
    resp = {"status_code": 200, "content_type": "application/json", "body_text": json.dumps(STREAM_CHUNKS),
            "complete": True}
    c = extract_call({"request": req, "response": resp, "host": HOST})
    assert c is not None and c["output_text"] == "The package is named `app`. Let me check the scripts too."
    assert (c["stream"], c["usage"]["output_tokens"]) == (True, 173)


@pytest.mark.parametrize("name", sorted(WIRES))
def test_every_byte_split_gives_the_same_record(name: str) -> None:
    req, resp = WIRES[name]()
    want = stable(call_of(name))
    for i in range(1, len(resp), 7):
        calls = llm_calls(run_chain([("write", req), ("read", resp[:i]), ("read", resp[i:])]))
        assert [stable(c.data) for c in calls] == [want], f"response split at {i}"
    records = [("write", req[i : i + 1]) for i in range(len(req))] + [("read", resp[i : i + 1])
                                                                      for i in range(len(resp))]
    calls = llm_calls(run_chain(records))
    assert [stable(c.data) for c in calls] == [want]
