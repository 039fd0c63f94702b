"""LLM API calls recognised in HTTP exchanges: one ``llm.call`` record per exchange.

Recognised APIs (``api`` field), streaming (SSE) and not, one dialect module each in
:mod:`agentsight.analysis.dialects` (how each is recognised, its request, answer and stream
readers, its usage):

- ``openai.chat``: ``POST .../chat/completions`` (OpenAI and the many compatible servers)
- ``openai.responses``: ``POST .../responses``, and over a WebSocket (Codex): after a websocket
  upgrade of a ``.../responses`` path, a client ``response.create`` message opens a call and the
  server's Responses events, one per message, fill it up to ``response.completed``/``failed``/
  ``incomplete`` or ``error`` (``transport: "websocket"``; :func:`extract_ws_call`)
- ``anthropic.messages``: ``POST .../v1/messages``
- ``gemini.generate``: ``POST .../models/{model}:generateContent`` and
  ``:streamGenerateContent`` (``alt=sse`` or the streamed JSON array)
- ``gemini.code_assist``: Gemini CLI logged in with Google, ``POST .../v1internal:generateContent``
  and ``:streamGenerateContent?alt=sse`` on Code Assist (``cloudcode-pa.googleapis.com``)

Token usage is normalised the way the OpenTelemetry GenAI conventions define it:
``input_tokens`` counts *every* input token, cached or not (Anthropic reports
cache reads/writes on top of ``input_tokens``, so they are added; OpenAI and
Gemini already include them). ``output_tokens`` includes reasoning tokens
(Gemini reports thoughts apart, so they are added). A count the response did
not carry is ``None`` (unknown), never 0. The provider's own usage object is
kept in ``usage.raw``. The full record layout is in ``docs/analyzers.md``.

Each byte is read once: the stream events come parsed (the http stage parsed the event
stream as it arrived, ``response.sse``), each event's JSON is parsed once by its dialect, and
an exchange the http stage already redacted (``redacted``) has only what this stage joins
(the answer's text, reasoning, tool calls) redacted here.

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
from itertools import repeat
from typing import Any
from urllib.parse import parse_qs

import msgpack

from agentsight.analysis.dialects import BY_API, detect
from agentsight.analysis.dialects.common import (
    Call,
    StreamEvent,
    as_dict,
    as_int,
    as_str,
    error_from,
    parse_json,
)
from agentsight.analysis.dialects.openai_responses import WS_ENDS, is_ws_call_start, ws_event
from agentsight.analysis.httpstream import header_value
from agentsight.analysis.redact import redact_text, redact_value
from agentsight.analysis.sse import as_bytes, clean_timeline, parse_sse
from agentsight.analysis.websocket import OP_CLOSE
from agentsight.event import Event, repair

__all__ = ["LlmCalls", "LlmStats", "extract_call", "extract_ws_call", "is_ws_call_start", "ws_event", "detect_api",
           "provider_for_host", "estimate_cost", "parse_prefix"]

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
_ERROR_BODY_MAX = 4096


def provider_for_host(host: str | None, api: str | None = None) -> str:
    """Provider id for a host (``api.anthropic.com`` -> ``anthropic``); unknown hosts give the host."""
    h = (host or "").split(":")[0].lower()
    for suffix, provider in _HOST_PROVIDERS:
        if h == suffix or h.endswith("." + suffix):
            return provider
    dialect = BY_API.get(api or "")
    return h or (dialect.provider if dialect else "unknown")




def detect_api(method: str | None, path: str | None) -> str | None:
    """Which LLM API a request path is, or None."""
    dialect = detect(method, path)
    return dialect.api if dialect else None


# --------------------------------------------------------------------------- a body cut at max_body

_JSON_TOKEN = re.compile(r'(?s)"(?:[^"\\]|\\.)*"?|[{}\[\],]')


def parse_prefix(text: str) -> Any:
    """The complete part of a JSON text cut short: every member and element that ended before the
    cut, the open objects and arrays closed. None when nothing before the cut is complete."""
    stack: list[str] = []
    cut: tuple[int, int] | None = None  # (offset of the last comma, depth there)
    for m in _JSON_TOKEN.finditer(text):
        t = m.group()
        if t == ",":
            cut = (m.start(), len(stack))
            cut_stack = stack[:]
        elif t in ("{", "["):
            stack.append(t)
        elif t in ("}", "]"):
            if stack:
                stack.pop()
            if cut is not None and len(stack) < cut[1]:
                cut = None  # what followed that comma closed: the cut moves to the next comma
    if cut is None:
        return None
    closing = "".join("}" if c == "{" else "]" for c in reversed(cut_stack))
    try:
        return json.loads(text[: cut[0]] + closing)
    except (ValueError, RecursionError):
        return None


# --------------------------------------------------------------------------- the record

_TS_TYPES = frozenset({int, type(None)})
_DICT, _STR = frozenset({dict}), frozenset({str})


def _stream_events(resp: dict[str, Any]) -> list[StreamEvent]:
    """The response's stream events: as the http stage parsed them, else parsed from the body."""
    sse = resp.get("sse")
    if isinstance(sse, dict) and isinstance(sse.get("events"), list):
        events = sse["events"]
        # As the http stage makes them (every field of the right type): taken as they are, the
        # types checked a field at a time by C loops (a stream has thousands of events).
        if (set(map(type, events)) <= _DICT and set(map(type, map(dict.get, events, repeat("data")))) <= _STR
                and set(map(type, map(dict.get, events, repeat("event")))) <= _STR
                and set(map(type, map(dict.get, events, repeat("ts_ns")))) <= _TS_TYPES):
            return list(events)
        out: list[StreamEvent] = []
        append = out.append
        for e in events:
            if not isinstance(e, dict) or not isinstance(e.get("data"), str):
                continue
            kind, ts = e.get("event"), e.get("ts_ns")
            if type(kind) is not str or type(ts) not in _TS_TYPES:
                e = {**e, "event": as_str(kind) or "message", "ts_ns": as_int(ts)}
            append(e)
        return out
    return [e.as_dict() for e in parse_sse(as_bytes(resp.get("body")), resp.get("timeline"))]


def _request_call(api: str, path: str, req_body: Any, req: dict[str, Any] | None = None) -> Call:
    """A call as its request describes it: the model asked for, the prompt, the tools."""
    call = Call(api)
    body = as_dict(parse_json(req_body))
    if not body and req is not None and req.get("body_truncated") is True:
        body = as_dict(parse_prefix(as_bytes(req.get("body")).decode("utf-8", "ignore")))
        size = req.get("body_size")
        call.notes.append(f"request body cut at {len(as_bytes(req.get('body')))} of {size} bytes: the prompt "
                          "holds what came before the cut" if body else "request body cut, and not JSON before the cut")
    elif not body:
        call.notes.append("request body is not JSON" if req_body else "request body missing")
    BY_API[api].request(body, call, path)
    return call


def _body(msg: dict[str, Any]) -> Any:
    return msg.get("body_text") if msg.get("body_text") is not None else msg.get("body")


def extract_call(exchange: dict[str, Any], *, prices: bool = True) -> dict[str, Any] | None:
    """Build the ``llm.call`` record of one ``http.exchange`` data dict; None if not an LLM call."""
    req = exchange.get("request")
    if not isinstance(req, dict):
        return None
    dialect = detect(req.get("method"), req.get("path"))
    if dialect is None:
        return None
    api = dialect.api
    path = as_str(req.get("path")) or ""
    query = parse_qs(as_str(req.get("query")) or "")
    call = _request_call(api, path, _body(req), req)

    resp = exchange.get("response")
    status: int | None = None
    if isinstance(resp, dict):
        status = as_int(resp.get("status_code"))
        ctype = (as_str(resp.get("content_type")) or "").lower()
        if ctype.startswith("text/event-stream"):
            call.stream = True
            dialect.stream(_stream_events(resp), call)
        else:
            rbody = parse_json(_body(resp))
            if status is not None and status >= 400:
                call.error = error_from(rbody)
            elif rbody is not None:
                timeline = clean_timeline(resp.get("timeline"))
                first_body_ts = timeline[0][1] if timeline else as_int(resp.get("ts_first_byte_ns"))
                dialect.response(rbody, call, first_body_ts)
            elif resp.get("body"):
                call.notes.append("response body cut, and not JSON before the cut" if resp.get("body_truncated")
                                  is True else "response body is not JSON")
        if status is not None and status >= 400 and call.error is not None:
            text = as_str(resp.get("body_text"))
            call.error["body"] = text[:_ERROR_BODY_MAX] if text else None
        # An SDK that saw the stream's end marker may close the connection before the
        # chunked body's terminator (openai-python does): the answer is whole all the same.
        if not resp.get("complete", True) and not call.ended:
            call.notes.append(f"response incomplete: {resp.get('error')}")
    else:
        call.notes.append("no response captured")
    if status is not None and status >= 400 and call.error is None:
        call.error = {"type": None, "message": None, "body": as_str(as_dict(resp).get("body_text"))}
    if call.error is not None:
        call.error["status"] = status
    return _record(call, host=as_str(req.get("host")) or as_str(exchange.get("host")), path=path,
                   stream=call.stream or "alt" in query and query["alt"] == ["sse"], status=status,
                   user_agent=header_value(req.get("headers"), "user-agent"), conn=exchange.get("conn"),
                   seq=exchange.get("seq"), t_start=as_int(exchange.get("ts_request_start_ns")),
                   t_first=as_int(exchange.get("ts_response_first_byte_ns")),
                   t_end=as_int(exchange.get("ts_response_end_ns")), prices=prices)


def _record(call: Call, *, host: str | None, path: str, stream: bool, status: int | None,
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


def extract_ws_call(create: dict[str, Any], events: list[StreamEvent], *, user_agent: str | None = None,
                    ts_first: int | None = None, ts_end: int | None = None, cut: str | None = None,
                    prices: bool = True) -> dict[str, Any]:
    """Build the ``llm.call`` of a Responses call made over WebSocket.

    ``create`` is the ``http.ws`` record of the client's ``response.create`` (its body is the
    request, as a POST /responses body would be); ``events`` the server messages that followed
    (:func:`ws_event`), handled exactly as the SSE events of a streamed Responses call; ``cut``
    says why the call ended before its last event (the connection closed...).
    """
    dialect = BY_API["openai.responses"]
    call = _request_call(dialect.api, as_str(create.get("path")) or "", create.get("text"))
    call.stream = True
    dialect.stream(events, call)
    status: int | None = None
    last = as_dict(parse_json(events[-1]["data"])) if events else {}
    if last.get("type") == "error":
        status = as_int(last.get("status")) or as_int(last.get("status_code"))
        if call.error is not None:
            call.error["body"] = events[-1]["data"][:_ERROR_BODY_MAX]
    if call.error is not None:
        call.error["status"] = status
    if cut is not None and not call.ended:
        call.notes.append(f"response incomplete: {cut}")
    if not events:
        call.notes.append("no response captured")
    record = _record(call, host=as_str(create.get("host")), path=as_str(create.get("path")) or "", stream=True,
                     status=status, user_agent=user_agent, conn=create.get("conn"), seq=create.get("seq"),
                     t_start=as_int(create.get("ts_start_ns")), t_first=ts_first, t_end=ts_end, prices=prices,
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


_TOPICS = frozenset({"http.exchange", "http.ws", "http.ws.end"})


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
    events: list[StreamEvent] = field(default_factory=list)
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
        if event.topic not in _TOPICS:  # stream chunks and events, by far the most: not read here
            return []
        d = event.data
        if event.topic == "http.exchange":
            self.stats.exchanges += 1
            self._note_upgrade(d)
            return self._emit(event, lambda: extract_call(d, prices=self.prices), d.get("redacted") is True)
        if event.topic == "http.ws":
            self.stats.ws_messages += 1
            return self._ws_message(event)
        if event.topic == "http.ws.end":
            conn = str(d.get("conn"))
            out = self._ws_close(conn, event, "connection closed before the response ended")
            self._ws_agents.pop(conn, None)
            return out
        return []

    def _emit(self, event: Event, build: Callable[[], dict[str, Any] | None], redacted: bool = False) -> list[Event]:
        """Build a record; a payload shape this code did not foresee is counted, reported, never fatal.

        ``redacted``: the exchange was redacted by the http stage, so only what the record joins
        (the answer's deltas, tool call fragments) is redacted here, not the whole prompt again.
        """
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
            record = _redact_joined(record) if redacted else redact_value(record)
        # JSON brings what msgpack cannot carry (a lone surrogate of a string cut inside an
        # emoji, integers past 64 bits): escaped here, so the record travels as it is. Packing
        # is the cheap test (the record is rarely one of those).
        try:
            msgpack.packb(record, use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            record = repair(record)
        return [Event("llm.call", event.ts_ns, self.source, event.pid, event.tid, event.comm, record)]

    # ------------------------------------------------------------------ WebSocket

    def _note_upgrade(self, exchange: dict[str, Any]) -> None:
        """Remember the User-Agent of a websocket upgrade: its calls come later, as messages."""
        resp, req = as_dict(exchange.get("response")), as_dict(exchange.get("request"))
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
            call.ts_first = as_int(d.get("ts_start_ns")) or event.ts_ns
        return self._ws_close(conn, event, None) if ev["event"] in WS_ENDS else []

    def _ws_close(self, conn: str, event: Event, cut: str | None) -> list[Event]:
        """Emit the call open on ``conn`` (if any); ``cut`` says why it ended early."""
        call = self._ws_calls.pop(conn, None)
        if call is None:
            return []
        return self._emit(event, lambda: extract_ws_call(
            call.create, call.events, user_agent=self._ws_agents.get(conn), ts_first=call.ts_first,
            ts_end=event.ts_ns, cut=cut, prices=self.prices))


def _redact_joined(record: dict[str, Any]) -> dict[str, Any]:
    """Redact what the record made by joining pieces that were redacted one by one (a key split
    across two answer deltas is whole only here); the rest came from redacted records."""
    record["output_text"] = redact_text(record["output_text"])
    if record["reasoning"] is not None:
        record["reasoning"] = redact_text(record["reasoning"])
    if record["tool_calls"]:
        record["tool_calls"] = redact_value(record["tool_calls"])
    if record["error"] is not None:
        record["error"] = redact_value(record["error"])
    return record
