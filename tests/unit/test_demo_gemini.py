"""The demo LLM server's Gemini API and Gemini Code Assist, driven by the real google-genai SDK and plain HTTP."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from google import genai
from google.genai import errors, types

from agentsight.demo.llm_server import Running, count_tokens, read_log, running

KEY = "AIzaSyDemo-test-0123456789abcdefghijklm"
SYSTEM = "You are a careful agent. Use run_command."
SCHEMA = {"type": "object", "properties": {"command": {"type": "string", "description": "the command line"}},
          "required": ["command"]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    with running(tmp_path) as srv:
        yield srv


def _client(server: Running) -> genai.Client:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=server.url, api_version="v1beta", httpx_client=httpx.Client(verify=ctx),
        retry_options=types.HttpRetryOptions(attempts=1)))


def _config(**extra: Any) -> types.GenerateContentConfig:
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="run_command", description="Run a command.", parameters_json_schema=SCHEMA)])
    return types.GenerateContentConfig(
        system_instruction=SYSTEM, tools=[tool],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True), **extra)


def _post(server: Running, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    with httpx.Client(verify=ctx) as c:
        return c.post(server.url + path, json=body, headers={"x-goog-api-key": KEY, **(headers or {})})


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    return obj.get(camel, obj.get(snake))


def _expected_input(entry: dict[str, Any]) -> int:
    """The documented count, from the request as the server got it: system + tools JSON + every text
    (a function call counts its name and compact args) + 3 per content + 3."""
    req = entry["request"].get("request", entry["request"])
    system = _get(req, "systemInstruction", "system_instruction") or {}
    total = count_tokens("\n".join(p["text"] for p in system.get("parts", [])))
    if req.get("tools"):
        total += count_tokens(json.dumps(req["tools"], sort_keys=True))
    for content in req["contents"]:
        for p in content["parts"]:
            call, result = _get(p, "functionCall", "function_call"), _get(p, "functionResponse", "function_response")
            if "text" in p:
                total += count_tokens(p["text"])
            elif call is not None:
                total += count_tokens(call["name"]) + count_tokens(json.dumps(call["args"], separators=(",", ":")))
            elif result is not None:
                total += count_tokens(result["response"]["output"])
        total += 3
    return total + 3


def test_sdk_tool_round_trip_with_exact_usage(server: Running) -> None:
    """generateContent: a functionCall with the backticked command, then a text answer to the functionResponse;
    usageMetadata counts exactly, and the second turn's system+tools prefix is reported cached."""
    client = _client(server)
    question = types.Content(role="user", parts=[types.Part(text="Look first: `ls -la`")])
    first = client.models.generate_content(model="gemini-2.5-flash", contents=[question], config=_config())
    assert first.function_calls and first.function_calls[0].name == "run_command"
    call = first.function_calls[0]
    assert call.args == {"command": "ls -la"} and call.id
    assert first.candidates and first.candidates[0].finish_reason == types.FinishReason.STOP
    assert first.model_version == "gemini-2.5-flash" and first.response_id

    result = types.Part(function_response=types.FunctionResponse(
        id=call.id, name=call.name, response={"output": "a.txt\nb.txt\n"}))
    second = client.models.generate_content(
        model="gemini-2.5-flash", config=_config(),
        contents=[question, first.candidates[0].content, types.Content(role="user", parts=[result])])
    assert second.text and second.text.startswith("The tool printed 2 line(s); the first is: a.txt")
    assert not second.function_calls

    entries = read_log(server.log)
    assert [(e["api"], e["endpoint"], e["stream"], e["status"]) for e in entries] == [
        ("gemini.generate", "/v1beta/models/gemini-2.5-flash:generateContent", False, 200)] * 2
    for entry, resp in zip(entries, (first, second), strict=True):
        u = resp.usage_metadata
        assert u is not None and u.prompt_token_count == _expected_input(entry)
        assert u.candidates_token_count == count_tokens(entry["answer_text"]) + sum(
            count_tokens(c["name"]) + count_tokens(c["arguments"]) for c in entry["tool_calls"])
        assert u.total_token_count == u.prompt_token_count + u.candidates_token_count
        assert entry["usage"]["promptTokenCount"] == u.prompt_token_count
        assert entry["model_requested"] == "gemini-2.5-flash" and entry["response_id"] == resp.response_id
    assert first.usage_metadata is not None and first.usage_metadata.cached_content_token_count is None
    prefix = count_tokens(SYSTEM) + count_tokens(json.dumps(entries[1]["request"]["tools"], sort_keys=True))
    assert second.usage_metadata is not None and second.usage_metadata.cached_content_token_count == prefix
    assert entries[0]["tool_calls"][0]["input"] == {"command": "ls -la"}
    assert entries[0]["tool_calls"][0]["id"] == call.id


def test_sdk_stream_is_sse_with_final_usage(server: Running) -> None:
    """streamGenerateContent?alt=sse: text in pieces, finishReason and the final usage on the last chunk."""
    client = _client(server)
    chunks = list(client.models.generate_content_stream(
        model="gemini-2.5-pro", contents="Tell me about eBPF in one line",
        config=types.GenerateContentConfig(system_instruction="Be brief.")))
    entry = read_log(server.log)[0]
    assert entry["endpoint"] == "/v1beta/models/gemini-2.5-pro:streamGenerateContent" and entry["stream"]
    assert len(chunks) > 1 and "".join(c.text or "" for c in chunks) == entry["answer_text"]
    assert entry["answer_text"].startswith("You said: Tell me about eBPF in one line")
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert all(c.candidates and c.candidates[0].finish_reason is None for c in chunks[:-1])
    assert last.usage_metadata and last.usage_metadata.candidates_token_count == count_tokens(entry["answer_text"])
    assert last.usage_metadata.prompt_token_count == _expected_input(entry)
    assert entry["usage"] == last.usage_metadata.model_dump(mode="json", by_alias=True, exclude_none=True) | {
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": entry["usage"]["promptTokenCount"]}]}


def test_raw_sse_frames_are_googles(server: Running) -> None:
    """The bytes: data-only events, CRLF line ends, usage in every chunk, the prompt count from the start."""
    ctx = ssl.create_default_context(cafile=str(server.ca))
    body = {"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]}
    with httpx.Client(verify=ctx) as c:
        r = c.post(f"{server.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", json=body,
                   headers={"x-goog-api-key": KEY})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\r\n\r\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    chunks = [json.loads(e[6:]) for e in events]
    assert all(c["usageMetadata"]["promptTokenCount"] == chunks[-1]["usageMetadata"]["promptTokenCount"] for c in chunks)
    assert "candidatesTokenCount" not in chunks[0]["usageMetadata"] and chunks[-1]["usageMetadata"]["candidatesTokenCount"]


def test_sdk_json_mode_and_enum(server: Running) -> None:
    """responseMimeType application/json with a schema: the answer is JSON of that schema (enums: the first)."""
    client = _client(server)
    schema = {"type": "OBJECT", "properties": {
        "reasoning": {"type": "STRING"}, "score": {"type": "INTEGER"},
        "speaker": {"type": "STRING", "enum": ["user", "model"]}}, "required": ["reasoning", "score", "speaker"]}
    resp = client.models.generate_content(
        model="gemini-2.5-flash-lite", contents="Route this: `ls`",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema))
    answer = json.loads(resp.text or "")
    assert answer == {"reasoning": "Route this: `ls`", "score": 1, "speaker": "user"}


def test_sdk_count_tokens_and_models(server: Running) -> None:
    """countTokens counts as generateContent does; the model list names Gemini models."""
    client = _client(server)
    counted = client.models.count_tokens(model="gemini-2.5-flash", contents="One two three")
    client.models.generate_content(model="gemini-2.5-flash", contents="One two three")
    entries = read_log(server.log)
    assert counted.total_tokens == entries[1]["usage"]["promptTokenCount"] == count_tokens("One two three") + 6
    assert entries[0]["api"] == "gemini.count_tokens" and entries[0]["usage"]["totalTokens"] == counted.total_tokens
    names = [m.name for m in client.models.list()]
    assert "models/gemini-2.5-flash" in names


def test_sdk_errors_in_googles_format(server: Running) -> None:
    """A bad role: 400 INVALID_ARGUMENT (the SDK's ClientError); no key: 403 PERMISSION_DENIED; an unknown
    method: 404 NOT_FOUND."""
    with pytest.raises(errors.ClientError) as exc:
        _client(server).models.generate_content(
            model="gemini-2.5-flash", contents=[types.Content(role="system", parts=[types.Part(text="x")])])
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT" and "role" in (exc.value.message or "")
    denied = _post(server, "/v1beta/models/gemini-2.5-flash:generateContent",
                   {"contents": [{"parts": [{"text": "hi"}]}]}, headers={"x-goog-api-key": ""})
    assert denied.status_code == 403 and denied.json()["error"]["status"] == "PERMISSION_DENIED"
    assert _post(server, "/v1beta/models/x:embedContent", {}).json()["error"]["code"] == 404
    assert [e["status"] for e in read_log(server.log)] == [400, 403, 404]


def test_code_assist_wraps_request_and_every_chunk(server: Running) -> None:
    """v1internal: the request wraps a GenerateContentRequest; each answer (and SSE chunk) is {"response": ...}."""
    inner = {"contents": [{"role": "user", "parts": [{"text": "Check: `uname -a`"}]}],
             "systemInstruction": {"parts": [{"text": SYSTEM}]},
             "tools": [{"functionDeclarations": [{"name": "run_shell_command", "parametersJsonSchema": SCHEMA}]}]}
    body = {"model": "gemini-2.5-pro", "project": "demo-project", "user_prompt_id": "p1", "request": inner}
    bearer = {"Authorization": "Bearer ya29.test"}
    plain = _post(server, "/v1internal:generateContent", body, bearer).json()
    call = plain["response"]["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert call["name"] == "run_shell_command" and call["args"] == {"command": "uname -a"} and plain["traceId"]
    ctx = ssl.create_default_context(cafile=str(server.ca))
    with httpx.Client(verify=ctx) as c:
        r = c.post(f"{server.url}/v1internal:streamGenerateContent?alt=sse", json={
            **body, "request": {**inner, "tools": []}}, headers=bearer)
    chunks = [json.loads(e[6:]) for e in r.text.split("\r\n\r\n") if e]
    assert all(set(c) == {"response", "traceId"} for c in chunks)
    assert "".join(c["response"]["candidates"][0]["content"]["parts"][0]["text"] for c in chunks).startswith(
        "You said: Check:")
    unauthorised = _post(server, "/v1internal:generateContent", body)  # an API key is not enough
    assert unauthorised.status_code == 401 and unauthorised.json()["error"]["status"] == "UNAUTHENTICATED"
    setup = _post(server, "/v1internal:loadCodeAssist", {"cloudaicompanionProject": "demo-project"}, bearer).json()
    assert setup["currentTier"]["id"] == "standard-tier" and setup["cloudaicompanionProject"] == "demo-project"
    counted = _post(server, "/v1internal:countTokens",
                    {"request": {"model": "models/gemini-2.5-pro", "contents": inner["contents"]}}, bearer).json()
    assert counted["totalTokens"] == count_tokens("Check: `uname -a`") + 6
    entries = read_log(server.log)
    assert [(e["api"], e["stream"], e["status"]) for e in entries] == [
        ("gemini.code_assist", False, 200), ("gemini.code_assist", True, 200), ("gemini.code_assist", False, 401),
        ("gemini.code_assist.loadCodeAssist", False, 200), ("gemini.code_assist.count_tokens", False, 200)]
    assert entries[0]["model_requested"] == "gemini-2.5-pro" and entries[0]["usage"]["promptTokenCount"] == (
        _expected_input(entries[0]))
