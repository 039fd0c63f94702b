"""Anthropic Messages (``POST .../v1/messages``): Claude Code, the anthropic SDKs."""

from __future__ import annotations

from typing import Any

from agentsight.analysis.dialects.common import (
    Call,
    Dialect,
    StreamEvent,
    args_text,
    as_dict,
    as_int,
    as_list,
    as_str,
    error_from,
    finish_usage,
    json_object,
    message,
    sum_known,
    tool_call,
)

__all__ = ["DIALECT", "blocks", "usage"]


def blocks(content: Any) -> list[dict[str, Any]]:
    """Content blocks as record parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts: list[dict[str, Any]] = []
    for b in as_list(content):
        b = as_dict(b)
        kind = b.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": as_str(b.get("text")) or ""})
        elif kind in ("tool_use", "server_tool_use"):
            parts.append({"type": "tool_call", **tool_call(b.get("id"), b.get("name"), b.get("input"))})
        elif kind == "tool_result":
            inner = b.get("content")
            text = inner if isinstance(inner, str) else "\n".join(
                p.get("text", "") for p in blocks(inner) if p.get("type") == "text")
            parts.append({"type": "tool_result", "id": as_str(b.get("tool_use_id")), "content": text,
                          "is_error": b.get("is_error") if isinstance(b.get("is_error"), bool) else None})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "text": as_str(b.get("thinking")) or ""})
        elif kind:
            parts.append({"type": str(kind)})
    return parts


def read_request(body: dict[str, Any], call: Call, path: str) -> None:
    """The prompt side: model, stream asked for, system prompt, messages, tools."""
    call.model_requested = as_str(body.get("model"))
    call.stream = body.get("stream") is True
    system = body.get("system")
    if isinstance(system, str):
        call.system = system
    elif isinstance(system, list):
        call.system = "\n\n".join(as_str(as_dict(b).get("text")) or "" for b in system)
    for m in as_list(body.get("messages")):
        m = as_dict(m)
        call.messages.append(message(as_str(m.get("role")) or "user", blocks(m.get("content"))))
    for t in as_list(body.get("tools")):
        t = as_dict(t)
        call.tools.append({"name": as_str(t.get("name")), "description": as_str(t.get("description")),
                           "parameters": t.get("input_schema")})


def usage(call: Call, u: dict[str, Any]) -> None:
    """Anthropic's input_tokens leaves cached tokens out; the normalised count has them."""
    if not u:
        return
    call.usage_raw = u
    base = as_int(u.get("input_tokens"))
    cache_read = as_int(u.get("cache_read_input_tokens"))
    cache_write = as_int(u.get("cache_creation_input_tokens"))
    finish_usage(call, sum_known(base, cache_read, cache_write), as_int(u.get("output_tokens")),
                 cache_read, cache_write, None)


def read_response(body: Any, call: Call, ts: int | None) -> None:
    b = as_dict(body)
    call.model = as_str(b.get("model")) or call.model
    call.response_id = as_str(b.get("id"))
    for p in blocks(b.get("content")):
        if p["type"] == "text":
            call.output.append(p["text"])
        elif p["type"] == "reasoning":
            call.reasoning.append(p["text"])
        elif p["type"] == "tool_call":
            call.tool_calls.append({k: v for k, v in p.items() if k != "type"})
    call.stop_reason = as_str(b.get("stop_reason"))
    usage(call, as_dict(b.get("usage")))
    call.token(ts)


def read_stream(events: list[StreamEvent], call: Call) -> None:
    content: dict[int, dict[str, Any]] = {}
    raw_usage: dict[str, Any] = {}
    read = 0
    for ev in events:
        d = json_object(ev["data"])
        if d is None:
            continue
        read += 1
        kind = d.get("type")
        if kind != "content_block_delta" and (type(kind) is not str or not kind):
            kind = ev["event"]
        if kind == "content_block_delta":  # nearly every event: read inline
            index = d.get("index")
            if type(index) is not int:
                index = 0
            block = content.get(index)
            if block is None:
                block = content[index] = {"type": "text", "_text": [], "_json": []}
            delta = d.get("delta")
            if type(delta) is dict:
                dk = delta.get("type")
                if dk == "text_delta":
                    text = delta.get("text")
                    block["_text"].append(text if isinstance(text, str) else "")
                elif dk == "thinking_delta":
                    block["_text"].append(as_str(delta.get("thinking")) or "")
                elif dk == "input_json_delta":
                    block["_json"].append(as_str(delta.get("partial_json")) or "")
            if call.first_token_ts is None:
                call.token(ev.get("ts_ns"))
        elif kind == "message_start":
            msg = as_dict(d.get("message"))
            call.model = as_str(msg.get("model")) or call.model
            call.response_id = as_str(msg.get("id"))
            raw_usage.update(as_dict(msg.get("usage")))
        elif kind == "content_block_start":
            block = dict(as_dict(d.get("content_block")))
            block["_text"] = [as_str(block.get("text")) or as_str(block.get("thinking")) or ""]
            block["_json"] = []
            content[as_int(d.get("index")) or 0] = block
        elif kind == "message_delta":
            delta = as_dict(d.get("delta"))
            call.stop_reason = as_str(delta.get("stop_reason")) or call.stop_reason
            # Counts in message_delta are cumulative and win over message_start's.
            raw_usage.update({k: v for k, v in as_dict(d.get("usage")).items() if v is not None})
        elif kind == "message_stop":
            call.ended = True
        elif kind == "error":
            call.error = error_from(d)
    call.events += read
    for _, b in sorted(content.items()):
        btype = b.get("type")
        if btype == "text":
            call.output.append("".join(b["_text"]))
        elif btype == "thinking":
            call.reasoning.append("".join(b["_text"]))
        elif btype in ("tool_use", "server_tool_use"):
            args = "".join(b["_json"])
            if not args and b.get("input"):
                args = args_text(b.get("input"))
            call.tool_calls.append(tool_call(b.get("id"), b.get("name"), args or "{}"))
    usage(call, raw_usage)


DIALECT = Dialect(
    api="anthropic.messages",
    provider="anthropic",
    detects=lambda path: path.endswith("/messages") and "/v1/" in path,
    request=read_request,
    response=read_response,
    stream=read_stream,
    end_events=frozenset({"message_stop"}),
)
