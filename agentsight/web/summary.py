"""One line per event for the timeline, the log list and live pushes.

:func:`label` reads the topic's fields (docs/analyzers.md, the sources' docstrings)
from an event's JSON-ready ``data`` (bytes as ``{"$bytes": ...}``) and says what
happened in a few words; :func:`kind` is the colour family the page draws it in.
"""

from __future__ import annotations

from typing import Any

from agentsight.commands.render import mcp_server

__all__ = ["KINDS", "kind", "label", "brief"]

# Colour families, in legend order; a topic belongs to the first whose prefix it has.
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("process", ("process.",)),
    ("file", ("file.",)),
    ("net", ("net.",)),
    ("llm", ("llm.",)),
    ("mcp", ("mcp.",)),
    ("http", ("http.", "sse.")),
    ("tls", ("ssl.",)),
    ("stdio", ("stdio.",)),
    ("system", ("system.",)),
    ("session", ("session.",)),
)


def kind(topic: str) -> str:
    for name, prefixes in KINDS:
        if topic.startswith(prefixes):
            return name
    return "other"


def _text(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        if "$bytes" in v:
            return str(v["$bytes"])
        if "$base64" in v:
            return "<binary>"
    if v is None:
        return ""
    return v if isinstance(v, str) else str(v)


def _short(s: str, n: int = 120) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return ""
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return ""


def _tokens(usage: Any) -> str:
    if not isinstance(usage, dict):
        return ""
    i, o = usage.get("input_tokens"), usage.get("output_tokens")
    if i is None and o is None:
        return ""
    return f"{i if i is not None else '?'}→{o if o is not None else '?'} tok"


def label(topic: str, data: Any) -> str:
    """What the event says, in one line (at most ~120 characters)."""
    d = data if isinstance(data, dict) else {}
    if topic == "process.exec":
        argv = d.get("argv")
        if isinstance(argv, list) and argv:
            return _short("exec " + " ".join(_text(a) for a in argv))
        return _short(f"exec {_text(d.get('filename'))}")
    if topic == "process.fork":
        return f"fork from {d.get('ppid')}" if d.get("ppid") is not None else "fork"
    if topic == "process.exit":
        sig = d.get("signal_name") or (f"signal {d['signal']}" if d.get("signal") else "")
        dur = d.get("duration_ms")
        tail = f" after {dur / 1000:.2f}s" if isinstance(dur, int | float) else ""
        return f"exit {d.get('exit_code')}" + (f" ({sig})" if sig else "") + tail
    if topic == "file.open":
        n = d.get("count")
        return _short(f"open {_text(d.get('path'))}" + (f" ×{n}" if isinstance(n, int) and n > 1 else ""))
    if topic == "net.connect":
        return f"connect {_text(d.get('address'))}:{d.get('port')}"
    if topic == "llm.call":
        model = _text(d.get("model") or d.get("model_requested")) or "?"
        parts = [f"{model}", _tokens(d.get("usage"))]
        if isinstance(d.get("duration_ms"), int | float):
            parts.append(f"{d['duration_ms'] / 1000:.2f}s")
        if d.get("status_code") not in (None, 200):
            parts.append(f"HTTP {d.get('status_code')}")
        return _short(" · ".join(p for p in parts if p))
    if topic == "mcp.call":
        what = _text(d.get("tool") or d.get("uri") or d.get("prompt"))
        ms = f" {d['latency_ms']:.0f} ms" if isinstance(d.get("latency_ms"), int | float) else ""
        return _short(f"{mcp_server(d)} {_text(d.get('method')) or '?'} {what} → {_text(d.get('status'))}{ms}")
    if topic in ("mcp.notification", "mcp.session.end"):
        what = _text(d.get("method") or d.get("reason"))
        return _short(f"{mcp_server(d)} {what}")
    if topic == "http.exchange":
        req: dict[str, Any] = d["request"] if isinstance(d.get("request"), dict) else {}
        resp: dict[str, Any] = d["response"] if isinstance(d.get("response"), dict) else {}
        return _short(f"{_text(req.get('method'))} {_text(d.get('host'))}{_text(req.get('path'))} → "
                      f"{resp.get('status_code', '…')}")
    if topic == "http.request":
        return _short(f"{_text(d.get('method'))} {_text(d.get('host'))}{_text(d.get('path'))}")
    if topic == "http.response":
        return _short(f"{d.get('status_code')} {_text(d.get('reason'))} {_size(d.get('body_size'))}")
    if topic == "sse.event":
        return _short(f"{_text(d.get('event'))}: {_text(d.get('data'))}")
    if topic == "ssl.unprobed":
        what = "TLS seen late" if d.get("late") else "TLS not visible"
        exe = _text(d.get("path")).rsplit("/", 1)[-1]
        return _short(f"{what}: {exe} → {_text(d.get('dest'))}: {_text(d.get('reason'))}")
    if topic in ("ssl.data", "stdio.data"):
        payload = _text(d.get("bytes"))
        return _short(f"{d.get('dir', '')} {_size(d.get('len'))} {payload}")
    if topic == "system.sample":
        cpu, rss = d.get("cpu_percent"), d.get("rss_bytes", d.get("mem_used_bytes"))
        cpu_s = f"cpu {cpu:.0f}%" if isinstance(cpu, int | float) else ""
        return _short(f"{cpu_s} rss {_size(rss)}".strip())
    if topic.startswith("session."):
        return _short(f"{topic.split('.', 1)[1]} {_text(d.get('agent'))} {_text(d.get('session'))}")
    keys = ", ".join(f"{k}={_text(v)}" for k, v in list(d.items())[:4] if not isinstance(v, dict | list))
    return _short(keys or topic)


def brief(row: dict[str, Any]) -> dict[str, Any]:
    """An events row without its data: id, time, topic, process, kind and label."""
    return {"id": row["id"], "ts_ns": row["ts_ns"], "topic": row["topic"], "source": row["source"],
            "pid": row["pid"], "tid": row["tid"], "comm": row["comm"], "kind": kind(row["topic"]),
            "label": label(row["topic"], row.get("data"))}
