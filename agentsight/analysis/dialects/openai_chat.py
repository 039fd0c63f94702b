"""OpenAI Chat Completions (``POST .../chat/completions``), and the many servers that speak it."""

from __future__ import annotations

from typing import Any

from agentsight.analysis.dialects.common import (
    Call,
    Dialect,
    StreamEvent,
    as_dict,
    as_int,
    as_list,
    as_str,
    error_from,
    finish_usage,
    json_object,
    message,
    tool_call,
)

__all__ = ["DIALECT", "content_parts", "usage"]

DONE = "[DONE]"


def content_parts(content: Any) -> list[dict[str, Any]]:
    """Message content (a string or typed parts, Chat and Responses alike) as record parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts: list[dict[str, Any]] = []
    for p in as_list(content):
        p = as_dict(p)
        kind = p.get("type")
        if kind in ("text", "input_text", "output_text"):
            parts.append({"type": "text", "text": as_str(p.get("text")) or ""})
        elif kind in ("image_url", "input_image"):
            parts.append({"type": "image"})
        elif kind in ("refusal",):
            parts.append({"type": "text", "text": as_str(p.get("refusal")) or ""})
        elif kind:
            parts.append({"type": str(kind)})
    return parts


def usage(call: Call, raw: Any, inp: str = "prompt", out: str = "completion") -> None:
    """OpenAI usage: cached tokens inside input, reasoning inside output.

    Chat Completions names the two sides prompt/completion, Responses input/output.
    """
    u = as_dict(raw)
    if not u:
        return
    call.usage_raw = u
    finish_usage(
        call,
        as_int(u.get(f"{inp}_tokens")),
        as_int(u.get(f"{out}_tokens")),
        as_int(as_dict(u.get(f"{inp}_tokens_details")).get("cached_tokens")),
        None,
        as_int(as_dict(u.get(f"{out}_tokens_details")).get("reasoning_tokens")),
    )


def read_request(body: dict[str, Any], call: Call, path: str) -> None:
    """The prompt side: model, stream asked for, system prompt, messages, tools."""
    call.model_requested = as_str(body.get("model"))
    call.stream = body.get("stream") is True
    system: list[str] = []
    for m in as_list(body.get("messages")):
        m = as_dict(m)
        role = as_str(m.get("role")) or "user"
        parts = content_parts(m.get("content"))
        if role in ("system", "developer"):
            system.extend(p["text"] for p in parts if p.get("type") == "text")
            continue
        for tc in as_list(m.get("tool_calls")):
            tc = as_dict(tc)
            fn = as_dict(tc.get("function"))
            parts.append({"type": "tool_call", **tool_call(tc.get("id"), fn.get("name"), fn.get("arguments"))})
        if role == "tool":
            text = "\n".join(p.get("text", "") for p in parts if p.get("type") == "text")
            parts = [{"type": "tool_result", "id": as_str(m.get("tool_call_id")), "content": text}]
        call.messages.append(message(role, parts))
    call.system = "\n\n".join(system) if system else None
    for t in as_list(body.get("tools")):
        t = as_dict(t)
        fn = as_dict(t.get("function")) or t
        call.tools.append({"name": as_str(fn.get("name")), "description": as_str(fn.get("description")),
                           "parameters": fn.get("parameters")})


def read_response(body: Any, call: Call, ts: int | None) -> None:
    b = as_dict(body)
    call.model = as_str(b.get("model")) or call.model
    call.response_id = as_str(b.get("id"))
    choices = as_list(b.get("choices"))
    if choices:
        c = as_dict(choices[0])
        msg = as_dict(c.get("message"))
        content = msg.get("content")
        if isinstance(content, str) and content:
            call.output.append(content)
        for key in ("reasoning_content", "reasoning"):
            if isinstance(msg.get(key), str) and msg[key]:
                call.reasoning.append(msg[key])
        for tc in as_list(msg.get("tool_calls")):
            tc = as_dict(tc)
            fn = as_dict(tc.get("function"))
            call.tool_calls.append(tool_call(tc.get("id"), fn.get("name"), fn.get("arguments")))
        call.stop_reason = as_str(c.get("finish_reason"))
        call.token(ts)
    usage(call, b.get("usage"))


def read_stream(events: list[StreamEvent], call: Call) -> None:
    calls: dict[int, dict[str, Any]] = {}
    output, reasoning = call.output, call.reasoning
    for ev in events:
        data = ev["data"]
        if data == DONE:
            call.ended = True
            continue
        chunk = json_object(data)
        if chunk is None:
            continue
        ts = ev.get("ts_ns")
        call.events += 1
        if "error" in chunk:
            call.error = error_from(chunk)
            continue
        model = chunk.get("model")
        if type(model) is str and model:
            call.model = model
        if not call.response_id:
            call.response_id = as_str(chunk.get("id"))
        choices = chunk.get("choices")
        for c in choices if type(choices) is list else ():
            if type(c) is not dict or c.get("index", 0) != 0:
                continue
            delta = c.get("delta")
            if type(delta) is not dict:
                delta = {}
            content = delta.get("content")
            if type(content) is str and content:
                output.append(content)
                if call.first_token_ts is None:
                    call.token(ts)
            if "reasoning_content" in delta or "reasoning" in delta:
                for key in ("reasoning_content", "reasoning"):
                    if isinstance(delta.get(key), str) and delta[key]:
                        reasoning.append(delta[key])
                        call.token(ts)
            for tc in as_list(delta.get("tool_calls")):
                tc = as_dict(tc)
                slot = calls.setdefault(as_int(tc.get("index")) or 0, {"id": None, "name": None, "args": []})
                fn = as_dict(tc.get("function"))
                slot["id"] = slot["id"] or as_str(tc.get("id"))
                slot["name"] = slot["name"] or as_str(fn.get("name"))
                if isinstance(fn.get("arguments"), str):
                    slot["args"].append(fn["arguments"])
                call.token(ts)
            if c.get("finish_reason"):
                call.stop_reason = as_str(c.get("finish_reason"))
        if chunk.get("usage"):
            usage(call, chunk.get("usage"))
    for _, slot in sorted(calls.items()):
        call.tool_calls.append(tool_call(slot["id"], slot["name"], "".join(slot["args"])))


DIALECT = Dialect(
    api="openai.chat",
    provider="openai",
    detects=lambda path: path.endswith("/chat/completions"),
    request=read_request,
    response=read_response,
    stream=read_stream,
    end_data=frozenset({DONE}),
)
