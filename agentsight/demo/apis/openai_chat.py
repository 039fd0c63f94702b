"""The demo server's side of OpenAI Chat Completions: the request read, the answer written (JSON or SSE)."""

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

__all__ = ["read", "usage", "body", "frames", "stop_reason"]


def read(body: dict[str, Any]) -> Conversation:
    """OpenAI Chat Completions request."""
    conv = Conversation()
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array")
    system = []
    for raw in messages:
        m = obj(raw, "each message")
        role = m.get("role")
        text = text_of(m.get("content"), "'content'")
        conv.messages += 1
        if role in ("system", "developer"):
            system.append(text)
            continue
        conv.texts.append(text)
        for tc in m.get("tool_calls") or []:
            fn = obj(obj(tc, "each tool call").get("function"), "'function'")
            conv.texts += [str(fn.get("name", "")), str(fn.get("arguments", ""))]
        if role == "assistant":
            conv.has_history = True
        conv.last_is_tool_result = role == "tool"
        if role in ("user", "tool"):
            conv.last_text = text
    conv.system = "\n\n".join(system)
    tools = body.get("tools") or []
    for t in tools:
        fn = obj(obj(t, "each tool").get("function"), "'function'")
        conv.tools.append((str(fn.get("name")), obj(fn.get("parameters") or {}, "'parameters'")))
    conv.tools_json = json.dumps(tools, sort_keys=True) if tools else ""
    conv.tools_allowed = body.get("tool_choice") != "none"
    return conv


def usage(ex: Exchange) -> dict[str, Any]:
    a = ex.answer
    return {
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
        "total_tokens": a.input_tokens + a.output_tokens,
        "prompt_tokens_details": {"cached_tokens": ex._openai_cached(), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def body(ex: Exchange) -> dict[str, Any]:
    a = ex.answer
    message: dict[str, Any] = {"role": "assistant", "content": a.text or None, "refusal": None,
                               "annotations": []}
    if a.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in a.tool_calls]
    return {"id": ex.response_id, "object": "chat.completion", "created": ex.created, "model": ex.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": ex.stop_reason()}],
            "usage": usage(ex), "service_tier": "default", "system_fingerprint": "fp_agentsight"}


def frames(ex: Exchange) -> list[Frame]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        d: dict[str, Any] = {"id": ex.response_id, "object": "chat.completion.chunk", "created": ex.created,
                             "model": ex.model, "service_tier": "default", "system_fingerprint": "fp_agentsight",
                             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if ex.include_usage:
            d["usage"] = None
        return sse(d)

    a = ex.answer
    frames: list[Frame] = [(False, chunk({"role": "assistant", "content": "", "refusal": None}))]
    frames += [(True, chunk({"content": p})) for p in pieces(a.text, ex.settings.chunk_words) if a.text]
    for i, c in enumerate(a.tool_calls):
        frames.append((True, chunk({"tool_calls": [{"index": i, "id": c.id, "type": "function",
                                                    "function": {"name": c.name, "arguments": ""}}]})))
        frames += [(True, chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}))
                   for p in arg_pieces(c.arguments)]
    frames.append((False, chunk({}, ex.stop_reason())))
    if ex.include_usage:
        frames.append((False, sse({"id": ex.response_id, "object": "chat.completion.chunk",
                                    "created": ex.created, "model": ex.model, "service_tier": "default",
                                    "system_fingerprint": "fp_agentsight", "choices": [],
                                    "usage": usage(ex)})))
    frames.append((False, b"data: [DONE]\n\n"))
    return frames


def stop_reason(ex: Exchange) -> str:
    return "tool_calls" if ex.answer.tool_calls else "stop"
