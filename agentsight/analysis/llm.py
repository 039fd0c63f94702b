"""LLM API calls recognised in HTTP exchanges: one ``llm.call`` record per exchange.

Recognised APIs (``api`` field), streaming (SSE) and not:

- ``openai.chat``: ``POST .../chat/completions`` (OpenAI and the many compatible servers)
- ``openai.responses``: ``POST .../responses``
- ``anthropic.messages``: ``POST .../v1/messages``
- ``gemini.generate``: ``POST .../models/{model}:generateContent`` and
  ``:streamGenerateContent`` (``alt=sse`` or the streamed JSON array)
- ``gemini.code_assist``: Gemini CLI logged in with Google, ``POST .../v1internal:generateContent``
  and ``:streamGenerateContent?alt=sse`` on Code Assist (``cloudcode-pa.googleapis.com``): the
  Gemini request wrapped as ``{model, project, request}``, each answer as ``{response, traceId}``
- ``openai.responses`` over WebSocket (Codex): after a websocket upgrade of a ``.../responses``
  path, a client ``response.create`` message opens a call and the server's Responses events,
  one per message, fill it up to ``response.completed``/``failed``/``incomplete`` or ``error``
  (``transport: "websocket"``; :func:`extract_ws_call`)

Token usage is normalised the way the OpenTelemetry GenAI conventions define it:
``input_tokens`` counts *every* input token, cached or not (Anthropic reports
cache reads/writes on top of ``input_tokens``, so they are added; OpenAI and
Gemini already include them). ``output_tokens`` includes reasoning tokens
(Gemini reports thoughts apart, so they are added). A count the response did
not carry is ``None`` (unknown), never 0. The provider's own usage object is
kept in ``usage.raw``. The full record layout is in ``docs/analyzers.md``.

:func:`extract_call` is the pure function (exchange dict in, record out);
:class:`LlmCalls` is the stage logic around it.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from agentsight.analysis.httpstream import header_value
from agentsight.analysis.redact import redact_value
from agentsight.analysis.sse import SseEvent, as_bytes, clean_timeline, parse_sse
from agentsight.analysis.websocket import OP_CLOSE
from agentsight.event import Event, repair

__all__ = ["LlmCalls", "LlmStats", "extract_call", "extract_ws_call", "is_ws_call_start", "ws_event", "detect_api",
           "provider_for_host", "estimate_cost"]

_GEMINI_PATH = re.compile(r"/models/([^/:]+):(generateContent|streamGenerateContent)$")
_CODE_ASSIST_PATH = re.compile(r"/v1internal:(generateContent|streamGenerateContent)$")

# Host suffix -> provider id (the ids genai-prices uses where it knows the provider).
_HOST_PROVIDERS = [
    ("api.openai.com", "openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "google"),
    ("aiplatform.googleapis.com", "google"),
    ("cloudcode-pa.googleapis.com", "google"),
    ("openai.azure.com", "azure"),
    ("services.ai.azure.com", "azure"),
    ("openrouter.ai", "openrouter"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
    ("api.mistral.ai", "mistral"),
    ("api.x.ai", "x-ai"),
    ("api.together.xyz", "together"),
    ("api.fireworks.ai", "fireworks"),
    ("api.githubcopilot.com", "github-copilot"),
]
_API_DEFAULT_PROVIDER = {
    "openai.chat": "openai",
    "openai.responses": "openai",
    "anthropic.messages": "anthropic",
    "gemini.generate": "google",
    "gemini.code_assist": "google",
}
_ERROR_BODY_MAX = 4096


def provider_for_host(host: str | None, api: str | None = None) -> str:
    """Provider id for a host (``api.anthropic.com`` -> ``anthropic``); unknown hosts give the host."""
    h = (host or "").split(":")[0].lower()
    for suffix, provider in _HOST_PROVIDERS:
        if h == suffix or h.endswith("." + suffix):
            return provider
    return h or _API_DEFAULT_PROVIDER.get(api or "", "unknown")


def detect_api(method: str | None, path: str | None) -> str | None:
    """Which LLM API a request path is, or None."""
    if (method or "").upper() != "POST" or not path:
        return None
    if path.endswith("/chat/completions"):
        return "openai.chat"
    if path.endswith("/responses"):
        return "openai.responses"
    if path.endswith("/messages") and "/v1/" in path:
        return "anthropic.messages"
    if _GEMINI_PATH.search(path):
        return "gemini.generate"
    if _CODE_ASSIST_PATH.search(path):
        return "gemini.code_assist"
    return None


# --------------------------------------------------------------------------- the record


@dataclass
class _Call:
    """What is being assembled for one call (fields as in the emitted record)."""

    api: str
    model_requested: str | None = None
    model: str | None = None
    response_id: str | None = None
    stream: bool = False
    system: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    usage_raw: dict[str, Any] | None = None
    usage: dict[str, int | None] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    first_token_ts: int | None = None
    events: int = 0
    ended: bool = False  # the stream reached its API's end marker ([DONE], message_stop...)
    notes: list[str] = field(default_factory=list)

    def token(self, ts: int | None) -> None:
        if self.first_token_ts is None and ts is not None:
            self.first_token_ts = ts


def _json(data: Any) -> Any:
    if isinstance(data, dict | list):
        return data
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode("utf-8", "replace")
    if not isinstance(data, str) or not data.strip():
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _args_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, separators=(",", ":")) if v is not None else ""


def _tool_call(id_: Any, name: Any, arguments: Any) -> dict[str, Any]:
    text = _args_text(arguments)
    parsed = _json(text) if text else None
    return {"id": _str(id_), "name": _str(name), "arguments": text, "input": parsed}


def _custom_tool_call(id_: Any, name: Any, text: Any) -> dict[str, Any]:
    """A free-form ("custom") tool call: its input is plain text, not JSON arguments."""
    raw = _str(text) or ""
    return {"id": _str(id_), "name": _str(name), "arguments": raw, "input": raw}


def _message(role: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    text = "\n".join(p["text"] for p in parts if p.get("type") == "text" and p.get("text"))
    return {"role": role, "content": text, "parts": parts}


def _sum_known(*values: int | None) -> int | None:
    """Sum of the known values; None if the first (the base count) is unknown."""
    if values[0] is None:
        return None
    return sum(v for v in values if v is not None)


def _finish_usage(call: _Call, input_tokens: int | None, output_tokens: int | None, cache_read: int | None,
                  cache_write: int | None, reasoning: int | None) -> None:
    uncached = None
    if input_tokens is not None:
        uncached = input_tokens - (cache_read or 0) - (cache_write or 0)
    call.usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": reasoning,
        "uncached_input_tokens": uncached,
        "total_tokens": input_tokens + output_tokens
        if input_tokens is not None and output_tokens is not None
        else None,
    }


# --------------------------------------------------------------------------- OpenAI Chat Completions


def _openai_content_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts: list[dict[str, Any]] = []
    for p in _list(content):
        p = _dict(p)
        kind = p.get("type")
        if kind in ("text", "input_text", "output_text"):
            parts.append({"type": "text", "text": _str(p.get("text")) or ""})
        elif kind in ("image_url", "input_image"):
            parts.append({"type": "image"})
        elif kind in ("refusal",):
            parts.append({"type": "text", "text": _str(p.get("refusal")) or ""})
        elif kind:
            parts.append({"type": str(kind)})
    return parts


def _chat_request(body: dict[str, Any], call: _Call) -> None:
    system: list[str] = []
    for m in _list(body.get("messages")):
        m = _dict(m)
        role = _str(m.get("role")) or "user"
        parts = _openai_content_parts(m.get("content"))
        if role in ("system", "developer"):
            system.extend(p["text"] for p in parts if p.get("type") == "text")
            continue
        for tc in _list(m.get("tool_calls")):
            tc = _dict(tc)
            fn = _dict(tc.get("function"))
            parts.append({"type": "tool_call", **_tool_call(tc.get("id"), fn.get("name"), fn.get("arguments"))})
        if role == "tool":
            text = "\n".join(p.get("text", "") for p in parts if p.get("type") == "text")
            parts = [{"type": "tool_result", "id": _str(m.get("tool_call_id")), "content": text}]
        call.messages.append(_message(role, parts))
    call.system = "\n\n".join(system) if system else None
    for t in _list(body.get("tools")):
        t = _dict(t)
        fn = _dict(t.get("function")) or t
        call.tools.append({"name": _str(fn.get("name")), "description": _str(fn.get("description")),
                           "parameters": fn.get("parameters")})


def _openai_usage(call: _Call, usage: Any, inp: str = "prompt", out: str = "completion") -> None:
    """OpenAI usage: cached tokens inside input, reasoning inside output.

    Chat Completions names the two sides prompt/completion, Responses input/output.
    """
    u = _dict(usage)
    if not u:
        return
    call.usage_raw = u
    _finish_usage(
        call,
        _int(u.get(f"{inp}_tokens")),
        _int(u.get(f"{out}_tokens")),
        _int(_dict(u.get(f"{inp}_tokens_details")).get("cached_tokens")),
        None,
        _int(_dict(u.get(f"{out}_tokens_details")).get("reasoning_tokens")),
    )


def _chat_response(body: Any, call: _Call, ts: int | None) -> None:
    b = _dict(body)
    call.model = _str(b.get("model")) or call.model
    call.response_id = _str(b.get("id"))
    choices = _list(b.get("choices"))
    if choices:
        c = _dict(choices[0])
        msg = _dict(c.get("message"))
        content = msg.get("content")
        if isinstance(content, str) and content:
            call.output.append(content)
        for key in ("reasoning_content", "reasoning"):
            if isinstance(msg.get(key), str) and msg[key]:
                call.reasoning.append(msg[key])
        for tc in _list(msg.get("tool_calls")):
            tc = _dict(tc)
            fn = _dict(tc.get("function"))
            call.tool_calls.append(_tool_call(tc.get("id"), fn.get("name"), fn.get("arguments")))
        call.stop_reason = _str(c.get("finish_reason"))
        call.token(ts)
    _openai_usage(call, b.get("usage"))


def _chat_stream(events: list[SseEvent], call: _Call) -> None:
    calls: dict[int, dict[str, Any]] = {}
    for ev in events:
        if ev.done:
            call.ended = True
            continue
        chunk = _dict(_json(ev.data))
        if not chunk:
            continue
        call.events += 1
        if "error" in chunk:
            call.error = _error_from(chunk)
            continue
        call.model = _str(chunk.get("model")) or call.model
        call.response_id = call.response_id or _str(chunk.get("id"))
        for c in _list(chunk.get("choices")):
            c = _dict(c)
            if c.get("index", 0) != 0:
                continue
            delta = _dict(c.get("delta"))
            if isinstance(delta.get("content"), str) and delta["content"]:
                call.output.append(delta["content"])
                call.token(ev.ts_ns)
            for key in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(key), str) and delta[key]:
                    call.reasoning.append(delta[key])
                    call.token(ev.ts_ns)
            for tc in _list(delta.get("tool_calls")):
                tc = _dict(tc)
                slot = calls.setdefault(_int(tc.get("index")) or 0, {"id": None, "name": None, "args": []})
                fn = _dict(tc.get("function"))
                slot["id"] = slot["id"] or _str(tc.get("id"))
                slot["name"] = slot["name"] or _str(fn.get("name"))
                if isinstance(fn.get("arguments"), str):
                    slot["args"].append(fn["arguments"])
                call.token(ev.ts_ns)
            if c.get("finish_reason"):
                call.stop_reason = _str(c.get("finish_reason"))
        if chunk.get("usage"):
            _openai_usage(call, chunk.get("usage"))
    for _, slot in sorted(calls.items()):
        call.tool_calls.append(_tool_call(slot["id"], slot["name"], "".join(slot["args"])))


# --------------------------------------------------------------------------- OpenAI Responses


def _responses_input_item(item: Any, call: _Call) -> None:
    if isinstance(item, str):
        call.messages.append(_message("user", [{"type": "text", "text": item}]))
        return
    it = _dict(item)
    kind = it.get("type")
    if kind in (None, "message"):
        role = _str(it.get("role")) or "user"
        parts = _openai_content_parts(it.get("content"))
        if role in ("system", "developer"):
            text = "\n".join(p["text"] for p in parts if p.get("type") == "text")
            call.system = f"{call.system}\n\n{text}" if call.system else text
            return
        call.messages.append(_message(role, parts))
    elif kind == "function_call":
        part = {"type": "tool_call", **_tool_call(it.get("call_id"), it.get("name"), it.get("arguments"))}
        call.messages.append(_message("assistant", [part]))
    elif kind == "custom_tool_call":
        part = {"type": "tool_call", **_custom_tool_call(it.get("call_id"), it.get("name"), it.get("input"))}
        call.messages.append(_message("assistant", [part]))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        out = it.get("output")
        part = {"type": "tool_result", "id": _str(it.get("call_id")), "content": _args_text(out)}
        call.messages.append(_message("tool", [part]))
    elif kind == "reasoning":
        text = "\n".join(_str(_dict(s).get("text")) or "" for s in _list(it.get("summary")))
        call.messages.append(_message("assistant", [{"type": "reasoning", "text": text}]))
    else:
        call.messages.append(_message(_str(it.get("role")) or "user", [{"type": str(kind)}]))


def _responses_request(body: dict[str, Any], call: _Call) -> None:
    call.system = _str(body.get("instructions"))
    inp = body.get("input")
    for item in [inp] if isinstance(inp, str) else _list(inp):
        _responses_input_item(item, call)
    for t in _list(body.get("tools")):
        t = _dict(t)
        if t.get("type", "function") == "function":
            call.tools.append({"name": _str(t.get("name")), "description": _str(t.get("description")),
                               "parameters": t.get("parameters")})
        else:
            call.tools.append({"name": _str(t.get("name")) or _str(t.get("type")), "description": None,
                               "parameters": None})


def _responses_output(items: list[Any], call: _Call) -> None:
    for item in items:
        it = _dict(item)
        kind = it.get("type")
        if kind == "message":
            for p in _list(it.get("content")):
                p = _dict(p)
                if p.get("type") == "output_text" and isinstance(p.get("text"), str):
                    call.output.append(p["text"])
                elif p.get("type") == "refusal" and isinstance(p.get("refusal"), str):
                    call.output.append(p["refusal"])
        elif kind == "reasoning":
            for s in _list(it.get("summary")) + _list(it.get("content")):
                if isinstance(_dict(s).get("text"), str):
                    call.reasoning.append(_dict(s)["text"])
        elif kind == "function_call":
            call.tool_calls.append(_tool_call(it.get("call_id"), it.get("name"), it.get("arguments")))
        elif kind == "custom_tool_call":
            call.tool_calls.append(_custom_tool_call(it.get("call_id"), it.get("name"), it.get("input")))


def _responses_status(call: _Call, resp: dict[str, Any]) -> None:
    call.model = _str(resp.get("model")) or call.model
    call.response_id = _str(resp.get("id")) or call.response_id
    status = _str(resp.get("status"))
    if status == "incomplete":
        call.stop_reason = _str(_dict(resp.get("incomplete_details")).get("reason")) or status
    elif status:
        call.stop_reason = status
    if resp.get("error"):
        call.error = {"type": _str(_dict(resp["error"]).get("code")),
                      "message": _str(_dict(resp["error"]).get("message"))}
    _openai_usage(call, resp.get("usage"), "input", "output")


def _responses_response(body: Any, call: _Call, ts: int | None) -> None:
    b = _dict(body)
    _responses_output(_list(b.get("output")), call)
    _responses_status(call, b)
    call.token(ts)


def _responses_stream(events: list[SseEvent], call: _Call) -> None:
    items: dict[int, dict[str, Any]] = {}
    text: dict[int, list[str]] = {}
    reasoning: dict[int, list[str]] = {}
    args: dict[int, list[str]] = {}
    free: dict[int, list[str]] = {}  # free-form (custom) tool input
    final: dict[str, Any] | None = None
    for ev in events:
        d = _dict(_json(ev.data))
        if not d:
            continue
        call.events += 1
        kind = _str(d.get("type")) or ev.event
        idx = _int(d.get("output_index")) or 0
        if kind in ("response.created", "response.in_progress"):
            _responses_status(call, _dict(d.get("response")))
        elif kind == "response.output_item.added":
            items[idx] = _dict(d.get("item"))
        elif kind == "response.output_text.delta":
            text.setdefault(idx, []).append(_str(d.get("delta")) or "")
            call.token(ev.ts_ns)
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            reasoning.setdefault(idx, []).append(_str(d.get("delta")) or "")
            call.token(ev.ts_ns)
        elif kind == "response.function_call_arguments.delta":
            args.setdefault(idx, []).append(_str(d.get("delta")) or "")
            call.token(ev.ts_ns)
        elif kind == "response.custom_tool_call_input.delta":
            free.setdefault(idx, []).append(_str(d.get("delta")) or "")
            call.token(ev.ts_ns)
        elif kind == "response.output_item.done":
            items[idx] = _dict(d.get("item"))  # the finished item is authoritative
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            final = _dict(d.get("response"))
            call.ended = True
        elif kind == "error":
            # SSE carries {code, message}; a WebSocket error event wraps them: {status, error: {type, message}}
            inner = _dict(d.get("error"))
            call.error = {"type": _str(d.get("code")) or _str(inner.get("type")) or _str(inner.get("code")),
                          "message": _str(d.get("message")) or _str(inner.get("message"))}
    # Items never finished (stream cut short) are rebuilt from their deltas.
    for idx, chunks in args.items():
        it = items.setdefault(idx, {"type": "function_call"})
        if not it.get("arguments"):
            it["arguments"] = "".join(chunks)
    for idx, chunks in free.items():
        it = items.setdefault(idx, {"type": "custom_tool_call"})
        if not it.get("input"):
            it["input"] = "".join(chunks)
    for idx, chunks in text.items():
        it = items.setdefault(idx, {"type": "message"})
        if not it.get("content"):
            it["content"] = [{"type": "output_text", "text": "".join(chunks)}]
    for idx, chunks in reasoning.items():
        it = items.setdefault(idx, {"type": "reasoning"})
        if not it.get("summary") and not it.get("content"):
            it["summary"] = [{"type": "summary_text", "text": "".join(chunks)}]
    if not items and final:
        _responses_output(_list(final.get("output")), call)
    else:
        _responses_output([items[i] for i in sorted(items)], call)
    if final:
        _responses_status(call, final)


# --------------------------------------------------------------------------- Anthropic Messages


def _anthropic_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts: list[dict[str, Any]] = []
    for b in _list(content):
        b = _dict(b)
        kind = b.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _str(b.get("text")) or ""})
        elif kind in ("tool_use", "server_tool_use"):
            parts.append({"type": "tool_call", **_tool_call(b.get("id"), b.get("name"), b.get("input"))})
        elif kind == "tool_result":
            inner = b.get("content")
            text = inner if isinstance(inner, str) else "\n".join(
                p.get("text", "") for p in _anthropic_blocks(inner) if p.get("type") == "text")
            parts.append({"type": "tool_result", "id": _str(b.get("tool_use_id")), "content": text,
                          "is_error": b.get("is_error") if isinstance(b.get("is_error"), bool) else None})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "text": _str(b.get("thinking")) or ""})
        elif kind in ("image", "document"):
            parts.append({"type": str(kind)})
        elif kind:
            parts.append({"type": str(kind)})
    return parts


def _anthropic_request(body: dict[str, Any], call: _Call) -> None:
    system = body.get("system")
    if isinstance(system, str):
        call.system = system
    elif isinstance(system, list):
        call.system = "\n\n".join(_str(_dict(b).get("text")) or "" for b in system)
    for m in _list(body.get("messages")):
        m = _dict(m)
        call.messages.append(_message(_str(m.get("role")) or "user", _anthropic_blocks(m.get("content"))))
    for t in _list(body.get("tools")):
        t = _dict(t)
        call.tools.append({"name": _str(t.get("name")), "description": _str(t.get("description")),
                           "parameters": t.get("input_schema")})


def _anthropic_usage(call: _Call, u: dict[str, Any]) -> None:
    if not u:
        return
    call.usage_raw = u
    base = _int(u.get("input_tokens"))
    cache_read = _int(u.get("cache_read_input_tokens"))
    cache_write = _int(u.get("cache_creation_input_tokens"))
    # Anthropic's input_tokens excludes cached tokens; the normalised count includes them.
    _finish_usage(call, _sum_known(base, cache_read, cache_write), _int(u.get("output_tokens")),
                  cache_read, cache_write, None)


def _anthropic_response(body: Any, call: _Call, ts: int | None) -> None:
    b = _dict(body)
    call.model = _str(b.get("model")) or call.model
    call.response_id = _str(b.get("id"))
    for p in _anthropic_blocks(b.get("content")):
        if p["type"] == "text":
            call.output.append(p["text"])
        elif p["type"] == "reasoning":
            call.reasoning.append(p["text"])
        elif p["type"] == "tool_call":
            call.tool_calls.append({k: v for k, v in p.items() if k != "type"})
    call.stop_reason = _str(b.get("stop_reason"))
    _anthropic_usage(call, _dict(b.get("usage")))
    call.token(ts)


def _anthropic_stream(events: list[SseEvent], call: _Call) -> None:
    blocks: dict[int, dict[str, Any]] = {}
    usage: dict[str, Any] = {}
    for ev in events:
        d = _dict(_json(ev.data))
        if not d:
            continue
        call.events += 1
        kind = _str(d.get("type")) or ev.event
        if kind == "message_start":
            msg = _dict(d.get("message"))
            call.model = _str(msg.get("model")) or call.model
            call.response_id = _str(msg.get("id"))
            usage.update(_dict(msg.get("usage")))
        elif kind == "content_block_start":
            block = dict(_dict(d.get("content_block")))
            block["_text"] = [_str(block.get("text")) or _str(block.get("thinking")) or ""]
            block["_json"] = []
            blocks[_int(d.get("index")) or 0] = block
        elif kind == "content_block_delta":
            block = blocks.setdefault(_int(d.get("index")) or 0, {"type": "text", "_text": [], "_json": []})
            delta = _dict(d.get("delta"))
            dk = delta.get("type")
            if dk == "text_delta":
                block["_text"].append(_str(delta.get("text")) or "")
            elif dk == "thinking_delta":
                block["_text"].append(_str(delta.get("thinking")) or "")
            elif dk == "input_json_delta":
                block["_json"].append(_str(delta.get("partial_json")) or "")
            call.token(ev.ts_ns)
        elif kind == "message_delta":
            delta = _dict(d.get("delta"))
            call.stop_reason = _str(delta.get("stop_reason")) or call.stop_reason
            # Counts in message_delta are cumulative and win over message_start's.
            usage.update({k: v for k, v in _dict(d.get("usage")).items() if v is not None})
        elif kind == "message_stop":
            call.ended = True
        elif kind == "error":
            call.error = _error_from(d)
    for _, b in sorted(blocks.items()):
        btype = b.get("type")
        if btype == "text":
            call.output.append("".join(b["_text"]))
        elif btype == "thinking":
            call.reasoning.append("".join(b["_text"]))
        elif btype in ("tool_use", "server_tool_use"):
            args = "".join(b["_json"])
            if not args and b.get("input"):
                args = _args_text(b.get("input"))
            call.tool_calls.append(_tool_call(b.get("id"), b.get("name"), args or "{}"))
    _anthropic_usage(call, usage)


# --------------------------------------------------------------------------- Gemini


def _gemini_parts(parts: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in _list(parts):
        p = _dict(p)
        if isinstance(p.get("text"), str):
            out.append({"type": "reasoning" if p.get("thought") else "text", "text": p["text"]})
        elif "functionCall" in p:
            fc = _dict(p.get("functionCall"))
            out.append({"type": "tool_call", **_tool_call(fc.get("id"), fc.get("name"), fc.get("args"))})
        elif "functionResponse" in p:
            fr = _dict(p.get("functionResponse"))
            out.append({"type": "tool_result", "id": _str(fr.get("id")) or _str(fr.get("name")),
                        "content": _args_text(fr.get("response"))})
        elif "inlineData" in p or "fileData" in p:
            out.append({"type": "image"})
    return out


def _gemini_request(body: dict[str, Any], call: _Call) -> None:
    si = _dict(body.get("systemInstruction") or body.get("system_instruction"))
    if si:
        call.system = "\n".join(p["text"] for p in _gemini_parts(si.get("parts")) if p["type"] == "text")
    for c in _list(body.get("contents")):
        c = _dict(c)
        role = _str(c.get("role")) or "user"
        call.messages.append(_message("assistant" if role == "model" else role, _gemini_parts(c.get("parts"))))
    for t in _list(body.get("tools")):
        for fd in _list(_dict(t).get("functionDeclarations") or _dict(t).get("function_declarations")):
            fd = _dict(fd)
            call.tools.append({"name": _str(fd.get("name")), "description": _str(fd.get("description")),
                               "parameters": fd.get("parameters") or fd.get("parametersJsonSchema")})


def _gemini_chunk(chunk: dict[str, Any], call: _Call, ts: int | None) -> None:
    call.events += 1
    if "error" in chunk:
        call.error = _error_from(chunk)
        return
    call.model = _str(chunk.get("modelVersion")) or call.model
    call.response_id = _str(chunk.get("responseId")) or call.response_id
    cands = _list(chunk.get("candidates"))
    if cands:
        c = _dict(cands[0])
        for p in _gemini_parts(_dict(c.get("content")).get("parts")):
            if p["type"] == "text":
                call.output.append(p["text"])
            elif p["type"] == "reasoning":
                call.reasoning.append(p["text"])
            elif p["type"] == "tool_call":
                call.tool_calls.append({k: v for k, v in p.items() if k != "type"})
            call.token(ts)
        call.stop_reason = _str(c.get("finishReason")) or call.stop_reason
        call.ended = call.ended or bool(c.get("finishReason"))
    u = _dict(chunk.get("usageMetadata"))
    if u:
        call.usage_raw = u
        thoughts = _int(u.get("thoughtsTokenCount"))
        _finish_usage(
            call,
            _sum_known(_int(u.get("promptTokenCount")), _int(u.get("toolUsePromptTokenCount"))),
            _sum_known(_int(u.get("candidatesTokenCount")), thoughts),
            _int(u.get("cachedContentTokenCount")),
            None,
            thoughts,
        )


def _gemini_response(body: Any, call: _Call, ts: int | None) -> None:
    for chunk in body if isinstance(body, list) else [body]:  # a streamed JSON array, or one object
        _gemini_chunk(_dict(chunk), call, ts)


def _gemini_stream(events: list[SseEvent], call: _Call) -> None:
    for ev in events:
        chunk = _dict(_json(ev.data))
        if chunk:
            _gemini_chunk(chunk, call, ev.ts_ns)


# --------------------------------------------------------------------------- Gemini Code Assist
# The same Gemini payloads in an envelope: the request is {model, project, user_prompt_id, request},
# each answer (or stream chunk) {response, traceId}; the trace id is what Gemini CLI keeps as the
# response id. Errors (HTTP or in-stream) come unwrapped, as Google RPC errors.


def _code_assist_request(body: dict[str, Any], call: _Call) -> None:
    _gemini_request(_dict(body.get("request")), call)


def _code_assist_unwrap(chunk: Any) -> Any:
    c = _dict(chunk)
    inner = c.get("response")
    if not isinstance(inner, dict):
        return chunk
    if not inner.get("responseId") and isinstance(c.get("traceId"), str):
        inner = {**inner, "responseId": c["traceId"]}
    return inner


def _code_assist_response(body: Any, call: _Call, ts: int | None) -> None:
    _gemini_response([_code_assist_unwrap(c) for c in body] if isinstance(body, list) else _code_assist_unwrap(body),
                     call, ts)


def _code_assist_stream(events: list[SseEvent], call: _Call) -> None:
    for ev in events:
        chunk = _dict(_code_assist_unwrap(_json(ev.data)))
        if chunk:
            _gemini_chunk(chunk, call, ev.ts_ns)


# --------------------------------------------------------------------------- dispatch

_Parser = Callable[[Any, _Call, int | None], None]
_REQUEST: dict[str, Callable[[dict[str, Any], _Call], None]] = {
    "openai.chat": _chat_request,
    "openai.responses": _responses_request,
    "anthropic.messages": _anthropic_request,
    "gemini.generate": _gemini_request,
    "gemini.code_assist": _code_assist_request,
}
_RESPONSE: dict[str, _Parser] = {
    "openai.chat": _chat_response,
    "openai.responses": _responses_response,
    "anthropic.messages": _anthropic_response,
    "gemini.generate": _gemini_response,
    "gemini.code_assist": _code_assist_response,
}
_STREAM: dict[str, Callable[[list[SseEvent], _Call], None]] = {
    "openai.chat": _chat_stream,
    "openai.responses": _responses_stream,
    "anthropic.messages": _anthropic_stream,
    "gemini.generate": _gemini_stream,
    "gemini.code_assist": _code_assist_stream,
}


def _error_from(body: Any) -> dict[str, Any]:
    b = _dict(body)
    err = b.get("error")
    if isinstance(err, dict):
        return {"type": _str(err.get("type")) or _str(err.get("status")) or _str(err.get("code")),
                "message": _str(err.get("message"))}
    if isinstance(err, str):
        return {"type": None, "message": err}
    return {"type": _str(b.get("type")), "message": _str(b.get("message"))}


def _sse_events(resp: dict[str, Any]) -> list[SseEvent]:
    sse = resp.get("sse")
    if isinstance(sse, dict) and isinstance(sse.get("events"), list):
        return [SseEvent(_str(e.get("event")) or "message", e["data"], _str(e.get("id")), _int(e.get("retry")),
                         _int(e.get("end")) or 0, _int(e.get("ts_ns")))
                for e in sse["events"] if isinstance(e, dict) and isinstance(e.get("data"), str)]
    return parse_sse(as_bytes(resp.get("body")), resp.get("timeline"))


def _request_call(api: str, path: str, req_body: Any) -> _Call:
    """A call as its request describes it: the model asked for, the prompt, the tools."""
    call = _Call(api)
    body = _dict(_json(req_body))
    if api == "gemini.generate":
        m = _GEMINI_PATH.search(path)
        call.model_requested = m.group(1) if m else None
        call.stream = bool(m and m.group(2) == "streamGenerateContent")
    elif api == "gemini.code_assist":
        call.model_requested = _str(body.get("model"))
        call.stream = path.endswith(":streamGenerateContent")
    else:
        call.model_requested = _str(body.get("model"))
        call.stream = body.get("stream") is True
    if not body:
        call.notes.append("request body is not JSON" if req_body else "request body missing")
    else:
        _REQUEST[api](body, call)
    return call


def _body(msg: dict[str, Any]) -> Any:
    return msg.get("body_text") if msg.get("body_text") is not None else msg.get("body")


def extract_call(exchange: dict[str, Any], *, prices: bool = True) -> dict[str, Any] | None:
    """Build the ``llm.call`` record of one ``http.exchange`` data dict; None if not an LLM call."""
    req = exchange.get("request")
    if not isinstance(req, dict):
        return None
    api = detect_api(req.get("method"), req.get("path"))
    if api is None:
        return None
    path = _str(req.get("path")) or ""
    query = parse_qs(_str(req.get("query")) or "")
    call = _request_call(api, path, _body(req))

    resp = exchange.get("response")
    status: int | None = None
    if isinstance(resp, dict):
        status = _int(resp.get("status_code"))
        ctype = (_str(resp.get("content_type")) or "").lower()
        if ctype.startswith("text/event-stream"):
            call.stream = True
            _STREAM[api](_sse_events(resp), call)
        else:
            rbody = _json(_body(resp))
            if status is not None and status >= 400:
                call.error = _error_from(rbody)
            elif rbody is not None:
                timeline = clean_timeline(resp.get("timeline"))
                first_body_ts = timeline[0][1] if timeline else _int(resp.get("ts_first_byte_ns"))
                _RESPONSE[api](rbody, call, first_body_ts)
            elif resp.get("body"):
                call.notes.append("response body is not JSON")
        if status is not None and status >= 400 and call.error is not None:
            text = _str(resp.get("body_text"))
            call.error["body"] = text[:_ERROR_BODY_MAX] if text else None
        # An SDK that saw the stream's end marker may close the connection before the
        # chunked body's terminator (openai-python does): the answer is whole all the same.
        if not resp.get("complete", True) and not call.ended:
            call.notes.append(f"response incomplete: {resp.get('error')}")
    else:
        call.notes.append("no response captured")
    if status is not None and status >= 400 and call.error is None:
        call.error = {"type": None, "message": None, "body": _str(_dict(resp).get("body_text"))}
    if call.error is not None:
        call.error["status"] = status
    return _record(call, host=_str(req.get("host")) or _str(exchange.get("host")), path=path,
                   stream=call.stream or "alt" in query and query["alt"] == ["sse"], status=status,
                   user_agent=header_value(req.get("headers"), "user-agent"), conn=exchange.get("conn"),
                   seq=exchange.get("seq"), t_start=_int(exchange.get("ts_request_start_ns")),
                   t_first=_int(exchange.get("ts_response_first_byte_ns")),
                   t_end=_int(exchange.get("ts_response_end_ns")), prices=prices)


def _record(call: _Call, *, host: str | None, path: str, stream: bool, status: int | None,
            user_agent: str | None, conn: Any, seq: Any, t_start: int | None, t_first: int | None,
            t_end: int | None, prices: bool, transport: str = "http") -> dict[str, Any]:
    """The ``llm.call`` record of an assembled call (layout in docs/analyzers.md)."""
    provider = provider_for_host(host, call.api)
    usage = call.usage or {k: None for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                             "cache_write_tokens", "reasoning_tokens", "uncached_input_tokens",
                                             "total_tokens")}
    record: dict[str, Any] = {
        "api": call.api,
        "provider": provider,
        "host": host,
        "endpoint": path,
        "transport": transport,
        "stream": stream,
        "status_code": status,
        "model_requested": call.model_requested,
        "model": call.model or call.model_requested,
        "response_id": call.response_id,
        "system": call.system,
        "messages": call.messages,
        "tools": call.tools,
        "output_text": "".join(call.output),
        "reasoning": "".join(call.reasoning) if call.reasoning else None,
        "tool_calls": call.tool_calls,
        "stop_reason": call.stop_reason,
        "error": call.error,
        "usage": {**usage, "raw": call.usage_raw},
        "cost": None,
        "stream_events": call.events,
        "user_agent": user_agent,
        "conn": conn,
        "seq": seq,
        "ts_request_start_ns": t_start,
        "ts_first_byte_ns": t_first,
        "ts_first_token_ns": call.first_token_ts,
        "ts_end_ns": t_end,
        "ttft_ms": (call.first_token_ts - t_start) / 1e6 if call.first_token_ts and t_start else None,
        "duration_ms": (t_end - t_start) / 1e6 if t_end and t_start else None,
        "notes": call.notes,
    }
    if prices:
        record["cost"] = estimate_cost(provider, host, record["model"], usage, t_start)
    return record


# --------------------------------------------------------------------------- Responses over WebSocket

_WS_ENDS = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})


def is_ws_call_start(message: dict[str, Any]) -> bool:
    """True for an ``http.ws`` record that opens a Responses call: a client ``response.create``.

    The Realtime API has a ``response.create`` too; its paths (``/v1/realtime``) are not ``.../responses``.
    """
    text = message.get("text")
    if message.get("dir") != "write" or not isinstance(text, str) or "response.create" not in text:
        return False
    path = _str(message.get("path"))
    if path is not None and detect_api("POST", path) != "openai.responses":
        return False
    return _dict(_json(text)).get("type") == "response.create"


def ws_event(message: dict[str, Any], ts_ns: int | None) -> SseEvent | None:
    """A server ``http.ws`` text message as the stream event it is (its ``type`` names it), else None."""
    text = message.get("text")
    if message.get("dir") != "read" or not isinstance(text, str):
        return None
    return SseEvent(_str(_dict(_json(text)).get("type")) or "message", text, None, None, 0, ts_ns)


def extract_ws_call(create: dict[str, Any], events: list[SseEvent], *, user_agent: str | None = None,
                    ts_first: int | None = None, ts_end: int | None = None, cut: str | None = None,
                    prices: bool = True) -> dict[str, Any]:
    """Build the ``llm.call`` of a Responses call made over WebSocket.

    ``create`` is the ``http.ws`` record of the client's ``response.create`` (its body is the
    request, as a POST /responses body would be); ``events`` the server messages that followed,
    handled exactly as the SSE events of a streamed Responses call; ``cut`` says why the call
    ended before its last event (the connection closed...).
    """
    api = "openai.responses"
    call = _request_call(api, _str(create.get("path")) or "", create.get("text"))
    call.stream = True
    _STREAM[api](events, call)
    status: int | None = None
    last = _dict(_json(events[-1].data)) if events else {}
    if last.get("type") == "error":
        status = _int(last.get("status")) or _int(last.get("status_code"))
        if call.error is not None:
            call.error["body"] = events[-1].data[:_ERROR_BODY_MAX]
    if call.error is not None:
        call.error["status"] = status
    if cut is not None and not call.ended:
        call.notes.append(f"response incomplete: {cut}")
    if not events:
        call.notes.append("no response captured")
    record = _record(call, host=_str(create.get("host")), path=_str(create.get("path")) or "", stream=True,
                     status=status, user_agent=user_agent, conn=create.get("conn"), seq=create.get("seq"),
                     t_start=_int(create.get("ts_start_ns")), t_first=ts_first, t_end=ts_end, prices=prices,
                     transport="websocket")
    record["ws_index"] = create.get("index")
    return record


# --------------------------------------------------------------------------- prices

try:  # genai-prices ships a price snapshot in the wheel: no network needed
    import genai_prices as _gp_module

    _gp: Any = _gp_module
    PRICE_SOURCE: str | None = f"genai-prices {_gp.__version__} (bundled snapshot)"
except ImportError:  # pragma: no cover - an optional dependency
    _gp = None
    PRICE_SOURCE = None


def estimate_cost(provider: str, host: str | None, model: str | None, usage: dict[str, Any],
                  ts_ns: int | None = None) -> dict[str, Any] | None:
    """USD estimate from genai-prices' bundled table; None when the model or usage is unknown."""
    if _gp is None or not model or usage.get("input_tokens") is None or usage.get("output_tokens") is None:
        return None
    values = {
        "input_tokens": usage["input_tokens"],
        "output_tokens": usage["output_tokens"],
        "cache_read_tokens": usage.get("cache_read_tokens"),
        "cache_write_tokens": usage.get("cache_write_tokens"),
    }
    when = _dt.datetime.fromtimestamp(ts_ns / 1e9, tz=_dt.UTC) if ts_ns else None
    try:
        u = _gp.Usage(**{k: v for k, v in values.items() if v is not None})
        known = provider in _PRICE_PROVIDERS
        calc = _gp.calc_price(u, model, provider_id=provider if known else None, genai_request_timestamp=when)
    except (LookupError, ValueError, ArithmeticError):
        return None
    return {
        "currency": "USD",
        "total": float(calc.total_price),
        "input": float(calc.input_price),
        "output": float(calc.output_price),
        "model_ref": calc.model.id,
        "provider_ref": calc.provider.id,
        "price_source": PRICE_SOURCE,
    }


_PRICE_PROVIDERS = frozenset(p for _, p in _HOST_PROVIDERS)


# --------------------------------------------------------------------------- stage


@dataclass(slots=True)
class LlmStats:
    exchanges: int = 0
    ws_messages: int = 0
    calls: int = 0
    errors: int = 0
    unpriced: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"exchanges": self.exchanges, "ws_messages": self.ws_messages, "calls": self.calls,
                "errors": self.errors, "unpriced": self.unpriced}


@dataclass(slots=True)
class _WsCall:
    """A Responses call open on a WebSocket: its ``response.create`` record and the server events so far."""

    create: dict[str, Any]
    events: list[SseEvent] = field(default_factory=list)
    ts_first: int | None = None


class LlmCalls:
    """Stage logic: ``http.exchange`` and ``http.ws``/``http.ws.end`` in, ``llm.call`` out (other events: nothing).

    An exchange is one call. On a WebSocket a call spans messages, so the stage keeps the one
    call open per connection (at most ``max_ws`` connections; the oldest is closed as
    incomplete beyond that) until its last event, a close frame, the next ``response.create``
    or the connection's end.
    """

    def __init__(self, *, source: str = "llm", redact: bool = True, prices: bool = True,
                 max_ws: int = 4096) -> None:
        self.source = source
        self.redact = redact
        self.prices = prices
        self.max_ws = max_ws
        self.stats = LlmStats()
        self._ws_calls: OrderedDict[str, _WsCall] = OrderedDict()
        self._ws_agents: OrderedDict[str, str | None] = OrderedDict()  # conn -> User-Agent of its upgrade

    def feed(self, event: Event) -> list[Event]:
        d = event.data
        if event.topic == "http.exchange":
            self.stats.exchanges += 1
            self._note_upgrade(d)
            return self._emit(event, lambda: extract_call(d, prices=self.prices))
        if event.topic == "http.ws":
            self.stats.ws_messages += 1
            return self._ws_message(event)
        if event.topic == "http.ws.end":
            conn = str(d.get("conn"))
            out = self._ws_close(conn, event, "connection closed before the response ended")
            self._ws_agents.pop(conn, None)
            return out
        return []

    def _emit(self, event: Event, build: Callable[[], dict[str, Any] | None]) -> list[Event]:
        """Build a record; a payload shape this code did not foresee is counted, reported, never fatal."""
        try:
            record = build()
        except Exception as exc:  # any shape at all: an error record, never a dead stage
            self.stats.errors += 1
            return [Event("llm.error", event.ts_ns, self.source, event.pid, event.tid, event.comm,
                          repair({"conn": event.data.get("conn"), "seq": event.data.get("seq"),
                                  "error": f"{type(exc).__name__}: {exc}"}))]
        if record is None:
            return []
        self.stats.calls += 1
        if record["cost"] is None:
            self.stats.unpriced += 1
        if self.redact:
            record = redact_value(record)
        # JSON brings what msgpack cannot carry (a lone surrogate of a string cut inside an
        # emoji, integers past 64 bits): escaped here, so the record travels as it is.
        record = repair(record)
        return [Event("llm.call", event.ts_ns, self.source, event.pid, event.tid, event.comm, record)]

    # ------------------------------------------------------------------ WebSocket

    def _note_upgrade(self, exchange: dict[str, Any]) -> None:
        """Remember the User-Agent of a websocket upgrade: its calls come later, as messages."""
        resp, req = _dict(exchange.get("response")), _dict(exchange.get("request"))
        if resp.get("status_code") == 101 and req:
            conn = str(exchange.get("conn"))
            self._ws_agents[conn] = header_value(req.get("headers"), "user-agent")
            self._ws_agents.move_to_end(conn)
            while len(self._ws_agents) > self.max_ws:
                self._ws_agents.popitem(last=False)

    def _ws_message(self, event: Event) -> list[Event]:
        d = event.data
        conn = str(d.get("conn"))
        if d.get("opcode") == OP_CLOSE:
            return self._ws_close(conn, event, f"websocket closed (code {d.get('close_code')})")
        if is_ws_call_start(d):
            out = self._ws_close(conn, event, "the next response.create came first")
            self._ws_calls[conn] = _WsCall(d)
            if len(self._ws_calls) > self.max_ws:
                out += self._ws_close(next(iter(self._ws_calls)), event, "too many open websocket calls")
            return out
        call = self._ws_calls.get(conn)
        ev = ws_event(d, event.ts_ns) if call is not None else None
        if call is None or ev is None:
            return []
        call.events.append(ev)
        if call.ts_first is None:
            call.ts_first = _int(d.get("ts_start_ns")) or event.ts_ns
        return self._ws_close(conn, event, None) if ev.event in _WS_ENDS else []

    def _ws_close(self, conn: str, event: Event, cut: str | None) -> list[Event]:
        """Emit the call open on ``conn`` (if any); ``cut`` says why it ended early."""
        call = self._ws_calls.pop(conn, None)
        if call is None:
            return []
        return self._emit(event, lambda: extract_ws_call(
            call.create, call.events, user_agent=self._ws_agents.get(conn), ts_first=call.ts_first,
            ts_end=event.ts_ns, cut=cut, prices=self.prices))
