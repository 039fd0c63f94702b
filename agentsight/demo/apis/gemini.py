"""The demo server's side of the Gemini API and of Code Assist (which wraps each answer in
``{"response": ..., "traceId"}``): the requests read, the answers written."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from agentsight.demo.apis.common import (
    BadRequest,
    Conversation,
    Frame,
    obj,
    pieces,
    text_of,
)

if TYPE_CHECKING:
    from agentsight.demo.llm_server import Exchange

__all__ = ["read", "read_code_assist", "usage", "body", "frames", "stop_reason"]


def _function_response_text(response: Any) -> str:
    """What a Gemini functionResponse says: its ``output`` string (Gemini CLI's shape), else its JSON."""
    if isinstance(response, dict) and isinstance(response.get("output"), str):
        return str(response["output"])
    return json.dumps(response, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _field(obj: dict[str, Any], name: str) -> Any:
    """A Gemini field by its JSON name or its proto name: Google's JSON parsing takes both (``functionCall``,
    ``function_call``), and SDKs send either."""
    if name in obj:
        return obj[name]
    return obj.get(re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name))


def read(body: dict[str, Any]) -> Conversation:
    """Gemini API ``GenerateContentRequest`` (also the ``request`` inside a Code Assist request)."""
    conv = Conversation()
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    system = _field(body, "systemInstruction")
    if system is not None:
        conv.system = text_of(obj(system, "systemInstruction").get("parts"), "systemInstruction.parts")
    for raw in contents:
        c = obj(raw, "each content")
        role = c.get("role") or "user"
        if role not in ("user", "model", "function"):
            raise BadRequest(f"* GenerateContentRequest.contents: role must be 'user' or 'model', got {role!r}")
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts:
            raise BadRequest("* GenerateContentRequest.contents.parts: contents.parts must not be empty.")
        conv.messages += 1
        texts, results = [], []
        for part in parts:
            p = obj(part, "each part")
            if isinstance(p.get("text"), str) and not p.get("thought"):
                texts.append(p["text"])
            elif (fc := _field(p, "functionCall")) is not None:
                fc = obj(fc, "functionCall")
                conv.texts += [str(fc.get("name", "")), json.dumps(fc.get("args") or {}, separators=(",", ":"),
                                                                   ensure_ascii=False)]
            elif (fr := _field(p, "functionResponse")) is not None:
                results.append(_function_response_text(obj(fr, "functionResponse").get("response")))
        conv.texts += texts + results
        if role == "model":
            conv.has_history = True
            conv.last_is_tool_result = False
        else:
            conv.last_is_tool_result = bool(results)
            conv.last_text = "\n".join(results) if results else "\n".join(texts)
    tools = body.get("tools") or []
    for t in tools:
        for raw in _field(obj(t, "each tool"), "functionDeclarations") or []:
            fd = obj(raw, "each function declaration")
            schema = _field(fd, "parametersJsonSchema") or fd.get("parameters") or {}
            conv.tools.append((str(fd.get("name")), obj(schema, "parameters")))
    conv.tools_json = json.dumps(tools, sort_keys=True) if tools else ""
    calling = _field(obj(_field(body, "toolConfig") or {}, "toolConfig"), "functionCallingConfig") or {}
    conv.tools_allowed = str(obj(calling, "functionCallingConfig").get("mode", "AUTO")).upper() != "NONE"
    config = obj(_field(body, "generationConfig") or {}, "generationConfig")
    if _field(config, "responseMimeType") == "application/json":
        schema = _field(config, "responseJsonSchema") or _field(config, "responseSchema") or {}
        conv.json_schema = obj(schema, "responseSchema")
    return conv


def read_code_assist(body: dict[str, Any]) -> Conversation:
    """Gemini Code Assist request: ``{"model", "project", "request": GenerateContentRequest}``."""
    return read(obj(body.get("request"), "'request'"))


def _gemini_sse(data: dict[str, Any]) -> bytes:
    """Google's SSE: data lines only, CRLF line ends (``alt=sse``)."""
    return f"data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\r\n\r\n".encode()


def usage(ex: Exchange, final: bool = True) -> dict[str, Any]:
    """``usageMetadata``; zero counts are left out, as Google's JSON does. Cached is part of the prompt."""
    a = ex.answer
    u: dict[str, Any] = {"promptTokenCount": a.input_tokens}
    if final:
        u["candidatesTokenCount"] = a.output_tokens
    u["totalTokenCount"] = a.input_tokens + (a.output_tokens if final else 0)
    cached = ex._openai_cached()
    if cached:
        u["cachedContentTokenCount"] = cached
    u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": a.input_tokens}]
    if cached:
        u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    return u


def _chunk(ex: Exchange, parts: list[dict[str, Any]], final: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if final:
        candidate["finishReason"] = ex.stop_reason()
    candidate["index"] = 0
    chunk = {"candidates": [candidate], "usageMetadata": usage(ex, final), "modelVersion": ex.model,
             "responseId": ex.response_id}
    if ex.api == "gemini.code_assist":
        return {"response": chunk, "traceId": ex.response_id[:16]}
    return chunk


def _calls(ex: Exchange) -> list[dict[str, Any]]:
    return [{"functionCall": {"id": c.id, "name": c.name, "args": json.loads(c.arguments)}}
            for c in ex.answer.tool_calls]


def body(ex: Exchange) -> dict[str, Any]:
    parts = ([{"text": ex.answer.text}] if ex.answer.text else []) + _calls(ex)
    return _chunk(ex, parts, final=True)


def frames(ex: Exchange) -> list[Frame]:
    """Text in pieces, then the function calls whole (Gemini does not stream arguments); the last chunk
    has finishReason and the final usage."""
    texts = [[{"text": p}] for p in pieces(ex.answer.text, ex.settings.chunk_words)] if ex.answer.text else []
    calls = _calls(ex)
    chunks = texts[:-1] if texts and not calls else texts
    last = calls or (texts[-1] if texts else [{"text": ""}])
    frames = [(True, _gemini_sse(_chunk(ex, parts, final=False))) for parts in chunks]
    frames.append((True, _gemini_sse(_chunk(ex, last, final=True))))
    return frames


def stop_reason(ex: Exchange) -> str:
    return "STOP"  # a function call ends with STOP too
