"""agentsight records as OpenTelemetry GenAI spans and measurements: the mapping, no I/O.

Theory of operation. :class:`SpanMapper` is fed every event a sink receives and returns
the spans they complete, as :class:`SpanSpec` (name, times, attributes, and *keys* for the
span, its parent and its trace). The OTLP sink (:mod:`agentsight.recording.otlp`) turns each key into
a fixed OpenTelemetry id (a hash of the key), so a child can point at its parent before
the parent ends, and a restarted sink keeps pointing at the same parents.

- ``session.start`` / ``session.end`` -> one ``invoke_agent {agent}`` span per agent
  session, from the session's start to its end (emitted at its end, or when the export
  stops while it runs: ``agentsight.session.open``). A sub-agent's session is a child of
  the session it was started from, in the same trace.
- ``llm.call`` -> one ``{operation} {model}`` span (``chat``, or ``generate_content`` for
  Gemini), from the request's first byte to the response's last, a child of its
  session's span.
- each tool call the model asked for (``llm.call`` ``tool_calls``) -> one ``execute_tool
  {name}`` span, a child of the session's span with a link to the call that asked for it,
  from the end of that call to the start of the first later request of the session that
  carries the tool's result (or to the session's end when none did).
- an MCP ``tools/call`` (``mcp.call``) -> a ``tools/call {tool}`` span under the
  ``execute_tool`` span of the model's tool call it ran, or an ``execute_tool`` span of its
  own under the session when no model tool call is linked (:meth:`SpanMapper.mcp_call`).

Attribute sets (``ATTRIBUTE_SETS``): ``genai`` is the OpenTelemetry GenAI semantic
conventions plus the general ``server.*``, ``process.*``, ``session.id``, ``error.type``;
``openinference`` adds the OpenInference names (``openinference.span.kind``,
``llm.model_name``, ``llm.token_count.*``, ``input.value`` ...) that Phoenix and Arize read.
``agentsight.*`` attributes (api, transport, cost, session aggregates) are always there.
Prompts, answers, tool arguments and results are opt-in (``content``) and redacted.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from agentsight.analysis.redact import redact_value
from agentsight.event import Event

__all__ = ["ATTRIBUTE_SETS", "SpanSpec", "Measurement", "SpanMapper", "provider_name", "operation_name",
           "llm_call_attributes", "call_measurements", "input_messages", "output_messages"]

ATTRIBUTE_SETS = ("genai", "openinference")

# agentsight provider ids (analysis.llm) -> gen_ai.provider.name (the conventions' well-known values,
# else the provider id as it is).
_GENAI_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure.ai.openai",
    "groq": "groq",
    "deepseek": "deepseek",
    "mistral": "mistral_ai",
    "x-ai": "x_ai",
    "perplexity": "perplexity",
    "cohere": "cohere",
}
# OpenInference llm.provider / llm.system values.
_OI_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "google": "google", "azure": "azure",
                 "groq": "groq", "deepseek": "deepseek", "mistral": "mistralai", "x-ai": "xai",
                 "together": "together", "fireworks": "fireworks", "perplexity": "perplexity"}
_OI_SYSTEMS = {"openai": "openai", "azure": "openai", "anthropic": "anthropic", "mistral": "mistralai"}

MAX_PENDING_TOOLS = 4096
MAX_PROCESSES = 8192
MAX_SESSIONS = 65536


def provider_name(call: dict[str, Any]) -> str:
    """``gen_ai.provider.name`` of an ``llm.call``."""
    provider = str(call.get("provider") or "")
    if provider == "google":
        host = str(call.get("host") or "")
        if call.get("api") == "gemini.code_assist":
            return "gcp.gen_ai"
        return "gcp.vertex_ai" if "aiplatform.googleapis.com" in host else "gcp.gemini"
    return _GENAI_PROVIDERS.get(provider, provider or "unknown")


def operation_name(call: dict[str, Any]) -> str:
    """``gen_ai.operation.name``: ``generate_content`` for the Gemini APIs, ``chat`` otherwise."""
    return "generate_content" if str(call.get("api") or "").startswith("gemini.") else "chat"


def _server(host: Any) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` from a request host (``api.openai.com``, ``127.0.0.1:8443``)."""
    if not isinstance(host, str) or not host:
        return None, None
    if host.startswith("["):  # [::1]:443
        addr, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        addr, _, port = host.partition(":")
    else:
        addr, port = host, ""
    return addr, int(port) if port.isdigit() else 443


def _error_type(call: dict[str, Any]) -> str | None:
    """``error.type`` of a call that failed (the provider's error type, else the HTTP status), else None."""
    err, status = call.get("error"), call.get("status_code")
    if isinstance(err, dict) and err.get("type"):
        return str(err["type"])
    if isinstance(status, int) and status >= 400:
        return str(status)
    return "error" if isinstance(err, dict) else None


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _put(attrs: dict[str, Any], key: str, value: Any) -> None:
    """Set an attribute unless the value is unknown (None or empty)."""
    if value is None or value == "" or value == []:
        return
    attrs[key] = value


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# --------------------------------------------------------------------------- content (opt-in)


def _part(p: dict[str, Any]) -> dict[str, Any]:
    """One ``llm.call`` message part in the conventions' message-part shape."""
    kind = p.get("type")
    if kind == "text":
        return {"type": "text", "content": p.get("text") or ""}
    if kind == "reasoning":
        return {"type": "reasoning", "content": p.get("text") or ""}
    if kind == "tool_call":
        args = p.get("input") if p.get("input") is not None else p.get("arguments")
        return {"type": "tool_call", "id": p.get("id"), "name": p.get("name"), "arguments": args}
    if kind == "tool_result":
        return {"type": "tool_call_response", "id": p.get("id"), "response": p.get("content")}
    return {"type": str(kind or "unknown")}


def input_messages(call: dict[str, Any]) -> list[dict[str, Any]]:
    """``gen_ai.input.messages``: the request's messages (the system prompt goes apart)."""
    out = []
    for m in call.get("messages") or []:
        if not isinstance(m, dict):
            continue
        parts = [_part(p) for p in m.get("parts") or [] if isinstance(p, dict)]
        if not parts and m.get("content"):
            parts = [{"type": "text", "content": m["content"]}]
        out.append({"role": m.get("role") or "user", "parts": parts})
    return out


def output_messages(call: dict[str, Any]) -> list[dict[str, Any]]:
    """``gen_ai.output.messages``: the answer as one assistant message."""
    parts: list[dict[str, Any]] = []
    if call.get("reasoning"):
        parts.append({"type": "reasoning", "content": call["reasoning"]})
    if call.get("output_text"):
        parts.append({"type": "text", "content": call["output_text"]})
    for tc in call.get("tool_calls") or []:
        if isinstance(tc, dict):
            parts.append(_part({"type": "tool_call", **tc}))
    if not parts and call.get("error") is None and call.get("status_code") is None:
        return []
    return [{"role": "assistant", "parts": parts, "finish_reason": str(call.get("stop_reason") or "")}]


def _tool_definitions(call: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "name": t.get("name"), "description": t.get("description"),
             "parameters": t.get("parameters")} for t in call.get("tools") or [] if isinstance(t, dict)]


def _clip(text: str, limit: int) -> str:
    if limit and len(text) > limit:
        return text[:limit] + f"...[{len(text) - limit} more characters]"
    return text


# --------------------------------------------------------------------------- llm.call


@dataclass
class SpanSpec:
    """A finished span to export: ids come from the keys (the same key, the same id)."""

    name: str
    kind: str                      # "client" or "internal"
    start_ns: int
    end_ns: int
    key: str                       # this span
    trace: str                     # the trace it belongs to (its root's key)
    parent: str | None = None      # the parent span's key
    attributes: dict[str, Any] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)   # keys of spans (same trace) this one follows from
    error: str | None = None       # status ERROR with this description


@dataclass
class Measurement:
    """One value for a histogram of the conventions."""

    instrument: str
    value: float
    attributes: dict[str, Any]


def _usage(call: dict[str, Any]) -> dict[str, Any]:
    u = call.get("usage")
    return u if isinstance(u, dict) else {}


def _process_attributes(attrs: dict[str, Any], proc: dict[str, Any] | None, pid: int, tid: int, comm: str) -> None:
    attrs["process.pid"] = pid
    if tid and tid != pid:
        attrs["thread.id"] = tid
    _put(attrs, "process.executable.name", comm or (proc or {}).get("comm"))
    if proc:
        _put(attrs, "process.executable.path", proc.get("exe"))
        argv = [str(a) for a in proc.get("argv") or []]
        _put(attrs, "process.command_args", argv)
        if proc.get("ppid"):
            attrs["process.parent_pid"] = proc["ppid"]


def llm_call_attributes(call: dict[str, Any], *, sets: tuple[str, ...] = ("genai",), content: bool = False,
                        max_content: int = 0) -> dict[str, Any]:
    """The attributes of an ``llm.call``'s span (process and session attributes are added by the mapper)."""
    attrs: dict[str, Any] = {}
    usage = _usage(call)
    model = call.get("model") or call.get("model_requested")
    inp, out = usage.get("input_tokens"), usage.get("output_tokens")
    cache_read, cache_write = usage.get("cache_read_tokens"), usage.get("cache_write_tokens")
    reasoning = usage.get("reasoning_tokens")
    status = call.get("status_code")
    if "genai" in sets:
        attrs["gen_ai.operation.name"] = operation_name(call)
        attrs["gen_ai.provider.name"] = provider_name(call)
        _put(attrs, "gen_ai.request.model", call.get("model_requested"))
        _put(attrs, "gen_ai.response.model", call.get("model"))
        _put(attrs, "gen_ai.response.id", call.get("response_id"))
        if call.get("stop_reason"):
            attrs["gen_ai.response.finish_reasons"] = [str(call["stop_reason"])]
        _put(attrs, "gen_ai.usage.input_tokens", inp)
        _put(attrs, "gen_ai.usage.output_tokens", out)
        _put(attrs, "gen_ai.usage.cache_read.input_tokens", cache_read)
        _put(attrs, "gen_ai.usage.cache_creation.input_tokens", cache_write)
        _put(attrs, "gen_ai.usage.reasoning.output_tokens", reasoning)
        attrs["gen_ai.request.stream"] = bool(call.get("stream"))
        if isinstance(call.get("ttft_ms"), (int, float)):
            attrs["gen_ai.response.time_to_first_chunk"] = call["ttft_ms"] / 1000.0
        address, port = _server(call.get("host"))
        _put(attrs, "server.address", address)
        _put(attrs, "server.port", port)
        _put(attrs, "http.response.status_code", status)
        _put(attrs, "user_agent.original", call.get("user_agent"))
        _put(attrs, "error.type", _error_type(call))
    if "openinference" in sets:
        attrs["openinference.span.kind"] = "LLM"
        _put(attrs, "llm.model_name", model)
        provider = str(call.get("provider") or "")
        _put(attrs, "llm.provider", _OI_PROVIDERS.get(provider, provider))
        _put(attrs, "llm.system", _OI_SYSTEMS.get(provider, "vertexai" if provider == "google" else None))
        _put(attrs, "llm.token_count.prompt", inp)
        _put(attrs, "llm.token_count.completion", out)
        _put(attrs, "llm.token_count.total", usage.get("total_tokens"))
        _put(attrs, "llm.token_count.prompt_details.cache_read", cache_read)
        _put(attrs, "llm.token_count.prompt_details.cache_write", cache_write)
        _put(attrs, "llm.token_count.completion_details.reasoning", reasoning)
        _put(attrs, "llm.finish_reason", call.get("stop_reason"))
        cost = call.get("cost")
        if isinstance(cost, dict) and isinstance(cost.get("total"), (int, float)):
            attrs["llm.cost.total"] = float(cost["total"])
    attrs["agentsight.llm.api"] = call.get("api") or ""
    _put(attrs, "agentsight.llm.transport", call.get("transport"))
    cost = call.get("cost")
    if isinstance(cost, dict) and isinstance(cost.get("total"), (int, float)):
        attrs["agentsight.llm.cost_usd"] = float(cost["total"])
    if call.get("notes"):
        attrs["agentsight.llm.notes"] = [str(n) for n in call["notes"]]
    if content:
        _content_attributes(attrs, call, sets, max_content)
    return attrs


def _content_attributes(attrs: dict[str, Any], call: dict[str, Any], sets: tuple[str, ...], limit: int) -> None:
    """Prompt, answer and tools (opt-in), redacted; each attribute at most ``limit`` characters."""
    call = redact_value(call)
    system = [{"type": "text", "content": call["system"]}] if call.get("system") else []
    inputs, outputs, tools = input_messages(call), output_messages(call), _tool_definitions(call)
    if "genai" in sets:
        if system:
            attrs["gen_ai.system_instructions"] = _clip(_json(system), limit)
        attrs["gen_ai.input.messages"] = _clip(_json(inputs), limit)
        if outputs:
            attrs["gen_ai.output.messages"] = _clip(_json(outputs), limit)
        if tools:
            attrs["gen_ai.tool.definitions"] = _clip(_json(tools), limit)
    if "openinference" in sets:
        attrs["input.value"] = _clip(_json({"system": call.get("system"), "messages": inputs}), limit)
        attrs["input.mime_type"] = "application/json"
        attrs["output.value"] = _clip(str(call.get("output_text") or ""), limit)
        attrs["output.mime_type"] = "text/plain"
        msgs = ([{"role": "system", "parts": system}] if system else []) + inputs
        _oi_messages(attrs, "llm.input_messages", msgs, limit)
        _oi_messages(attrs, "llm.output_messages", outputs, limit)
        for i, t in enumerate(tools):
            attrs[f"llm.tools.{i}.tool.json_schema"] = _clip(_json(
                {"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}), limit)


def _oi_messages(attrs: dict[str, Any], prefix: str, messages: list[dict[str, Any]], limit: int) -> None:
    """OpenInference's flattened messages: ``{prefix}.{i}.message.role/content/tool_calls...``."""
    for i, m in enumerate(messages):
        base = f"{prefix}.{i}.message"
        attrs[f"{base}.role"] = str(m.get("role") or "")
        text = "".join(str(p.get("content") or "") for p in m["parts"] if p.get("type") == "text")
        calls = [p for p in m["parts"] if p.get("type") == "tool_call"]
        result = next((p for p in m["parts"] if p.get("type") == "tool_call_response"), None)
        if result is not None:
            _put(attrs, f"{base}.tool_call_id", result.get("id"))
            resp = result.get("response")
            text = resp if isinstance(resp, str) else _json(resp)
        if text:
            attrs[f"{base}.content"] = _clip(text, limit)
        for j, c in enumerate(calls):
            cb = f"{base}.tool_calls.{j}.tool_call"
            _put(attrs, f"{cb}.id", c.get("id"))
            _put(attrs, f"{cb}.function.name", c.get("name"))
            args = c.get("arguments")
            attrs[f"{cb}.function.arguments"] = _clip(args if isinstance(args, str) else _json(args), limit)


def call_measurements(call: dict[str, Any], extra: dict[str, Any] | None = None) -> list[Measurement]:
    """The conventions' client metrics for one ``llm.call``: token usage, duration, time to first chunk."""
    attrs: dict[str, Any] = {"gen_ai.operation.name": operation_name(call),
                             "gen_ai.provider.name": provider_name(call)}
    _put(attrs, "gen_ai.request.model", call.get("model_requested"))
    _put(attrs, "gen_ai.response.model", call.get("model"))
    address, port = _server(call.get("host"))
    _put(attrs, "server.address", address)
    _put(attrs, "server.port", port)
    attrs.update(extra or {})
    out: list[Measurement] = []
    usage = _usage(call)
    for kind in ("input", "output"):
        n = usage.get(f"{kind}_tokens")
        if isinstance(n, int):
            out.append(Measurement("gen_ai.client.token.usage", n, {**attrs, "gen_ai.token.type": kind}))
    failed = {**attrs}
    _put(failed, "error.type", _error_type(call))
    if isinstance(call.get("duration_ms"), (int, float)):
        out.append(Measurement("gen_ai.client.operation.duration", call["duration_ms"] / 1000.0, failed))
    if call.get("stream") and isinstance(call.get("ttft_ms"), (int, float)):
        out.append(Measurement("gen_ai.client.operation.time_to_first_chunk", call["ttft_ms"] / 1000.0, attrs))
    return out


# --------------------------------------------------------------------------- the mapper


@dataclass
class _Session:
    id: str
    agent: str
    pid: int
    start_ns: int
    parent: str | None = None
    exe: str = ""
    argv: list[str] = field(default_factory=list)
    comm: str = ""
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    tools: int = 0
    pids: set[int] = field(default_factory=set)
    last_ns: int = 0
    sample: dict[str, Any] | None = None   # the latest system.sample of its tree


@dataclass
class _Tool:
    scope: str                     # the session, or "pid:N" for a call in no session
    name: str
    call_id: str
    start_ns: int
    session: str | None
    trace: str
    parent: str | None
    llm_key: str
    arguments: Any
    pid: int
    comm: str


class SpanMapper:
    """Events in, finished :class:`SpanSpec` out (see the module docstring)."""

    # The topics it reads; anything else only moves the clock (``last_ns``) and may be skipped.
    TOPICS = frozenset({"llm.call", "process.exec", "process.fork", "session.start", "session.end", "system.sample",
                        "mcp.call"})

    def __init__(self, *, sets: tuple[str, ...] = ("genai",), content: bool = False, max_content: int = 0) -> None:
        self.sets = tuple(sets)
        self.content = content
        self.max_content = max_content
        self.sessions: dict[str, _Session] = {}
        self.parents: OrderedDict[str, str | None] = OrderedDict()   # session -> the one it was started from
        self.processes: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.pending: OrderedDict[tuple[str, str], _Tool] = OrderedDict()
        # Tool calls whose span was sent (scope, id) -> its trace: an MCP call that ran it comes under it.
        self.closed_tools: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.last_ns = 0
        self.stats: dict[str, int] = {}

    def _count(self, stat: str, n: int = 1) -> None:
        self.stats[stat] = self.stats.get(stat, 0) + n

    # ------------------------------------------------------------------ keys

    def trace_of(self, session: str | None) -> str | None:
        """The key of a session's trace: its root session (a sub-agent shares its parent's trace)."""
        if session is None:
            return None
        seen = {session}
        while (up := self.parents.get(session)) is not None and up not in seen:
            seen.add(up)
            session = up
        return f"session:{session}"

    @staticmethod
    def session_key(session: str) -> str:
        return f"session:{session}"

    # ------------------------------------------------------------------ input

    def feed(self, event: Event) -> list[SpanSpec]:
        self.last_ns = max(self.last_ns, event.ts_ns)
        topic, d = event.topic, event.data
        if topic == "llm.call":
            return self.llm_call(event)
        if topic == "process.exec":
            self._process(event.pid, d.get("ppid"), event.comm, d.get("filename"), d.get("argv"))
            self._joined(d.get("session"), event.pid)
        elif topic == "process.fork":
            child = d["child_pid"] if isinstance(d.get("child_pid"), int) else event.pid
            parent = self.processes.get(int(d.get("ppid") or 0))
            if parent is not None:
                self._process(child, d.get("ppid"), parent.get("comm"), parent.get("exe"), parent.get("argv"))
            self._joined(d.get("session"), child)
        elif topic == "session.start":
            self._session_started(d, event)
        elif topic == "session.end":
            return self._session_ended(d, event)
        elif topic == "system.sample" and d.get("scope") == "tree":
            s = self.sessions.get(d.get("session") or "")
            if s is not None:
                s.sample = {"cpu_percent": d.get("cpu_percent"), "rss_bytes": d.get("rss_bytes"),
                            "processes": d.get("processes")}
        elif topic == "mcp.call":
            return self.mcp_call(event)
        return []

    def _process(self, pid: int, ppid: Any, comm: Any, exe: Any, argv: Any) -> None:
        self.processes[pid] = {"ppid": ppid if isinstance(ppid, int) else 0, "comm": str(comm or ""),
                               "exe": str(exe or ""), "argv": [str(a) for a in argv or []]}
        self.processes.move_to_end(pid)
        while len(self.processes) > MAX_PROCESSES:
            self.processes.popitem(last=False)

    def _joined(self, session: Any, pid: int) -> None:
        s = self.sessions.get(session) if isinstance(session, str) else None
        if s is not None:
            s.pids.add(pid)

    def _session_started(self, d: dict[str, Any], event: Event) -> None:
        sid = d.get("session")
        if not isinstance(sid, str):
            return
        s = _Session(sid, str(d.get("agent") or "agent"), int(d.get("pid") or event.pid),
                     int(d.get("start_ns") or event.ts_ns), d.get("parent") if isinstance(d.get("parent"), str) else None,
                     str(d.get("exe") or ""), [str(a) for a in d.get("argv") or []], str(d.get("comm") or event.comm))
        s.pids.update(p for p in d.get("pids") or [] if isinstance(p, int))
        s.pids.add(s.pid)
        self.sessions[sid] = s
        self.parents[sid] = s.parent
        while len(self.parents) > MAX_SESSIONS:  # the oldest sessions' sub-agents would start a trace of their own
            self.parents.popitem(last=False)
        if s.exe and s.pid not in self.processes:
            self._process(s.pid, 0, s.comm, s.exe, s.argv)

    def _session_ended(self, d: dict[str, Any], event: Event) -> list[SpanSpec]:
        sid = d.get("session")
        if not isinstance(sid, str):
            return []
        s = self.sessions.pop(sid, None)
        if s is None:  # started before this sink did (a restart): what the end says is enough
            s = _Session(sid, str(d.get("agent") or "agent"), int(d.get("pid") or event.pid),
                         int(d.get("start_ns") or event.ts_ns),
                         d.get("parent") if isinstance(d.get("parent"), str) else None, comm=event.comm)
            self.parents.setdefault(sid, s.parent)
        end = int(d.get("end_ns") or event.ts_ns)
        spans = [self._tool_span(t, end, None) for t in self._pending_of(sid)]
        spans.append(self._session_span(s, end, exit_code=d.get("exit_code"), still_open=False))
        return spans

    def _pending_of(self, session: str | None) -> list[_Tool]:
        keys = [k for k, t in self.pending.items() if t.session == session]
        return [self.pending.pop(k) for k in keys]

    def _session_span(self, s: _Session, end_ns: int, *, exit_code: Any, still_open: bool) -> SpanSpec:
        attrs: dict[str, Any] = {}
        if "genai" in self.sets:
            attrs.update({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": s.agent,
                          "gen_ai.agent.id": s.id, "gen_ai.conversation.id": s.id, "session.id": s.id})
        if "openinference" in self.sets:
            attrs.update({"openinference.span.kind": "AGENT", "agent.name": s.agent, "session.id": s.id})
        proc = self.processes.get(s.pid) or {"exe": s.exe, "argv": s.argv, "comm": s.comm}
        _process_attributes(attrs, proc, s.pid, 0, s.comm or str(proc.get("comm") or ""))
        if isinstance(exit_code, int):
            attrs["process.exit.code"] = exit_code
        _put(attrs, "agentsight.session.parent", s.parent)
        attrs.update({"agentsight.session.llm_calls": s.calls, "agentsight.session.tool_calls": s.tools,
                      "agentsight.session.input_tokens": s.input_tokens,
                      "agentsight.session.output_tokens": s.output_tokens,
                      "agentsight.session.processes": len(s.pids)})
        if s.cost:
            attrs["agentsight.session.cost_usd"] = round(s.cost, 6)
        if still_open:
            attrs["agentsight.session.open"] = True
        parent = self.session_key(s.parent) if s.parent else None
        return SpanSpec(f"invoke_agent {s.agent}", "internal", s.start_ns, max(end_ns, s.start_ns),
                        self.session_key(s.id), self.trace_of(s.id) or self.session_key(s.id), parent, attrs)

    def llm_call(self, event: Event) -> list[SpanSpec]:
        call = event.data
        sid = call.get("session") if isinstance(call.get("session"), str) else None
        start = call.get("ts_request_start_ns") or event.ts_ns
        end = call.get("ts_end_ns") or event.ts_ns
        ident = f"{call.get('conn')}:{call.get('seq')}:{call.get('ws_index')}:{start}"
        key = f"llm:{sid}:{ident}"
        trace = self.trace_of(sid) or key
        parent = self.session_key(sid) if sid else None
        spans: list[SpanSpec] = []
        # Tool calls whose result this request carries ran between their call and now.
        for m in call.get("messages") or []:
            for p in (m.get("parts") or []) if isinstance(m, dict) else []:
                if isinstance(p, dict) and p.get("type") == "tool_result":
                    tool = self.pending.pop((sid or f"pid:{event.pid}", str(p.get("id"))), None)
                    if tool is not None:
                        spans.append(self._tool_span(tool, start, p))
        attrs = llm_call_attributes(call, sets=self.sets, content=self.content, max_content=self.max_content)
        _process_attributes(attrs, self.processes.get(event.pid), event.pid, event.tid, event.comm)
        if sid:
            attrs["session.id"] = sid
            if "genai" in self.sets:
                attrs["gen_ai.conversation.id"] = sid
                _put(attrs, "gen_ai.agent.name", call.get("agent"))
        model = call.get("model_requested") or call.get("model") or "unknown"
        op = operation_name(call)
        error = None
        if _error_type(call) is not None:
            err = call["error"] if isinstance(call.get("error"), dict) else {}
            error = str(err.get("message") or f"HTTP {call.get('status_code')}")[:200]
        spans.append(SpanSpec(f"{op} {model}", "client", int(start), int(max(end, start)), key, trace, parent,
                              attrs, error=error))
        s = self.sessions.get(sid or "")
        if s is not None:
            usage = _usage(call)
            s.calls += 1
            s.input_tokens += usage.get("input_tokens") or 0
            s.output_tokens += usage.get("output_tokens") or 0
            cost = call.get("cost")
            if isinstance(cost, dict) and isinstance(cost.get("total"), (int, float)):
                s.cost += float(cost["total"])
        for tc in call.get("tool_calls") or []:
            if not isinstance(tc, dict) or not tc.get("id"):
                continue
            if s is not None:
                s.tools += 1
            scope = sid or f"pid:{event.pid}"
            self.pending[(scope, str(tc["id"]))] = _Tool(
                scope, str(tc.get("name") or "tool"), str(tc["id"]), int(max(end, start)), sid, trace, parent, key,
                tc.get("input") if tc.get("input") is not None else tc.get("arguments"), event.pid, event.comm)
            while len(self.pending) > MAX_PENDING_TOOLS:  # never answered: closed where it started
                _, old = self.pending.popitem(last=False)
                spans.append(self._tool_span(old, old.start_ns, None))
                self._count("tool_results_not_seen")
        return spans

    def _tool_span(self, t: _Tool, end_ns: int, result: dict[str, Any] | None) -> SpanSpec:
        self.closed_tools[(t.scope, t.call_id)] = t.trace
        while len(self.closed_tools) > MAX_PENDING_TOOLS:
            self.closed_tools.popitem(last=False)
        attrs: dict[str, Any] = {}
        if "genai" in self.sets:
            attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": t.name,
                          "gen_ai.tool.call.id": t.call_id, "gen_ai.tool.type": "function"})
            if t.session:
                attrs["gen_ai.conversation.id"] = t.session
        if "openinference" in self.sets:
            attrs.update({"openinference.span.kind": "TOOL", "tool.name": t.name, "tool.id": t.call_id})
        if t.session:
            attrs["session.id"] = t.session
        attrs["agentsight.tool.result_seen"] = result is not None
        if result is not None and result.get("is_error"):
            attrs["error.type"] = "tool_error"
        if self.content:
            args = redact_value(t.arguments)
            args_text = _clip(args if isinstance(args, str) else _json(args), self.max_content)
            res = redact_value(result.get("content")) if result is not None else None
            res_text = _clip(res if isinstance(res, str) else _json(res), self.max_content) if res is not None else None
            if "genai" in self.sets:
                attrs["gen_ai.tool.call.arguments"] = args_text
                _put(attrs, "gen_ai.tool.call.result", res_text)
            if "openinference" in self.sets:
                attrs["input.value"] = args_text
                attrs["input.mime_type"] = "application/json" if not isinstance(args, str) else "text/plain"
                _put(attrs, "output.value", res_text)
        attrs["process.pid"] = t.pid
        _put(attrs, "process.executable.name", t.comm)
        error = "the tool reported an error" if result is not None and result.get("is_error") else None
        return SpanSpec(f"execute_tool {t.name}", "internal", t.start_ns, max(end_ns, t.start_ns),
                        f"tool:{t.scope}:{t.call_id}", t.trace, t.parent, attrs, links=[t.llm_key], error=error)

    def mcp_call(self, event: Event) -> list[SpanSpec]:
        """An MCP ``tools/call`` (the ``mcp`` stage's ``mcp.call``) as a span.

        Linked to the model's tool call that asked for it (``llm.tool_call_id``): a ``tools/call
        {tool}`` CLIENT span, child of that tool call's ``execute_tool`` span (whose id is known
        from its key, whether it was sent already or not), from the MCP request to its reply.
        Not linked: an ``execute_tool {tool}`` span of its own under the session. Other MCP
        methods (``initialize``, ``tools/list``, ``resources/read``...) are counted, not exported.
        """
        d = event.data
        tool = d.get("tool")
        if d.get("method") != "tools/call" or not isinstance(tool, str) or not tool:
            self._count("mcp_calls_not_exported")
            return []
        sid = d.get("session") if isinstance(d.get("session"), str) else None
        scope = sid or f"pid:{event.pid}"
        trace = self.trace_of(sid)
        start = _as_int(d.get("ts_request_ns"), event.ts_ns)
        end = max(_as_int(d.get("ts_response_ns"), event.ts_ns), start)
        link = _as_dict(d.get("llm"))
        asked = str(link["tool_call_id"]) if link.get("tool_call_id") else None
        server = _as_dict(d.get("server"))
        attrs: dict[str, Any] = {"mcp.method.name": "tools/call"}
        _put(attrs, "mcp.session.id", d.get("mcp_session"))
        _put(attrs, "mcp.protocol.version", d.get("protocol_version"))
        if d.get("id") is not None:
            attrs["jsonrpc.request.id"] = str(d["id"])
        attrs["network.transport"] = "pipe" if d.get("transport") == "stdio" else "tcp"
        _put(attrs, "server.address", server.get("host"))
        _put(attrs, "agentsight.mcp.server", server.get("name") or server.get("comm") or server.get("url"))
        if isinstance(server.get("argv"), list):
            _put(attrs, "agentsight.mcp.server_command", [str(a) for a in server["argv"]])
        _put(attrs, "agentsight.mcp.status", d.get("status"))
        if "genai" in self.sets:
            attrs.update({"gen_ai.tool.name": tool, "gen_ai.tool.type": "function"})
            _put(attrs, "gen_ai.tool.call.id", asked)
        if "openinference" in self.sets:
            attrs.update({"openinference.span.kind": "TOOL", "tool.name": tool})
        if sid:
            attrs["session.id"] = sid
        if self.content:
            args, result = redact_value(d.get("arguments")), redact_value(d.get("result") or d.get("error"))
            args_text = _clip(args if isinstance(args, str) else _json(args), self.max_content)
            res_text = _clip(result if isinstance(result, str) else _json(result), self.max_content)
            if "genai" in self.sets:
                attrs["gen_ai.tool.call.arguments"] = args_text
                attrs["gen_ai.tool.call.result"] = res_text
            if "openinference" in self.sets:
                attrs.update({"input.value": args_text, "output.value": res_text})
        status = d.get("status")
        error = None
        if status not in ("ok", None):
            err = _as_dict(d.get("error"))
            attrs["error.type"] = str(err["code"]) if err.get("code") is not None else str(status)
            error = str(err.get("message") or status)[:200]
        key = f"mcp:{scope}:{d.get('call_id') or start}"
        if asked and ((scope, asked) in self.pending or (scope, asked) in self.closed_tools):
            tool_key = f"tool:{scope}:{asked}"
            tool_trace = self.pending[(scope, asked)].trace if (scope, asked) in self.pending else \
                self.closed_tools[(scope, asked)]
            return [SpanSpec(f"tools/call {tool}", "client", start, end, key, tool_trace, tool_key, attrs,
                             error=error)]
        if "genai" in self.sets:
            attrs["gen_ai.operation.name"] = "execute_tool"
        parent = self.session_key(sid) if sid else None
        return [SpanSpec(f"execute_tool {tool}", "internal", start, end, key, trace or key, parent, attrs,
                         error=error)]

    # ------------------------------------------------------------------ end

    def close(self) -> list[SpanSpec]:
        """Spans still open when the export stops: pending tools, then running sessions."""
        end = self.last_ns
        spans = [self._tool_span(t, end, None) for t in self.pending.values()]
        self.pending.clear()
        for s in self.sessions.values():
            spans.append(self._session_span(s, end, exit_code=None, still_open=True))
        self.sessions.clear()
        return spans

    def session_gauges(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(attributes, latest sample + processes seen) of each running session, for the gauges."""
        out = []
        for s in self.sessions.values():
            attrs = {"session.id": s.id, "gen_ai.agent.name": s.agent, "process.pid": s.pid}
            out.append((attrs, {**(s.sample or {}), "processes_seen": len(s.pids)}))
        return out
