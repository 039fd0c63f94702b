"""Events for people: one readable line each, coloured on a terminal."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from agentsight.event import Event

__all__ = ["pretty", "summarize_value", "table", "mcp_server"]

_COLORS = {"ssl": "36", "http": "34", "llm": "35", "process": "32", "file": "33", "net": "33",
           "stdio": "37", "system": "90", "gen": "37", "mcp": "95"}


def summarize_value(value: Any, limit: int = 120) -> str:
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        return (text[:limit] + f"…(+{len(value) - limit}B)") if len(text) > limit else text
    text = str(value)
    return text[:limit] + "…" if len(text) > limit else text


def _tokens(n: Any) -> str:
    return "?" if n is None else f"{n:,}"


def _llm(d: dict[str, Any]) -> str:
    u = d.get("usage") or {}
    cost = (d.get("cost") or {}).get("total")
    tools = ", ".join(f"{t.get('name')}({summarize_value(t.get('arguments'), 40)})" for t in d.get("tool_calls") or [])
    parts = [f"{d.get('provider')} {d.get('model') or d.get('model_requested')} {d.get('status_code')}",
             f"in={_tokens(u.get('input_tokens'))} out={_tokens(u.get('output_tokens'))}",
             f"cost=${cost:.6f}" if isinstance(cost, int | float) else "cost=?",
             f"ttft={d.get('ttft_ms'):.0f}ms" if isinstance(d.get("ttft_ms"), int | float) else "",
             f"tools: {tools}" if tools else "",
             f"answer={summarize_value(d.get('output_text') or '', 80)!r}" if d.get("output_text") else ""]
    return " ".join(p for p in parts if p)


def _exchange(d: dict[str, Any]) -> str:
    req, resp = d.get("request") or {}, d.get("response") or {}
    ms = (d.get("duration_ns") or 0) / 1e6
    return (f"{req.get('method', '?')} {d.get('host') or ''}{req.get('target', '')} -> {resp.get('status_code', '-')} "
            f"{resp.get('content_type') or ''} {resp.get('body_size', 0)}B {ms:.0f}ms")


def _data(d: dict[str, Any]) -> str:
    payload = d.get("bytes")
    cut = f" (+{d['truncated']}B cut)" if d.get("truncated") else ""
    return f"{d.get('dir')} {d.get('len')}B{cut} {summarize_value(payload, 100) if payload is not None else ''}"


def mcp_server(d: dict[str, Any]) -> str:
    """An MCP server in a few words: the name it gave, else its command or URL."""
    server = d.get("server") or {}
    if server.get("name"):
        return str(server["name"])
    argv = server.get("argv") or []
    if argv:
        tail = [a for a in argv[1:] if not str(a).startswith("-")][:1]
        return " ".join(str(a).rsplit("/", 1)[-1] for a in [argv[0], *tail])
    return str(server.get("url") or server.get("comm") or "?")


def _mcp_result(d: dict[str, Any]) -> str:
    if d.get("error"):
        err = d["error"]
        return f"error {err.get('code')}: {summarize_value(err.get('message'), 60)}" if isinstance(err, dict) else "error"
    result = d.get("result")
    if isinstance(result, dict) and isinstance(result.get("content"), list):
        texts = [str(c.get("text")) for c in result["content"] if isinstance(c, dict) and c.get("text")]
        return summarize_value(" ".join(texts), 60) if texts else f"{len(result['content'])} content item(s)"
    if isinstance(result, dict):
        return "{" + ", ".join(list(result)[:4]) + "}"
    return ""


def _mcp_call(d: dict[str, Any]) -> str:
    what = d.get("tool") or d.get("uri") or d.get("prompt") or ""
    args = d.get("arguments")
    parts = [f"{mcp_server(d)} {d.get('method') or '(request not seen)'} {what}".rstrip(),
             summarize_value(json.dumps(args, ensure_ascii=False), 60) if args else "",
             f"-> {d.get('status')}",
             f"{d['latency_ms']:.1f}ms" if isinstance(d.get("latency_ms"), int | float) else "",
             _mcp_result(d), "(cut)" if d.get("truncated") else ""]
    link = d.get("llm") or {}
    if link.get("tool_call_id"):
        asked = (link.get("asked_by") or {}).get("model")
        parts.append(f"[asked by {asked + ' ' if asked else ''}{link['tool_call_id']}]")
    return " ".join(p for p in parts if p)


# One readable summary per common topic; other topics print their fields.
_SUMMARIES: dict[str, Any] = {
    "llm.call": _llm,
    "http.exchange": _exchange,
    "http.request": lambda d: f"{d.get('method')} {d.get('host') or ''}{d.get('target')} {d.get('body_size', 0)}B",
    "http.response": lambda d: f"{d.get('status_code')} {d.get('content_type') or ''} {d.get('body_size', 0)}B",
    "ssl.data": _data,
    "stdio.data": lambda d: f"fd{d.get('fd')} {_data(d)}",
    "process.exec": lambda d: f"{d.get('filename')} {summarize_value(' '.join(map(str, d.get('argv') or [])), 100)}",
    "process.exit": lambda d: (f"signal {d.get('signal_name') or d.get('signal')}" if d.get("signal")
                               else f"exit {d.get('exit_code')}") + f" after {d.get('duration_ms') or 0:.0f}ms",
    "process.fork": lambda d: f"from {d.get('ppid')}",
    "file.open": lambda d: f"{d.get('path')} {'|'.join(d.get('flag_names') or [])}"
                           + (f" x{d.get('count')}" if (d.get("count") or 1) > 1 else ""),
    "net.connect": lambda d: f"{d.get('family')} {d.get('address')}:{d.get('port')}",
    "session.start": lambda d: f"{d.get('agent')} session {d.get('session')} {summarize_value(' '.join(map(str, d.get('argv') or [])), 80)}",
    "session.end": lambda d: f"{d.get('agent')} session {d.get('session')} ended, exit {d.get('exit_code')}, "
                             f"{len(d.get('pids') or [])} processes",
    "http.stream.head": lambda d: f"{d.get('method') or '?'} {d.get('path') or ''} -> {d.get('status_code')} "
                                  f"{d.get('content_type') or ''}" + (" (streaming)" if d.get("streaming") else ""),
    "http.stream.chunk": lambda d: f"+{len(d.get('data') or b'')}B at {d.get('offset')}",
    "sse.event": lambda d: f"{d.get('event')} {summarize_value(d.get('data') or '', 100)}",
    "ssl.attached": lambda d: f"{d.get('path')} ({len(d.get('probes') or [])} probes)",
    "mcp.call": _mcp_call,
    "mcp.notification": lambda d: f"{mcp_server(d)} {d.get('direction')} {d.get('method')} "
                                  f"{summarize_value(json.dumps(d.get('params'), ensure_ascii=False), 80) if d.get('params') else ''}",
    "mcp.session.end": lambda d: f"{mcp_server(d)} {d.get('reason')}: {d.get('calls')} calls, {d.get('unanswered')} "
                                 f"unanswered, {d.get('notifications')} notifications, {d.get('garbage_lines')} "
                                 f"garbage lines",
    "system.sample": lambda d: f"cpu={d.get('cpu_percent', 0):.0f}% rss={(d.get('rss_bytes') or 0) / 2**20:.0f}MiB "
                               f"processes={d.get('processes')}",
}


def pretty(event: Event, color: bool = False, width: int = 200) -> str:
    ts = _dt.datetime.fromtimestamp(event.ts_ns / 1e9).strftime("%H:%M:%S.%f")[:-3]
    topic = event.topic
    if color:
        code = _COLORS.get(topic.split(".", 1)[0], "0")
        topic = f"\x1b[{code}m{topic}\x1b[0m"
    who = f"{event.comm}[{event.pid}]" if event.pid else event.source
    summary = _SUMMARIES.get(event.topic)
    fields = None
    if summary is not None:
        try:
            fields = summary(event.data)
        except (TypeError, ValueError, AttributeError):
            fields = None  # an unexpected shape: fall back to the plain fields
    if fields is None:
        fields = " ".join(f"{k}={summarize_value(v, 80)}" for k, v in event.data.items())
    line = f"{ts} {topic} {who} {fields}"
    return line if len(line) <= width else line[: width - 1] + "…"


def table(headers: list[str], rows: list[list[str]], indent: int = 0, left: set[int] | None = None) -> str:
    """Columns padded to their widest cell; column 0 and ``left`` ones left-aligned, the rest right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lefts = {0} | (left or set())
    pad = " " * indent

    def line(cells: list[str]) -> str:
        parts = [str(c).ljust(w) if i in lefts else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=False))]
        return pad + "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])
