"""Realistic LLM calls for the analysis benchmarks: the TLS records an agent's call makes.

Used by ``scripts/bench_analyzers.py``: a prompt of a chosen size (system prompt, tools with
schemas, a history of turns with tool calls and results, the way Claude Code, Codex and Gemini
CLI send them), sent in 16 KiB TLS records, and an answer streamed as SSE (one TLS read per
event, each a chunk of a chunked body) or sent whole (gzip'd JSON). Each call also knows its
*floor*: the bytes a bare ``json.loads`` must read to understand it (the request body and every
SSE ``data`` field, or the decompressed JSON answer).
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass, field

__all__ = ["Call", "anthropic_call", "chat_call", "responses_call", "gemini_gzip_call", "floor_seconds"]

_WORDS = ("the agent reads files runs commands and writes code while the observer records every call process "
          "latency stream socket kernel probe buffer request response answer prompt cache model tool result "
          "output input context window budget careful small change test passes build module function review "
          "patch diff line error retry timeout").split()
KEY = "sk-ant-api03-Zr8wQk2VnT5yLm1XcB7sPd4FgH9jK0aUeIo3RtYu6WqEzA-xyz12AA"


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


@dataclass
class Call:
    """One call as TLS records, and what a bare JSON parse of it reads."""

    name: str
    records: list[tuple[str, bytes]]
    json_texts: list[bytes] = field(default_factory=list)  # what json.loads must read: the floor
    events: int = 0  # SSE events in the answer

    @property
    def wire_bytes(self) -> int:
        return sum(len(b) for _, b in self.records)


def _history(rng: random.Random, size: int, turn: object) -> list[object]:
    out: list[object] = []
    i = total = 0
    while total < size:
        items = turn(rng, i)  # type: ignore[operator]
        out += items
        total += len(json.dumps(items))
        i += 1
    return out


def _tools(rng: random.Random, n: int = 18) -> list[dict[str, object]]:
    return [{"name": f"Tool{i}", "description": _words(rng, 250),
             "schema": {"type": "object", "required": ["command"],
                        "properties": {"command": {"type": "string", "description": _words(rng, 20)},
                                       "timeout": {"type": "number"}}}} for i in range(n)]


def _post(path: str, host: str, body: bytes, extra: str = "") -> list[tuple[str, bytes]]:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n{extra}"
            f"user-agent: bench/1.0\r\ncontent-length: {len(body)}\r\n\r\n").encode()
    req = head + body
    return [("write", req[i:i + 16384]) for i in range(0, len(req), 16384)]


def _sse_answer(events: list[bytes]) -> list[tuple[str, bytes]]:
    recs = [("read", b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")]
    recs += [("read", b"%x\r\n%s\r\n" % (len(e), e)) for e in events]
    recs.append(("read", b"0\r\n\r\n"))
    return recs


def _sse(payload: dict[str, object], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _data_lines(events: list[bytes]) -> list[bytes]:
    return [line[5:] for e in events for line in e.split(b"\n") if line.startswith(b"data:") and
            line[5:].strip() != b"[DONE]"]


def anthropic_call(prompt_bytes: int, deltas: int, tool_call: bool = False, seed: int = 1) -> Call:
    """Claude Code's shape: a cached system prompt, 18 tools, turns of text, tool_use and tool_result."""
    rng = random.Random(seed)

    def turn(rng: random.Random, i: int) -> list[object]:
        tid = f"toolu_{i:020d}"
        return [{"role": "user", "content": [{"type": "text", "text": _words(rng, 200)}]},
                {"role": "assistant", "content": [{"type": "text", "text": _words(rng, 30)},
                                                  {"type": "tool_use", "id": tid, "name": "Bash",
                                                   "input": {"command": "ls -la /tmp"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid,
                                              "content": _words(rng, 400)}]}]

    tools = [{"name": t["name"], "description": t["description"], "input_schema": t["schema"]} for t in _tools(rng)]
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
            "system": [{"type": "text", "text": "You are Claude Code. " + _words(rng, 1500),
                        "cache_control": {"type": "ephemeral"}}],
            "tools": tools, "messages": [], "metadata": {"user_id": "user_abc"}}
    body["messages"] = _history(rng, max(0, prompt_bytes - len(json.dumps(body))), turn) + [
        {"role": "user", "content": "go on"}]
    req = json.dumps(body).encode()
    ev = [_sse({"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929", "content": [],
        "stop_reason": None, "usage": {"input_tokens": 12, "cache_creation_input_tokens": 60000,
                                       "cache_read_input_tokens": 0, "output_tokens": 1}}}, "message_start"),
          _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
               "content_block_start"),
          _sse({"type": "ping"}, "ping")]
    text_deltas = deltas - (8 if tool_call else 0)
    ev += [_sse({"type": "content_block_delta", "index": 0,
                 "delta": {"type": "text_delta", "text": " " + _words(rng, 3)}}, "content_block_delta")
           for _ in range(text_deltas)]
    ev.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    if tool_call:
        ev.append(_sse({"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_01abc", "name": "Bash", "input": {}}}, "content_block_start"))
        args = json.dumps({"command": "grep -rn 'def main' . | head -50", "timeout": 120000})
        ev += [_sse({"type": "content_block_delta", "index": 1,
                     "delta": {"type": "input_json_delta", "partial_json": args[i:i + len(args) // 8 + 1]}},
                    "content_block_delta") for i in range(0, len(args), len(args) // 8 + 1)]
        ev.append(_sse({"type": "content_block_stop", "index": 1}, "content_block_stop"))
    ev.append(_sse({"type": "message_delta", "delta": {"stop_reason": "tool_use" if tool_call else "end_turn"},
                    "usage": {"output_tokens": 3 * deltas}}, "message_delta"))
    ev.append(_sse({"type": "message_stop"}, "message_stop"))
    recs = _post("/v1/messages?beta=true", "api.anthropic.com", req, f"x-api-key: {KEY}\r\n") + _sse_answer(ev)
    return Call(f"anthropic {len(req) // 1000} KB, {len(ev)} events{', tool call' if tool_call else ''}",
                recs, [req] + _data_lines(ev), len(ev))


def chat_call(prompt_bytes: int, deltas: int, seed: int = 2) -> Call:
    """OpenAI Chat Completions, streamed, ending in a tool call (the openai SDK's agents, Qwen Code)."""
    rng = random.Random(seed)

    def turn(rng: random.Random, i: int) -> list[object]:
        cid = f"call_{i:024d}"
        return [{"role": "user", "content": _words(rng, 200)},
                {"role": "assistant", "content": None, "tool_calls": [{"id": cid, "type": "function", "function": {
                    "name": "run_shell_command", "arguments": json.dumps({"command": "ls"})}}]},
                {"role": "tool", "tool_call_id": cid, "content": _words(rng, 400)}]

    tools = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                               "parameters": t["schema"]}} for t in _tools(rng)]
    body = {"model": "gpt-4.1", "stream": True, "stream_options": {"include_usage": True}, "tools": tools,
            "messages": [{"role": "system", "content": _words(rng, 1500)}]}
    body["messages"] += _history(rng, max(0, prompt_bytes - len(json.dumps(body))), turn)  # type: ignore[operator]
    req = json.dumps(body).encode()

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        return _sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1-2025-04-14",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    ev = [chunk({"role": "assistant", "content": ""})]
    ev += [chunk({"content": " " + _words(rng, 3)}) for _ in range(deltas - 6)]
    args = json.dumps({"command": "pytest -q tests/unit"})
    ev.append(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "run_shell_command", "arguments": ""}}]}))
    ev += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 8]}}]}) for i in range(0, 24, 8)]
    ev.append(chunk({}, "tool_calls"))
    ev.append(_sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1",
                    "choices": [], "usage": {"prompt_tokens": 60000, "completion_tokens": 3 * deltas,
                                             "total_tokens": 60000 + 3 * deltas}}))
    ev.append(b"data: [DONE]\n\n")
    recs = _post("/v1/chat/completions", "api.openai.com", req, "authorization: Bearer sk-proj-abcdefghij1234567890\r\n")
    return Call(f"openai.chat {len(req) // 1000} KB, {len(ev)} events, tool call", recs + _sse_answer(ev),
                [req] + _data_lines(ev), len(ev))


def responses_call(prompt_bytes: int, deltas: int, seed: int = 3) -> Call:
    """OpenAI Responses, streamed (Codex over HTTP)."""
    rng = random.Random(seed)

    def turn(rng: random.Random, i: int) -> list[object]:
        cid = f"call_{i:024d}"
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": _words(rng, 200)}]},
                {"type": "function_call", "call_id": cid, "name": "shell", "arguments": json.dumps({"cmd": ["ls"]})},
                {"type": "function_call_output", "call_id": cid, "output": _words(rng, 400)}]

    tools = [{"type": "function", "name": t["name"], "description": t["description"], "parameters": t["schema"]}
             for t in _tools(rng)]
    body = {"model": "gpt-5-codex", "stream": True, "instructions": _words(rng, 1500), "tools": tools, "input": []}
    body["input"] = _history(rng, max(0, prompt_bytes - len(json.dumps(body))), turn)
    req = json.dumps(body).encode()
    seq = iter(range(1 << 30))

    def ev_(kind: str, **data: object) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **data}, kind)

    resp = {"id": "resp_1", "object": "response", "status": "in_progress", "model": "gpt-5-codex", "output": []}
    ev = [ev_("response.created", response=resp), ev_("response.in_progress", response=resp),
          ev_("response.output_item.added", output_index=0, item={"id": "msg_1", "type": "message", "content": []})]
    ev += [ev_("response.output_text.delta", item_id="msg_1", output_index=0, content_index=0,
               delta=" " + _words(rng, 3)) for _ in range(deltas - 5)]
    ev.append(ev_("response.output_item.done", output_index=0, item={"id": "msg_1", "type": "message", "content": [
        {"type": "output_text", "text": "done"}]}))
    ev.append(ev_("response.completed", response={**resp, "status": "completed", "usage": {
        "input_tokens": 60000, "output_tokens": 3 * deltas, "input_tokens_details": {"cached_tokens": 50000}}}))
    recs = _post("/v1/responses", "api.openai.com", req, "authorization: Bearer sk-proj-abcdefghij1234567890\r\n")
    return Call(f"openai.responses {len(req) // 1000} KB, {len(ev)} events", recs + _sse_answer(ev),
                [req] + _data_lines(ev), len(ev))


def gemini_gzip_call(prompt_bytes: int, answer_words: int, seed: int = 4) -> Call:
    """Gemini generateContent answered whole, gzip'd (Gemini CLI's non-streamed calls)."""
    rng = random.Random(seed)

    def turn(rng: random.Random, i: int) -> list[object]:
        return [{"role": "user", "parts": [{"text": _words(rng, 200)}]},
                {"role": "model", "parts": [{"functionCall": {"name": "run_shell_command", "args": {"command": "ls"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "run_shell_command",
                                                                 "response": {"output": _words(rng, 400)}}}]}]

    tools = [{"functionDeclarations": [{"name": t["name"], "description": t["description"],
                                        "parameters": t["schema"]} for t in _tools(rng)]}]
    body = {"systemInstruction": {"parts": [{"text": _words(rng, 1500)}]}, "tools": tools, "contents": []}
    body["contents"] = _history(rng, max(0, prompt_bytes - len(json.dumps(body))), turn)
    req = json.dumps(body).encode()
    answer = json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": _words(rng, answer_words)}]},
                                         "finishReason": "STOP"}],
                         "usageMetadata": {"promptTokenCount": 60000, "candidatesTokenCount": answer_words},
                         "modelVersion": "gemini-2.5-pro", "responseId": "r1"}).encode()
    z = gzip.compress(answer)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(z)
    resp = head + z
    recs = _post("/v1beta/models/gemini-2.5-pro:generateContent", "generativelanguage.googleapis.com", req,
                 "x-goog-api-key: AIzaSyD4fakeFakeFake1234567890abcdEFGH\r\n")
    recs += [("read", resp[i:i + 16384]) for i in range(0, len(resp), 16384)]
    return Call(f"gemini {len(req) // 1000} KB, gzip'd {len(answer) // 1000} KB answer", recs, [req, answer], 0)


def floor_seconds(call: Call, timer: object) -> float:
    """CPU time of a bare ``json.loads`` of every JSON text the call carries."""
    t = timer()  # type: ignore[operator]
    for text in call.json_texts:
        json.loads(text)
    return timer() - t  # type: ignore[operator, no-any-return]
