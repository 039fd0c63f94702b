"""OpenAI Responses (``POST .../responses``), over HTTP and over a WebSocket (Codex).

Over a WebSocket upgraded on a ``.../responses`` path, a client ``response.create`` text message
is the request (read as a ``POST /responses`` body would be) and the server's text messages that
follow are the stream events, one per message, read exactly as the SSE events of a streamed call,
up to the events in :data:`WS_ENDS`.
"""

from __future__ import annotations

from typing import Any

from agentsight.analysis.dialects.common import (
    Call,
    Dialect,
    StreamEvent,
    args_text,
    as_dict,
    as_list,
    as_str,
    custom_tool_call,
    json_object,
    message,
    parse_json,
    tool_call,
)
from agentsight.analysis.dialects.openai_chat import content_parts, usage

__all__ = ["DIALECT", "WS_ENDS", "is_ws_call_start", "ws_event"]

_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
WS_ENDS = _FINAL | {"error"}  # the server messages that end a call made over a WebSocket


def _input_item(item: Any, call: Call) -> None:
    if isinstance(item, str):
        call.messages.append(message("user", [{"type": "text", "text": item}]))
        return
    it = as_dict(item)
    kind = it.get("type")
    if kind in (None, "message"):
        role = as_str(it.get("role")) or "user"
        parts = content_parts(it.get("content"))
        if role in ("system", "developer"):
            text = "\n".join(p["text"] for p in parts if p.get("type") == "text")
            call.system = f"{call.system}\n\n{text}" if call.system else text
            return
        call.messages.append(message(role, parts))
    elif kind == "function_call":
        part = {"type": "tool_call", **tool_call(it.get("call_id"), it.get("name"), it.get("arguments"))}
        call.messages.append(message("assistant", [part]))
    elif kind == "custom_tool_call":
        part = {"type": "tool_call", **custom_tool_call(it.get("call_id"), it.get("name"), it.get("input"))}
        call.messages.append(message("assistant", [part]))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        out = it.get("output")
        part = {"type": "tool_result", "id": as_str(it.get("call_id")), "content": args_text(out)}
        call.messages.append(message("tool", [part]))
    elif kind == "reasoning":
        text = "\n".join(as_str(as_dict(s).get("text")) or "" for s in as_list(it.get("summary")))
        call.messages.append(message("assistant", [{"type": "reasoning", "text": text}]))
    else:
        call.messages.append(message(as_str(it.get("role")) or "user", [{"type": str(kind)}]))


def read_request(body: dict[str, Any], call: Call, path: str) -> None:
    """The prompt side: model, stream asked for, system prompt, messages, tools."""
    call.model_requested = as_str(body.get("model"))
    call.stream = body.get("stream") is True
    call.system = as_str(body.get("instructions"))
    inp = body.get("input")
    for item in [inp] if isinstance(inp, str) else as_list(inp):
        _input_item(item, call)
    for t in as_list(body.get("tools")):
        t = as_dict(t)
        if t.get("type", "function") == "function":
            call.tools.append({"name": as_str(t.get("name")), "description": as_str(t.get("description")),
                               "parameters": t.get("parameters")})
        else:
            call.tools.append({"name": as_str(t.get("name")) or as_str(t.get("type")), "description": None,
                               "parameters": None})


def _output(items: list[Any], call: Call) -> None:
    for item in items:
        it = as_dict(item)
        kind = it.get("type")
        if kind == "message":
            for p in as_list(it.get("content")):
                p = as_dict(p)
                if p.get("type") == "output_text" and isinstance(p.get("text"), str):
                    call.output.append(p["text"])
                elif p.get("type") == "refusal" and isinstance(p.get("refusal"), str):
                    call.output.append(p["refusal"])
        elif kind == "reasoning":
            for s in as_list(it.get("summary")) + as_list(it.get("content")):
                if isinstance(as_dict(s).get("text"), str):
                    call.reasoning.append(as_dict(s)["text"])
        elif kind == "function_call":
            call.tool_calls.append(tool_call(it.get("call_id"), it.get("name"), it.get("arguments")))
        elif kind == "custom_tool_call":
            call.tool_calls.append(custom_tool_call(it.get("call_id"), it.get("name"), it.get("input")))


def _status(call: Call, resp: dict[str, Any]) -> None:
    call.model = as_str(resp.get("model")) or call.model
    call.response_id = as_str(resp.get("id")) or call.response_id
    status = as_str(resp.get("status"))
    if status == "incomplete":
        call.stop_reason = as_str(as_dict(resp.get("incomplete_details")).get("reason")) or status
    elif status:
        call.stop_reason = status
    if resp.get("error"):
        call.error = {"type": as_str(as_dict(resp["error"]).get("code")),
                      "message": as_str(as_dict(resp["error"]).get("message"))}
    usage(call, resp.get("usage"), "input", "output")


def read_response(body: Any, call: Call, ts: int | None) -> None:
    b = as_dict(body)
    _output(as_list(b.get("output")), call)
    _status(call, b)
    call.token(ts)


def read_stream(events: list[StreamEvent], call: Call) -> None:
    items: dict[int, dict[str, Any]] = {}
    text: dict[int, list[str]] = {}
    reasoning: dict[int, list[str]] = {}
    args: dict[int, list[str]] = {}
    free: dict[int, list[str]] = {}  # free-form (custom) tool input
    deltas = {"response.output_text.delta": text, "response.reasoning_summary_text.delta": reasoning,
              "response.reasoning_text.delta": reasoning, "response.function_call_arguments.delta": args,
              "response.custom_tool_call_input.delta": free}
    final: dict[str, Any] | None = None
    read = 0
    for ev in events:
        d = json_object(ev["data"])
        if d is None:
            continue
        read += 1
        kind = d.get("type")
        if type(kind) is not str or not kind:
            kind = ev["event"]
        idx = d.get("output_index")
        if type(idx) is not int:
            idx = 0
        into = deltas.get(kind)
        if into is not None:  # nearly every event: read inline
            delta = d.get("delta")
            into.setdefault(idx, []).append(delta if type(delta) is str else "")
            if call.first_token_ts is None:
                call.token(ev.get("ts_ns"))
        elif kind in ("response.created", "response.in_progress"):
            _status(call, as_dict(d.get("response")))
        elif kind in ("response.output_item.added", "response.output_item.done"):
            items[idx] = as_dict(d.get("item"))  # the finished item is authoritative
        elif kind in _FINAL:
            final = as_dict(d.get("response"))
            call.ended = True
        elif kind == "error":
            # SSE carries {code, message}; a WebSocket error event wraps them: {status, error: {type, message}}
            inner = as_dict(d.get("error"))
            call.error = {"type": as_str(d.get("code")) or as_str(inner.get("type")) or as_str(inner.get("code")),
                          "message": as_str(d.get("message")) or as_str(inner.get("message"))}
    call.events += read
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
        _output(as_list(final.get("output")), call)
    else:
        _output([items[i] for i in sorted(items)], call)
    if final:
        _status(call, final)


def detects(path: str) -> bool:
    return path.endswith("/responses")


def is_ws_call_start(record: dict[str, Any]) -> bool:
    """True for an ``http.ws`` record that opens a call: a client ``response.create``.

    The Realtime API has a ``response.create`` too; its paths (``/v1/realtime``) are not ``.../responses``.
    """
    text = record.get("text")
    if record.get("dir") != "write" or not isinstance(text, str) or "response.create" not in text:
        return False
    path = as_str(record.get("path"))
    if path is not None and not detects(path):
        return False
    return as_dict(parse_json(text)).get("type") == "response.create"


def ws_event(record: dict[str, Any], ts_ns: int | None) -> StreamEvent | None:
    """A server ``http.ws`` text message as the stream event it is (its ``type`` names it), else None."""
    text = record.get("text")
    if record.get("dir") != "read" or not isinstance(text, str):
        return None
    return {"event": as_str(as_dict(parse_json(text)).get("type")) or "message", "data": text, "id": None,
            "retry": None, "end": 0, "ts_ns": ts_ns}


DIALECT = Dialect(
    api="openai.responses",
    provider="openai",
    detects=detects,
    request=read_request,
    response=read_response,
    stream=read_stream,
    end_events=_FINAL,
)
