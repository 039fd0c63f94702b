"""What every LLM API dialect shares: the call being assembled, JSON access, usage normalisation.

A dialect (one module per API in this package) reads a request body into a :class:`Call`, its
answer (a JSON body, or the stream events) into the same call, and says which stream event is
the last one. :mod:`agentsight.analysis.llm` turns a finished call into the ``llm.call`` record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Call", "Dialect", "StreamEvent", "parse_json", "loose_parses", "as_int", "as_str", "as_dict", "as_list",
           "args_text", "tool_call", "custom_tool_call", "message", "sum_known", "finish_usage", "error_from"]

# A stream event as the readers get it: {"event": type, "data": text, "ts_ns": int | None, ...}
# (the record form of an SSE event, or a WebSocket message dressed as one).
StreamEvent = dict[str, Any]


@dataclass
class Call:
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


@dataclass(frozen=True)
class Dialect:
    """One LLM API: how to recognise it and read each of its parts.

    ``request(body, call, path)`` fills the prompt side from the parsed request body;
    ``response(body, call, ts)`` the answer from a parsed JSON answer; ``stream(events, call)``
    the answer from its stream events. A stream event whose type is in ``end_events``, or whose
    data is in ``end_data``, is the stream's last (clients stop reading there).
    """

    api: str
    provider: str  # when the host says nothing
    detects: Callable[[str], bool]  # a POST to this path is this API
    request: Callable[[dict[str, Any], Call, str], None]
    response: Callable[[Any, Call, int | None], None]
    stream: Callable[[list[StreamEvent], Call], None]
    end_events: frozenset[str] = frozenset()
    end_data: frozenset[str] = frozenset()


_loose = [0]  # answers the strict parser refused and the standard library took (see parse_json)


def loose_parses() -> int:
    """How many values :func:`parse_json` took from the standard library so far: those may hold
    what msgpack cannot carry (a lone surrogate, an integer past 64 bits), which the record must
    then repair."""
    return _loose[0]


def parse_json(data: Any) -> Any:
    """A JSON value from text or bytes (orjson; the standard library for what orjson refuses:
    lone surrogates, integers past 64 bits, NaN); None when it is not JSON."""
    if type(data) is not str:  # text (a stream event's data, thousands per call) goes straight on
        if isinstance(data, dict | list):
            return data
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        elif not isinstance(data, str | bytes):
            return None
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        value = json.loads(data.decode("utf-8", "replace") if isinstance(data, bytes) else data)
    except (ValueError, RecursionError):
        return None
    _loose[0] += 1
    return value


def json_object(data: Any) -> dict[str, Any] | None:
    """A stream event's data as a non-empty JSON object, else None (orjson straight away: a call
    has thousands of them; :func:`parse_json` for what orjson refuses)."""
    try:
        d = orjson.loads(data)
    except (ValueError, TypeError):
        d = parse_json(data)
    return d if type(d) is dict and d else None


def as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def as_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


_ARGS_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # json.dumps with these, built once
_PLAIN = frozenset({str, int, bool, type(None)})  # values orjson writes exactly as _ARGS_JSON does
_STR_KEYS = frozenset({str})


def _orjson_writes_alike(v: Any) -> bool:
    """Whether ``v`` holds only what orjson writes byte for byte as ``_ARGS_JSON`` does: text keys,
    strings, integers, booleans, null (no float: the two write exponents differently)."""
    stack = [v]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is dict:
            if x and not set(map(type, x)) <= _STR_KEYS:
                return False
            stack.extend(x.values())
        elif t is list:
            stack.extend(x)
        elif t not in _PLAIN:
            return False
    return True


def args_text(v: Any) -> str:
    """Tool arguments as JSON text (``json.dumps(v, ensure_ascii=False, separators=(",", ":"))``;
    orjson writes it, many times faster, when it writes it the same)."""
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    if _orjson_writes_alike(v):
        try:
            return orjson.dumps(v).decode()
        except (TypeError, orjson.JSONEncodeError):  # an integer past 64 bits, a lone surrogate, too deep
            pass
    return _ARGS_JSON.encode(v)


def tool_call(id_: Any, name: Any, arguments: Any) -> dict[str, Any]:
    text = args_text(arguments)
    if isinstance(arguments, dict | list):
        parsed: Any = arguments  # what parsing its JSON text back would give
    else:
        parsed = parse_json(text) if text.strip() else None
    return {"id": as_str(id_), "name": as_str(name), "arguments": text, "input": parsed}


def custom_tool_call(id_: Any, name: Any, text: Any) -> dict[str, Any]:
    """A free-form ("custom") tool call: its input is plain text, not JSON arguments."""
    raw = as_str(text) or ""
    return {"id": as_str(id_), "name": as_str(name), "arguments": raw, "input": raw}


def message(role: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    text = "\n".join(p["text"] for p in parts if p.get("type") == "text" and p.get("text"))
    return {"role": role, "content": text, "parts": parts}


def sum_known(*values: int | None) -> int | None:
    """Sum of the known values; None if the first (the base count) is unknown."""
    if values[0] is None:
        return None
    return sum(v for v in values if v is not None)


def finish_usage(call: Call, input_tokens: int | None, output_tokens: int | None, cache_read: int | None,
                 cache_write: int | None, reasoning: int | None) -> None:
    """The normalised usage (OpenTelemetry GenAI: input counts cached tokens, output reasoning ones)."""
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


def error_from(body: Any) -> dict[str, Any]:
    """``{type, message}`` of an error body, in any provider's shape."""
    b = as_dict(body)
    err = b.get("error")
    if isinstance(err, dict):
        return {"type": as_str(err.get("type")) or as_str(err.get("status")) or as_str(err.get("code")),
                "message": as_str(err.get("message"))}
    if isinstance(err, str):
        return {"type": None, "message": err}
    return {"type": as_str(b.get("type")), "message": as_str(b.get("message"))}
