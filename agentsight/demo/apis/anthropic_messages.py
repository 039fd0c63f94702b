"""The demo server's side of Anthropic Messages: the request read (count_tokens too), the answer written."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agentsight.demo.apis.common import (
    BadRequest,
    Conversation,
    Frame,
    arg_pieces,
    has_key,
    obj,
    pieces,
    sse,
    text_of,
)

if TYPE_CHECKING:
    from agentsight.demo.llm_server import Exchange

__all__ = ["read", "usage", "body", "frames", "stop_reason"]


def read(body: dict[str, Any], *, counting: bool = False) -> Conversation:
    """Anthropic Messages request (``counting``: a count_tokens request, which has no max_tokens)."""
    conv = Conversation()
    if not counting and not isinstance(body.get("max_tokens"), int):
        raise BadRequest("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required")
    system = [text_of(body.get("system"), "system")]
    for raw in messages:
        m = obj(raw, "each message")
        role = m.get("role")
        if role not in ("user", "assistant", "system") or (role == "system" and not conv.messages):
            raise BadRequest(f"messages.{conv.messages}.role: must be 'user' or 'assistant' (a 'system' message "
                             f"may only follow others), got {role!r}")
        conv.messages += 1
        content = m.get("content")
        if role == "system":  # Claude Code sends its environment as a system message after the first user turn
            system.append(text_of(content, "messages: content"))
            continue
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise BadRequest("messages: content must be a string or an array of blocks")
        results = []
        texts = []
        for b in blocks:
            b = obj(b, "each content block")
            if b.get("type") == "text":
                texts.append(str(b.get("text", "")))
            elif b.get("type") == "tool_use":
                conv.texts += [str(b.get("name", "")), json.dumps(b.get("input"), separators=(",", ":"))]
            elif b.get("type") == "tool_result":
                results.append(text_of(b.get("content"), "tool_result content"))
        conv.texts += texts + results
        if role == "assistant":
            conv.has_history = True
            conv.last_is_tool_result = False
        else:
            conv.last_is_tool_result = bool(results)
            conv.last_text = "\n".join(results) if results else "\n".join(texts)
    conv.system = "\n\n".join(t for t in system if t)
    tools = body.get("tools") or []
    for t in tools:
        t = obj(t, "each tool")
        conv.tools.append((str(t.get("name")), obj(t.get("input_schema") or {}, "input_schema")))
    conv.tools_json = json.dumps(tools, sort_keys=True) if tools else ""
    conv.tools_allowed = obj(body.get("tool_choice") or {}, "tool_choice").get("type") != "none"
    conv.cache_marked = has_key(body, "cache_control")
    return conv


def usage(ex: Exchange, output_tokens: int | None = None) -> dict[str, Any]:
    a = ex.answer
    cached = a.cached_tokens if ex.cache_marked else 0
    read = cached if ex.history else 0
    write = 0 if ex.history else cached
    return {"input_tokens": a.input_tokens - read - write, "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
            "output_tokens": a.output_tokens if output_tokens is None else output_tokens,
            "service_tier": "standard"}


def _blocks(ex: Exchange) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if ex.answer.text:
        blocks.append({"type": "text", "text": ex.answer.text})
    for c in ex.answer.tool_calls:
        blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments)})
    return blocks


def body(ex: Exchange) -> dict[str, Any]:
    return {"id": ex.response_id, "type": "message", "role": "assistant", "model": ex.model,
            "content": _blocks(ex), "stop_reason": ex.stop_reason(), "stop_sequence": None,
            "usage": usage(ex)}


def frames(ex: Exchange) -> list[Frame]:
    start: dict[str, Any] = {"id": ex.response_id, "type": "message", "role": "assistant", "model": ex.model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": usage(ex, output_tokens=1)}
    frames: list[Frame] = [(False, sse({"type": "message_start", "message": start}, "message_start")),
                           (False, sse({"type": "ping"}, "ping"))]
    for index, block in enumerate(_blocks(ex)):
        opening: dict[str, Any]
        if block["type"] == "text":
            deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"], ex.settings.chunk_words)]
            opening = {"type": "text", "text": ""}
        else:
            args = json.dumps(block["input"], separators=(",", ":"), ensure_ascii=False)
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in arg_pieces(args)]
            opening = {**block, "input": {}}
        frames.append((False, sse({"type": "content_block_start", "index": index, "content_block": opening},
                                   "content_block_start")))
        frames += [(True, sse({"type": "content_block_delta", "index": index, "delta": d},
                               "content_block_delta")) for d in deltas]
        frames.append((False, sse({"type": "content_block_stop", "index": index}, "content_block_stop")))
    frames.append((False, sse({"type": "message_delta",
                                "delta": {"stop_reason": ex.stop_reason(), "stop_sequence": None},
                                "usage": {"output_tokens": ex.answer.output_tokens}}, "message_delta")))
    frames.append((False, sse({"type": "message_stop"}, "message_stop")))
    return frames


def stop_reason(ex: Exchange) -> str:
    return "tool_use" if ex.answer.tool_calls else "end_turn"
