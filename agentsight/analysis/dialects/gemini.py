"""Gemini API (``POST .../models/{model}:generateContent`` and ``:streamGenerateContent``, SSE with
``alt=sse`` or a streamed JSON array). The model is named in the path."""

from __future__ import annotations

import re
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
    message,
    parse_json,
    sum_known,
    tool_call,
)

__all__ = ["DIALECT", "read_gemini_request", "read_chunk"]

PATH = re.compile(r"/models/([^/:]+):(generateContent|streamGenerateContent)$")


def parts(raw: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in as_list(raw):
        p = as_dict(p)
        if isinstance(p.get("text"), str):
            out.append({"type": "reasoning" if p.get("thought") else "text", "text": p["text"]})
        elif "functionCall" in p:
            fc = as_dict(p.get("functionCall"))
            out.append({"type": "tool_call", **tool_call(fc.get("id"), fc.get("name"), fc.get("args"))})
        elif "functionResponse" in p:
            fr = as_dict(p.get("functionResponse"))
            out.append({"type": "tool_result", "id": as_str(fr.get("id")) or as_str(fr.get("name")),
                        "content": args_text(fr.get("response"))})
        elif "inlineData" in p or "fileData" in p:
            out.append({"type": "image"})
    return out


def read_gemini_request(body: dict[str, Any], call: Call) -> None:
    """A ``GenerateContentRequest`` (also the ``request`` inside a Code Assist request)."""
    si = as_dict(body.get("systemInstruction") or body.get("system_instruction"))
    if si:
        call.system = "\n".join(p["text"] for p in parts(si.get("parts")) if p["type"] == "text")
    for c in as_list(body.get("contents")):
        c = as_dict(c)
        role = as_str(c.get("role")) or "user"
        call.messages.append(message("assistant" if role == "model" else role, parts(c.get("parts"))))
    for t in as_list(body.get("tools")):
        for fd in as_list(as_dict(t).get("functionDeclarations") or as_dict(t).get("function_declarations")):
            fd = as_dict(fd)
            call.tools.append({"name": as_str(fd.get("name")), "description": as_str(fd.get("description")),
                               "parameters": fd.get("parameters") or fd.get("parametersJsonSchema")})


def read_request(body: dict[str, Any], call: Call, path: str) -> None:
    call.model_requested, call.stream = model_in_path(path)
    read_gemini_request(body, call)


def read_chunk(chunk: dict[str, Any], call: Call, ts: int | None) -> None:
    """One ``GenerateContentResponse`` (a whole answer or one stream chunk)."""
    call.events += 1
    if "error" in chunk:
        call.error = error_from(chunk)
        return
    call.model = as_str(chunk.get("modelVersion")) or call.model
    call.response_id = as_str(chunk.get("responseId")) or call.response_id
    cands = as_list(chunk.get("candidates"))
    if cands:
        c = as_dict(cands[0])
        for p in parts(as_dict(c.get("content")).get("parts")):
            if p["type"] == "text":
                call.output.append(p["text"])
            elif p["type"] == "reasoning":
                call.reasoning.append(p["text"])
            elif p["type"] == "tool_call":
                call.tool_calls.append({k: v for k, v in p.items() if k != "type"})
            call.token(ts)
        call.stop_reason = as_str(c.get("finishReason")) or call.stop_reason
        call.ended = call.ended or bool(c.get("finishReason"))
    u = as_dict(chunk.get("usageMetadata"))
    if u:
        call.usage_raw = u
        thoughts = as_int(u.get("thoughtsTokenCount"))
        finish_usage(
            call,
            sum_known(as_int(u.get("promptTokenCount")), as_int(u.get("toolUsePromptTokenCount"))),
            sum_known(as_int(u.get("candidatesTokenCount")), thoughts),
            as_int(u.get("cachedContentTokenCount")),
            None,
            thoughts,
        )


def read_response(body: Any, call: Call, ts: int | None) -> None:
    for chunk in body if isinstance(body, list) else [body]:  # a streamed JSON array, or one object
        read_chunk(as_dict(chunk), call, ts)


def read_stream(events: list[StreamEvent], call: Call) -> None:
    for ev in events:
        chunk = parse_json(ev["data"])
        if isinstance(chunk, dict) and chunk:
            read_chunk(chunk, call, ev.get("ts_ns"))


def model_in_path(path: str) -> tuple[str | None, bool]:
    """(model, streamed) as the path names them."""
    m = PATH.search(path)
    return (m.group(1), m.group(2) == "streamGenerateContent") if m else (None, False)


DIALECT = Dialect(
    api="gemini.generate",
    provider="google",
    detects=lambda path: PATH.search(path) is not None,
    request=read_request,
    response=read_response,
    stream=read_stream,
)
