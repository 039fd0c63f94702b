"""The demo server's side of OpenAI Responses (HTTP and WebSocket): the request read, the answer written."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agentsight.demo.apis.common import (
    BadRequest,
    Conversation,
    Frame,
    arg_pieces,
    obj,
    pieces,
    sse,
    text_of,
)

if TYPE_CHECKING:
    from agentsight.demo.llm_server import Exchange

__all__ = ["read", "usage", "items", "body", "events", "frames", "stop_reason"]


def _responses_tools(conv: Conversation, tools: list[Any]) -> None:
    """Function and custom tools of a Responses request, namespaces flattened (Codex's ``additional_tools``)."""
    for t in tools:
        t = obj(t, "each tool")
        if t.get("type") == "function":
            conv.tools.append((str(t.get("name")), obj(t.get("parameters") or {}, "'parameters'")))
        elif t.get("type") == "custom":
            conv.tools.append((str(t.get("name")), {}))
            conv.custom_tools[str(t.get("name"))] = str(t.get("description") or "")
        elif t.get("type") == "namespace":
            _responses_tools(conv, t.get("tools") or [])


def read(body: dict[str, Any]) -> Conversation:
    """OpenAI Responses request (``"generate": false``, a WebSocket warm-up, may have no input)."""
    conv = Conversation()
    inp = body.get("input")
    items = [{"type": "message", "role": "user", "content": inp}] if isinstance(inp, str) else inp
    if not isinstance(items, list) or not (items or body.get("generate") is False):
        raise BadRequest("'input' must be a string or a non-empty array")
    instructions = body.get("instructions")
    system = [instructions] if isinstance(instructions, str) else []
    extra_tools: list[Any] = []
    for raw in items:
        it = obj(raw, "each input item")
        kind = it.get("type", "message")
        conv.messages += 1
        if kind in ("reasoning", "additional_tools"):
            if kind == "additional_tools":  # tools sent as an input item (Codex's "responses lite")
                extra_tools += it.get("tools") or []
            continue
        conv.last_is_tool_result = kind in ("function_call_output", "custom_tool_call_output")
        if kind == "message":
            text = text_of(it.get("content"), "'content'")
            if it.get("role") in ("system", "developer"):
                system.append(text)
                continue
            conv.texts.append(text)
            if it.get("role") == "assistant":
                conv.has_history = True
            else:
                conv.last_text = text
        elif kind in ("function_call", "custom_tool_call"):
            conv.has_history = True
            conv.texts += [str(it.get("name", "")), str(it.get("arguments", it.get("input", "")))]
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out = it.get("output")
            conv.last_text = out if isinstance(out, str) else text_of(out, "'output'")
            conv.texts.append(conv.last_text)
        else:
            raise BadRequest(f"input item type {kind!r} is not supported by this server")
    conv.system = "\n\n".join(system)
    tools = (body.get("tools") or []) + extra_tools
    _responses_tools(conv, tools)
    conv.tools_json = json.dumps(tools, sort_keys=True) if tools else ""
    conv.tools_allowed = body.get("tool_choice") != "none"
    return conv


def usage(ex: Exchange) -> dict[str, Any]:
    a = ex.answer
    return {"input_tokens": a.input_tokens, "input_tokens_details": {"cached_tokens": ex._openai_cached()},
            "output_tokens": a.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": a.input_tokens + a.output_tokens}


def items(ex: Exchange) -> list[dict[str, Any]]:
    a = ex.answer
    items: list[dict[str, Any]] = []
    if a.text:
        items.append({"id": "msg_" + ex.response_id[5:], "type": "message", "status": "completed",
                      "role": "assistant",
                      "content": [{"type": "output_text", "text": a.text, "annotations": [], "logprobs": []}]})
    for c in a.tool_calls:
        if c.custom:
            items.append({"id": "ctc_" + c.id[5:], "type": "custom_tool_call", "status": "completed",
                          "call_id": c.id, "name": c.name, "input": c.arguments})
        else:
            items.append({"id": "fc_" + c.id[5:], "type": "function_call", "status": "completed",
                          "call_id": c.id, "name": c.name, "arguments": c.arguments})
    return items


def body(ex: Exchange, done: bool = True) -> dict[str, Any]:
    b = ex.body
    return {"id": ex.response_id, "object": "response", "created_at": ex.created,
            "status": "completed" if done else "in_progress", "background": False, "error": None,
            "incomplete_details": None, "instructions": b.get("instructions"),
            "max_output_tokens": b.get("max_output_tokens"), "model": ex.model,
            "output": items(ex) if done else [], "parallel_tool_calls": True,
            "previous_response_id": b.get("previous_response_id"), "reasoning": {"effort": None, "summary": None},
            "store": False, "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [], "top_p": 1.0,
            "truncation": "disabled", "usage": usage(ex) if done else None, "user": None,
            "metadata": {}}


def events(ex: Exchange) -> list[tuple[bool, dict[str, Any]]]:
    """The streamed events, (is_content, event): SSE frames over HTTP, text messages over WebSocket."""
    seq = iter(range(1 << 30))

    def ev(kind: str, content: bool = False, **data: Any) -> tuple[bool, dict[str, Any]]:
        return (content, {"type": kind, "sequence_number": next(seq), **data})

    frames = [ev("response.created", response=body(ex, False)),
              ev("response.in_progress", response=body(ex, False))]
    for index, item in enumerate(items(ex)):
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            frames.append(ev("response.output_item.added", output_index=index,
                             item={**item, "status": "in_progress", "content": []}))
            frames.append(ev("response.content_part.added", item_id=item["id"], output_index=index,
                             content_index=0, part=part))
            frames += [ev("response.output_text.delta", True, item_id=item["id"], output_index=index,
                          content_index=0, delta=p, logprobs=[])
                       for p in pieces(ex.answer.text, ex.settings.chunk_words)]
            frames.append(ev("response.output_text.done", item_id=item["id"], output_index=index,
                             content_index=0, text=ex.answer.text, logprobs=[]))
            frames.append(ev("response.content_part.done", item_id=item["id"], output_index=index,
                             content_index=0, part=item["content"][0]))
        elif item["type"] == "custom_tool_call":
            frames.append(ev("response.output_item.added", output_index=index,
                             item={**item, "status": "in_progress", "input": ""}))
            frames += [ev("response.custom_tool_call_input.delta", True, item_id=item["id"],
                          output_index=index, delta=p) for p in arg_pieces(item["input"])]
            frames.append(ev("response.custom_tool_call_input.done", item_id=item["id"], output_index=index,
                             input=item["input"]))
        else:
            frames.append(ev("response.output_item.added", output_index=index,
                             item={**item, "status": "in_progress", "arguments": ""}))
            frames += [ev("response.function_call_arguments.delta", True, item_id=item["id"],
                          output_index=index, delta=p) for p in arg_pieces(item["arguments"])]
            frames.append(ev("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                             name=item["name"], arguments=item["arguments"]))
        frames.append(ev("response.output_item.done", output_index=index, item=item))
    frames.append(ev("response.completed", response=body(ex)))
    return frames


def frames(ex: Exchange) -> list[Frame]:
    return [(content, sse(event, event["type"])) for content, event in events(ex)]


def stop_reason(ex: Exchange) -> str:
    return "completed"
