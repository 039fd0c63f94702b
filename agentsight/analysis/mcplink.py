"""The thread from a model's tool call to the MCP call that ran it, and back to the model.

Three records, seen in this order by the agent but not always by the pipeline:

1. ``llm.call`` A: the model's answer asks for a tool (``tool_calls[i]``: id T, name, input);
2. ``mcp.call`` M: the agent runs it as an MCP ``tools/call`` of that tool with those arguments;
3. ``llm.call`` B: the next request carries the tool's result (a ``tool_result`` part with id T).

:class:`ToolLinker` keeps, per *scope* (the agent session both sides belong to, else the
client process), the tool calls models asked for (*asks*, from A's ``tool_calls`` and from
the ``tool_call`` parts of later requests' history, which also say what was asked when A
itself was not captured) and the MCP tool runs seen. A run whose request names the model's
tool-use id in its ``params._meta`` (Claude Code sends ``claudecode/toolUseId``) is linked to that
ask (``match: "tool_use_id"``). Otherwise it is linked to the earliest
unlinked ask whose name names its tool (:func:`tool_name_matches`: ``read_file``,
``mcp__fs__read_file``, ``fs__read_file``...) with equal arguments; failing that, to the only
unlinked ask of that name (``match: "name"``). The link goes on M (``llm``); B gets
``mcp.tool_results`` the first time a request carries the result of a linked ask, and A gets
``mcp.tool_calls`` when it reaches the stage after M was found (M waits a little for A:
:class:`agentsight.analysis.mcp.McpCalls` holds unlinked tool runs up to ``link_wait_s``).
Pure logic; the layout is in docs/analyzers.md (``mcp.call`` ``llm``, ``llm.call`` ``mcp``).
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from agentsight.event import Event

__all__ = ["Ask", "ToolRun", "ToolLinker", "llm_ref", "llm_key", "tool_name_matches", "same_arguments",
           "meta_tool_use_ids"]

# A tool run may start this long before the request that asked for it started (clock skew between
# the TLS and stdio records): a tolerance, not a wait.
SLACK_NS = 1_000_000_000


def llm_key(data: dict[str, Any]) -> str | None:
    """An ``llm.call``'s identity within a capture: ``<conn>#<seq>`` (``.<ws_index>`` over a WebSocket)."""
    conn, seq = data.get("conn"), data.get("seq")
    if conn is None or seq is None:
        return None
    ws = data.get("ws_index")
    return f"{conn}#{seq}" + (f".{ws}" if ws is not None else "")


def llm_ref(event: Event) -> dict[str, Any]:
    """What a record says to point at an ``llm.call``: its key and the fields it is made of."""
    d = event.data
    return {"key": llm_key(d), "conn": d.get("conn"), "seq": d.get("seq"), "ws_index": d.get("ws_index"),
            "response_id": d.get("response_id"), "model": d.get("model") or d.get("model_requested"),
            "pid": event.pid, "ts_ns": event.ts_ns}


def tool_name_matches(llm_name: Any, tool: Any) -> bool:
    """Whether a model's name for a tool names the MCP tool ``tool``.

    Agents prefix MCP tools with their server: Claude Code ``mcp__<server>__<tool>``, Gemini CLI
    ``<server>__<tool>`` on a clash, others ``<server>.<tool>`` or ``<server>/<tool>``; VS Code-style
    clients ``mcp_<server>_<tool>``.
    """
    if not isinstance(llm_name, str) or not isinstance(tool, str) or not tool:
        return False
    if llm_name == tool:
        return True
    if any(llm_name.endswith(sep + tool) for sep in ("__", ".", "/", ":")):
        return True
    return llm_name.startswith("mcp_") and llm_name.endswith("_" + tool)


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _input(call: dict[str, Any]) -> Any:
    """A tool call's arguments: the parsed ``input``, else the ``arguments`` text."""
    value = call.get("input")
    return value if value is not None else call.get("arguments")


def same_arguments(asked: Any, ran: Any) -> bool:
    """Arguments equal as JSON values (a JSON text is parsed first; none and ``{}`` are the same)."""
    a, b = _parsed(asked), _parsed(ran)
    return (a if a not in (None, "") else {}) == (b if b not in (None, "") else {})


@dataclass
class Ask:
    """A tool call a model asked for."""

    id: str
    name: str | None
    input: Any
    ts_ns: int                        # the asking request's start (0: unknown, seen only in a later history)
    llm: dict[str, Any] | None = None  # the asking llm.call (llm_ref), when it was seen
    call_id: str | None = None         # the MCP call that ran it
    match: str | None = None
    result_in: str | None = None       # key of the first llm.call that carried its result


@dataclass
class ToolRun:
    """An MCP ``tools/call``: its record's id, tool, arguments, start, and the tool-use ids its ``_meta``
    names; ``held`` is the caller's."""

    call_id: str
    tool: str
    arguments: Any
    ts_ns: int
    ask: Ask | None = None
    held: Any = None
    meta_ids: tuple[str, ...] = ()


def meta_tool_use_ids(meta: Any) -> tuple[str, ...]:
    """The tool-use ids a ``tools/call``'s ``params._meta`` carries (``claudecode/toolUseId``, ``toolCallId``...)."""
    if not isinstance(meta, dict):
        return ()
    out = []
    for k, v in meta.items():
        name = str(k).lower().replace("_", "").rsplit("/", 1)[-1]
        if isinstance(v, str) and v and name in ("tooluseid", "toolcallid"):
            out.append(v)
    return tuple(out)


@dataclass
class _Scope:
    asks: OrderedDict[str, Ask] = field(default_factory=OrderedDict)
    runs: deque[ToolRun] = field(default_factory=deque)


class ToolLinker:
    """Asks and tool runs per scope (bounded: the oldest are forgotten first)."""

    def __init__(self, max_per_scope: int = 512, max_scopes: int = 1024) -> None:
        self.max_per_scope = max_per_scope
        self.max_scopes = max_scopes
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()
        self.linked = 0

    def _scope(self, key: str) -> _Scope:
        s = self._scopes.get(key)
        if s is None:
            s = self._scopes[key] = _Scope()
            while len(self._scopes) > self.max_scopes:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(key)
        return s

    def _ask(self, s: _Scope, id_: Any, name: Any, input_: Any, ts: int, llm: dict[str, Any] | None) -> None:
        if not isinstance(id_, str) or not id_:
            return
        ask = s.asks.get(id_)
        if ask is None:
            s.asks[id_] = Ask(id_, name if isinstance(name, str) else None, input_, ts, llm)
            while len(s.asks) > self.max_per_scope:
                s.asks.popitem(last=False)
        elif llm is not None and ask.llm is None:
            ask.llm, ask.ts_ns = llm, ts

    def _find(self, s: _Scope, run: ToolRun) -> tuple[Ask, str] | None:
        if run.meta_ids:  # the client said which tool call this is: that one or none
            for mid in run.meta_ids:
                ask = s.asks.get(mid)
                if ask is not None and ask.call_id is None:
                    return ask, "tool_use_id"
            return None
        named = [a for a in s.asks.values() if a.call_id is None and tool_name_matches(a.name, run.tool)
                 and a.ts_ns <= run.ts_ns + SLACK_NS]
        for a in named:
            if same_arguments(a.input, run.arguments):
                return a, "name+arguments"
        if len(named) == 1:
            return named[0], "name"
        return None

    def _link(self, run: ToolRun, ask: Ask, how: str) -> None:
        run.ask = ask
        ask.call_id = run.call_id
        ask.match = how
        self.linked += 1

    def on_tool_run(self, scope: str, run: ToolRun) -> bool:
        """Remember an MCP tool run; True when it is linked to an ask now (``run.ask``)."""
        s = self._scope(scope)
        s.runs.append(run)
        while len(s.runs) > self.max_per_scope:
            s.runs.popleft()
        found = self._find(s, run)
        if found is None:
            return False
        self._link(run, *found)
        return True

    def on_llm_call(self, scope: str, event: Event) -> list[ToolRun]:
        """Take an ``llm.call``'s asks (its answer's and its history's), link waiting runs to them, and
        annotate the call (``data.mcp``); returns the runs linked now."""
        d = event.data
        s = self._scope(scope)
        ts = d.get("ts_request_start_ns")
        ts = ts if isinstance(ts, int) else event.ts_ns
        results: list[str] = []
        for m in d.get("messages") or []:
            for p in (m.get("parts") or []) if isinstance(m, dict) else []:
                if not isinstance(p, dict):
                    continue
                if p.get("type") == "tool_call":  # asked before this request: when, it does not say
                    self._ask(s, p.get("id"), p.get("name"), _input(p), 0, None)
                elif p.get("type") == "tool_result" and isinstance(p.get("id"), str):
                    results.append(p["id"])
        ref = llm_ref(event)
        asked_now = [t for t in d.get("tool_calls") or [] if isinstance(t, dict)]
        for t in asked_now:
            self._ask(s, t.get("id"), t.get("name"), _input(t), ts, ref)
        newly: list[ToolRun] = []
        for run in s.runs:
            if run.ask is None:
                found = self._find(s, run)
                if found is not None:
                    self._link(run, *found)
                    newly.append(run)
        runs = {r.call_id: r for r in s.runs}
        annotation: dict[str, list[dict[str, Any]]] = {}
        for rid in results:
            ask = s.asks.get(rid)
            if ask is None or ask.call_id is None or ask.result_in is not None:
                continue
            ask.result_in = str(ref["key"])
            ran = runs.get(ask.call_id)
            annotation.setdefault("tool_results", []).append({
                "tool_call_id": rid, "mcp_call": ask.call_id, "tool": ran.tool if ran else None,
                "asked_by": ask.llm["key"] if ask.llm else None})
        for t in asked_now:
            tid = t.get("id")
            ask = s.asks.get(tid) if isinstance(tid, str) else None
            if ask is not None and ask.call_id is not None:
                annotation.setdefault("tool_calls", []).append({"tool_call_id": ask.id, "mcp_call": ask.call_id})
        if annotation:
            d["mcp"] = annotation
        return newly
