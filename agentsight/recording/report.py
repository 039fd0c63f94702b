"""Answers from a recording: the summary `record` prints, tokens, prompts, a JSON export.

Everything here reads a :class:`agentsight.recording.store.Store` and returns plain data;
the ``format_*`` functions turn it into text for the terminal. The `record`
summary and `agentsight report summary` are the same function, so what `record`
prints always matches the recording.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections import defaultdict
from typing import Any

from agentsight.analysis.mcplink import llm_key
from agentsight.commands.render import mcp_server, table
from agentsight.recording.store import USAGE_KEYS, Store

__all__ = ["summary", "format_summary", "tokens", "format_tokens", "prompts", "format_prompts", "export",
           "GROUPS", "WRITE_FLAGS", "mcp_summary", "mcp_calls"]

# open(2) flags that mean "this process may change the file".
O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND = 0o1, 0o2, 0o100, 0o1000, 0o2000
WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND
GROUPS = ("model", "provider", "process", "session")


def _sum(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _usage_totals(calls: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": len(calls)}
    for k in USAGE_KEYS:
        out[k] = _sum([c[k] for c in calls])
    costs = [c["cost_usd"] for c in calls if c["cost_usd"] is not None]
    out["cost_usd"] = round(sum(costs), 6) if costs else None
    out["unpriced_calls"] = len(calls) - len(costs)
    return out


def summary(store: Store) -> dict[str, Any]:
    meta = store.meta()
    first, last = store.time_range()
    start = int(meta.get("started_ns") or first or 0)
    end = int(meta.get("ended_ns") or last or start)
    calls = store.llm_calls(limit=1 << 30)
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in calls:
        by_model[c["model"] or "(unknown)"].append(c)
    procs = store.processes()
    files = store.files()
    written = sorted({f["path"] for f in files if (f["flags"] or 0) & WRITE_FLAGS})
    endpoints: dict[str, int] = defaultdict(int)
    for c in store.connections():
        if c["family"] in ("ipv4", "ipv6") and c["port"]:
            host = f"[{c['address']}]" if c["family"] == "ipv6" else c["address"]
            endpoints[f"{host}:{c['port']}"] += 1
    hosts = sorted({c["host"] for c in calls if c["host"]})
    failed = [p for p in procs if (p["exit_code"] not in (None, 0)) or p["signal"]]
    unseen = tls_unseen(store)
    return {
        "recording": str(store.path),
        "command": meta.get("command"),
        "exit_code": int(meta["exit_code"]) if meta.get("exit_code") not in (None, "") else None,
        "started_ns": start,
        "duration_s": round((end - start) / 1e9, 3) if end >= start else 0.0,
        "events": store.count_events(),
        "topics": store.topic_counts(),
        "llm": {"total": _usage_totals(calls),
                "by_model": {m: _usage_totals(cs) for m, cs in sorted(by_model.items())},
                "hosts": hosts,
                "price_source": _price_source(store, calls)},
        "processes": len(procs),
        "failed_processes": [{"pid": p["pid"], "comm": p["comm"], "exit_code": p["exit_code"],
                              "signal": p["signal_name"] or p["signal"]} for p in failed],
        "files_opened": len({f["path"] for f in files}),
        "files_written": written,
        "endpoints": dict(sorted(endpoints.items())),
        "tls_unseen": unseen,
        "mcp": mcp_summary(store),
        "sessions": store.sessions(),
        "events_lost": int(meta.get("events_lost") or 0),
    }


def mcp_calls(store: Store) -> list[dict[str, Any]]:
    """Every ``mcp.call`` record (its event id as ``event_id``), in recording order."""
    return [{**e["data"], "event_id": e["id"]} for e in store.events(topics=["mcp.call"], limit=1 << 30)]


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


def mcp_summary(store: Store) -> dict[str, Any]:
    """MCP calls per server: how many, tool calls, failures, replies that never came, latency, garbage."""
    calls = mcp_calls(store)
    servers: dict[tuple[str, str], dict[str, Any]] = {}

    def server(d: dict[str, Any]) -> dict[str, Any]:
        # One row per server session: its name is known only from initialize on (earlier records,
        # a discovery probe, say, name its command).
        key = (str(d.get("transport")), str(d.get("mcp_session") or mcp_server(d)))
        g = servers.setdefault(key, {"server": mcp_server(d), "transport": key[0], "calls": 0, "tool_calls": 0,
                                     "failed": 0, "unanswered": 0, "garbage_lines": 0, "latencies": [],
                                     "tools": {}})
        if (d.get("server") or {}).get("name"):
            g["server"] = mcp_server(d)
        return g

    for d in calls:
        g = server(d)
        g["calls"] += 1
        if d.get("tool"):
            g["tool_calls"] += 1
            g["tools"][d["tool"]] = g["tools"].get(d["tool"], 0) + 1
        if d.get("status") != "ok":
            g["failed"] += 1
        if d.get("status") in ("no_reply", "unfinished"):
            g["unanswered"] += 1
        if isinstance(d.get("latency_ms"), int | float):
            g["latencies"].append(d["latency_ms"])
    for e in store.events(topics=["mcp.session.end"], limit=1 << 30):
        server(e["data"])["garbage_lines"] += int(e["data"].get("garbage_lines") or 0)
    rows = []
    for g in servers.values():
        g["median_ms"] = _median(g.pop("latencies"))
        rows.append(g)
    return {"calls": len(calls), "tool_calls": sum(1 for d in calls if d.get("tool")),
            "failed": sum(1 for d in calls if d.get("status") != "ok"),
            "unanswered": sum(1 for d in calls if d.get("status") in ("no_reply", "unfinished")),
            "linked": sum(1 for d in calls if (d.get("llm") or {}).get("tool_call_id")),
            "garbage_lines": sum(g["garbage_lines"] for g in rows), "servers": rows}


def tls_unseen(store: Store) -> list[dict[str, Any]]:
    """Connections whose TLS plaintext agentsight could not see (``ssl.unprobed``), per
    executable and reason: how many, to where, by which processes."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for e in store.events(topics=["ssl.unprobed"], limit=1 << 30):
        d = e["data"]
        key = (str(d.get("path")), str(d.get("reason")))
        g = groups.setdefault(key, {"path": key[0], "reason": key[1], "late": bool(d.get("late")),
                                    "connections": 0, "dests": {}, "pids": [], "event_id": e["id"]})
        g["connections"] += 1
        dest = str(d.get("dest"))
        g["dests"][dest] = g["dests"].get(dest, 0) + 1
        if e["pid"] not in g["pids"]:
            g["pids"].append(e["pid"])
    return list(groups.values())


def _price_source(store: Store, calls: list[dict[str, Any]]) -> str | None:
    """Which price table the estimates came from (recorded in each priced call's cost)."""
    for c in calls:
        if c["cost_usd"] is not None:
            cost = ((store.llm_call(c["id"]) or {}).get("data") or {}).get("cost")
            if isinstance(cost, dict) and cost.get("price_source"):
                return str(cost["price_source"])
    return None


def _n(v: int | None) -> str:
    return "?" if v is None else f"{v:,}"


def _usd(v: float | None) -> str:
    if v is None:
        return "?"
    return f"${v:.4f}" if v >= 0.01 or v == 0 else f"${v:.6f}"


def format_summary(s: dict[str, Any]) -> str:
    lines = []
    head = f"recorded {s['command']}" if s.get("command") else "recording"
    exit_part = f", exit code {s['exit_code']}" if s.get("exit_code") is not None else ""
    lines.append(f"{head}: {s['duration_s']:.1f} s{exit_part}, {s['events']:,} events")
    llm = s["llm"]
    total = llm["total"]
    if total["calls"]:
        lines.append(f"LLM calls: {total['calls']} to {', '.join(llm['hosts']) or '?'}; tokens in "
                     f"{_n(total['input_tokens'])} (cache read {_n(total['cache_read_tokens'])}, write "
                     f"{_n(total['cache_write_tokens'])}), out {_n(total['output_tokens'])}; "
                     f"estimated cost {_usd(total['cost_usd'])}")
        rows = [[m, str(u["calls"]), _n(u["input_tokens"]), _n(u["output_tokens"]), _n(u["cache_read_tokens"]),
                 _usd(u["cost_usd"])] for m, u in llm["by_model"].items()]
        lines.append(table(["model", "calls", "input", "output", "cache read", "cost"], rows, indent=2))
        if total["unpriced_calls"]:
            lines.append(f"  ({total['unpriced_calls']} call(s) without a price: model or tokens unknown)")
        if llm.get("price_source"):
            lines.append(f"  prices: {llm['price_source']}")
    else:
        lines.append("LLM calls: none seen")
    failed = s["failed_processes"]
    lines.append(f"processes: {s['processes']}" + (f", {len(failed)} failed: " + ", ".join(
        f"{p['comm']}[{p['pid']}] {'signal ' + str(p['signal']) if p['signal'] else 'exit ' + str(p['exit_code'])}"
        for p in failed[:8]) if failed else ""))
    written = s["files_written"]
    lines.append(f"files: {s['files_opened']} opened, {len(written)} written"
                 + (": " + ", ".join(written[:10]) + (" ..." if len(written) > 10 else "") if written else ""))
    for u in s.get("tls_unseen", []):
        dests = ", ".join(f"{k} ({v}x)" if v > 1 else k for k, v in list(u["dests"].items())[:6])
        what = "TLS seen late" if u["late"] else "TLS not visible"
        lines.append(f"{what}: {os.path.basename(u['path'])} (pid {', '.join(map(str, u['pids'][:6]))}): "
                     f"{u['connections']} connection(s) to {dests}: {u['reason']}")
    lines += _format_mcp(s.get("mcp") or {})
    eps = s["endpoints"]
    lines.append("endpoints: " + (", ".join(f"{k} ({v}x)" if v > 1 else k for k, v in list(eps.items())[:12])
                                  if eps else "none"))
    lines.append(f"events lost: {s['events_lost']}" if s["events_lost"] else "no events lost")
    lines.append(f"recording: {s['recording']}")
    return "\n".join(lines)


def _format_mcp(m: dict[str, Any]) -> list[str]:
    if not m.get("calls") and not m.get("garbage_lines"):
        return []
    servers = m["servers"]
    lines = [f"MCP calls: {m['calls']} to {len(servers)} server(s), {m['tool_calls']} tool call(s); "
             f"{m['failed']} failed, {m['unanswered']} unanswered; {m['linked']} tied to the LLM call that asked"]
    rows = [[g["server"], g["transport"], str(g["calls"]), str(g["tool_calls"]), str(g["failed"]),
             str(g["unanswered"]), str(g["garbage_lines"]),
             "?" if g["median_ms"] is None else f"{g['median_ms']:.1f} ms"] for g in servers]
    lines.append(table(["server", "transport", "calls", "tools", "failed", "no reply", "garbage", "median"], rows,
                       indent=2, left={1}))
    used: dict[str, int] = {}
    for g in servers:
        for name, n in g["tools"].items():
            used[name] = used.get(name, 0) + n
    if used:
        top = sorted(used.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append("  tools: " + ", ".join(f"{k} ({v}x)" if v > 1 else k for k, v in top[:12])
                     + (" ..." if len(top) > 12 else ""))
    if m.get("garbage_lines"):
        lines.append(f"  {m['garbage_lines']} line(s) on MCP pipes were not JSON-RPC (counted and skipped)")
    return lines


def tokens(store: Store, by: str = "model") -> list[dict[str, Any]]:
    """Usage totals grouped by model, provider, process (pid + comm) or session."""
    if by not in GROUPS:
        raise ValueError(f"group by one of {', '.join(GROUPS)}, not {by!r}")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in store.llm_calls(limit=1 << 30):
        if by == "process":
            key = f"{c['comm']}[{c['pid']}]"
        else:
            key = c[by] or "(unknown)"
        groups[key].append(c)
    return [{by: k, **_usage_totals(cs)} for k, cs in sorted(groups.items())]


def format_tokens(rows: list[dict[str, Any]], by: str) -> str:
    if not rows:
        return "no LLM calls in this recording"
    body = [[r[by], str(r["calls"]), _n(r["input_tokens"]), _n(r["output_tokens"]), _n(r["cache_read_tokens"]),
             _n(r["cache_write_tokens"]), _n(r["reasoning_tokens"]), _usd(r["cost_usd"])] for r in rows]
    return table([by, "calls", "input", "output", "cache read", "cache write", "reasoning", "cost"], body)


def prompts(store: Store, limit: int = 0) -> list[dict[str, Any]]:
    """Every LLM call with what was sent and what came back, oldest first, and the MCP calls that ran its
    tool calls (``mcp_calls``) or whose results it carries (``mcp.tool_results``)."""
    asked: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_id: dict[str, dict[str, Any]] = {}
    for m in mcp_calls(store):
        by_id[str(m.get("call_id"))] = m
        key = ((m.get("llm") or {}).get("asked_by") or {}).get("key")
        if key:
            asked[key].append(m)
    out = []
    for row in store.llm_calls(limit=limit or 1 << 30):
        full = store.llm_call(row["id"]) or {}
        d = full.get("data") or {}
        key = llm_key(d)
        ran = {m["llm"]["tool_call_id"]: m for m in asked.get(key or "", [])}
        for link in (d.get("mcp") or {}).get("tool_calls") or []:  # the call reached the stage after its runs
            if link.get("mcp_call") in by_id:
                ran.setdefault(link.get("tool_call_id"), by_id[link["mcp_call"]])
        results = [{**r, "mcp": _mcp_brief(by_id.get(str(r.get("mcp_call"))))}
                   for r in (d.get("mcp") or {}).get("tool_results") or []]
        out.append({
            "id": row["id"], "ts_ns": row["ts_ns"], "pid": row["pid"], "comm": row["comm"],
            "provider": row["provider"], "model": row["model"], "endpoint": d.get("endpoint"),
            "system": d.get("system"), "messages": d.get("messages") or [], "tools": [t.get("name") for t in
                                                                                      d.get("tools") or []],
            "output_text": d.get("output_text"), "reasoning": d.get("reasoning"), "tool_calls": d.get("tool_calls")
            or [], "stop_reason": d.get("stop_reason"), "error": d.get("error"),
            "usage": {k: row[k] for k in USAGE_KEYS}, "cost_usd": row["cost_usd"],
            "ttft_ms": row["ttft_ms"], "duration_ms": row["duration_ms"], "key": key,
            "mcp_calls": [{"tool_call_id": tid, **_mcp_brief(m)} for tid, m in ran.items()],
            "mcp_results": results,
        })
    return out


def _mcp_brief(m: dict[str, Any] | None) -> dict[str, Any]:
    """One MCP call in a few fields (for the chain in ``prompts``)."""
    if m is None:
        return {}
    return {"call_id": m.get("call_id"), "event_id": m.get("event_id"), "server": mcp_server(m),
            "transport": m.get("transport"), "method": m.get("method"), "tool": m.get("tool"),
            "status": m.get("status"), "latency_ms": m.get("latency_ms")}


def _mcp_line(m: dict[str, Any]) -> str:
    ms = f", {m['latency_ms']:.1f} ms" if isinstance(m.get("latency_ms"), int | float) else ""
    return f"MCP {m.get('server')} ({m.get('transport')}) {m.get('method')} {m.get('tool')}: {m.get('status')}{ms}"


def _clip(text: Any, width: int) -> str:
    """One line of at most ``width`` characters (0: everything, continuation lines indented)."""
    s = str(text or "").strip()
    if width <= 0:
        return s.replace("\n", "\n    ")
    s = " ⏎ ".join(line.strip() for line in s.splitlines() if line.strip())
    return s if len(s) <= width else s[: width - 1] + "…"


def _message_text(m: dict[str, Any]) -> str:
    """A message's text, or what its parts are when it has none (tool calls, tool results, images)."""
    if m.get("content"):
        return str(m["content"])
    parts = []
    for p in m.get("parts") or []:
        kind = p.get("type")
        if kind == "tool_call":
            parts.append(f"[tool call {p.get('name')}({p.get('arguments') or ''})]")
        elif kind == "tool_result":
            content = p.get("content")
            parts.append(f"[tool result: {content if isinstance(content, str) else json.dumps(content)}]")
        elif kind:
            parts.append(f"[{kind}]")
    return " ".join(parts)


def format_prompts(calls: list[dict[str, Any]], full: bool = False) -> str:
    if not calls:
        return "no LLM calls in this recording"
    width = 0 if full else 400
    blocks = []
    for c in calls:
        when = _dt.datetime.fromtimestamp(c["ts_ns"] / 1e9).strftime("%H:%M:%S")
        u = c["usage"]
        lines = [f"#{c['id']} {when} {c['comm']}[{c['pid']}] {c['provider']} {c['model']} {c['endpoint'] or ''} "
                 f"in {_n(u['input_tokens'])} out {_n(u['output_tokens'])} {_usd(c['cost_usd'])}"]
        if c["system"]:
            lines.append(f"  system: {_clip(c['system'], width)}")
        messages = c["messages"] if full else c["messages"][-2:]
        if not full and len(c["messages"]) > 2:
            lines.append(f"  ... {len(c['messages']) - 2} earlier message(s)")
        for m in messages:
            lines.append(f"  {m.get('role')}: {_clip(_message_text(m), width)}")
        for r in c.get("mcp_results") or []:
            if r.get("mcp"):
                lines.append(f"  tool result {r.get('tool_call_id')} came from {_mcp_line(r['mcp'])}")
        if c["tools"]:
            lines.append(f"  tools offered: {', '.join(map(str, c['tools']))}")
        if c["reasoning"]:
            lines.append(f"  reasoning: {_clip(c['reasoning'], width)}")
        lines.append(f"  answer: {_clip(c['output_text'], width)}")
        ran = {m["tool_call_id"]: m for m in c.get("mcp_calls") or []}
        for t in c["tool_calls"]:
            lines.append(f"  tool call: {t.get('name')}({_clip(t.get('arguments'), width)})")
            if t.get("id") in ran:
                lines.append(f"    ran as {_mcp_line(ran[t['id']])}")
        if c["error"]:
            lines.append(f"  error: {_clip(json.dumps(c['error']), width)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def export(store: Store, events: bool = False) -> dict[str, Any]:
    """The recording as one JSON document (events too with ``events=True``)."""
    doc: dict[str, Any] = {
        "meta": store.meta(), "summary": summary(store), "sessions": store.sessions(),
        "processes": store.processes(), "llm_calls": prompts(store), "mcp_calls": mcp_calls(store),
        "files": store.files(),
        "connections": store.connections(), "samples": store.samples(),
    }
    if events:
        doc["events"] = store.events(limit=1 << 30)
    return doc


def write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (exports hold captured data)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
