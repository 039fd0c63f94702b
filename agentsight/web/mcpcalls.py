"""The web UI's view of MCP calls: one brief row per ``mcp.call``, with the LLM calls it is tied to.

Each row names, as ``llm_calls`` ids the page can open, the LLM call whose answer asked for the
tool (``asked_by_llm_id``, from the record's ``llm.asked_by`` key) and the one whose request
carried its result back (``result_in_llm_id``, from that call's ``mcp.tool_results``). Arguments
and results are previews here; the whole record is the event (``/api/events/{event_id}``).
"""

from __future__ import annotations

import json
from typing import Any

from agentsight.analysis.mcplink import llm_key
from agentsight.commands.render import mcp_server
from agentsight.recording.report import mcp_calls, mcp_summary
from agentsight.recording.store import Store

__all__ = ["mcp_view", "preview"]

PREVIEW = 160


def preview(value: Any, limit: int = PREVIEW) -> str | None:
    """A short text of an argument object or a result: its text contents, else its JSON."""
    if value is None:
        return None
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        texts = [str(c.get("text")) for c in value["content"] if isinstance(c, dict) and c.get("text") is not None]
        text = " ".join(texts) if texts else f"{len(value['content'])} content item(s)"
    elif isinstance(value, dict) and isinstance(value.get("contents"), list):
        text = " ".join(str(c.get("text") or c.get("uri")) for c in value["contents"] if isinstance(c, dict))
    else:
        text = json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _llm_ids(store: Store) -> tuple[dict[str, int], dict[str, int]]:
    """LLM call ids by their key, and by the MCP call whose result each one carried first."""
    by_key: dict[str, int] = {}
    by_result: dict[str, int] = {}
    rows = store.db.execute(
        "SELECT c.id, json_extract(e.data, '$.conn'), json_extract(e.data, '$.seq'),"
        " json_extract(e.data, '$.ws_index'), json_extract(e.data, '$.mcp')"
        " FROM llm_calls c JOIN events e ON e.id = c.event_id ORDER BY c.id")
    for cid, conn, seq, ws, mcp in rows:
        key = llm_key({"conn": conn, "seq": seq, "ws_index": ws})
        if key is not None:
            by_key.setdefault(key, cid)
        for r in (json.loads(mcp) if mcp else {}).get("tool_results") or []:
            if isinstance(r, dict) and r.get("mcp_call"):
                by_result.setdefault(str(r["mcp_call"]), cid)
    return by_key, by_result


def mcp_view(store: Store, pid: int | None = None) -> dict[str, Any]:
    """``{calls: [row], summary}``: every MCP call (of ``pid``'s process when given), oldest first."""
    by_key, by_result = _llm_ids(store)
    rows = []
    for d in mcp_calls(store):
        server, client, link = d.get("server") or {}, d.get("client") or {}, d.get("llm") or {}
        row_pid = server.get("pid") if d.get("transport") == "stdio" else client.get("pid")
        if pid is not None and row_pid != pid:
            continue
        asked = (link.get("asked_by") or {}).get("key")
        error = d.get("error") if isinstance(d.get("error"), dict) else None
        rows.append({
            "event_id": d["event_id"], "call_id": d.get("call_id"), "pid": row_pid, "transport": d.get("transport"),
            "server": mcp_server(d), "server_pid": server.get("pid"), "url": server.get("url"),
            "client_pid": client.get("pid"), "client": client.get("name") or client.get("comm"),
            "mcp_session": d.get("mcp_session"), "direction": d.get("direction"), "id": d.get("id"),
            "method": d.get("method"), "tool": d.get("tool"), "uri": d.get("uri"), "prompt": d.get("prompt"),
            "status": d.get("status"), "latency_ms": d.get("latency_ms"), "truncated": d.get("truncated"),
            "ts_request_ns": d.get("ts_request_ns"), "ts_response_ns": d.get("ts_response_ns"),
            "arguments": preview(d.get("arguments")), "result": preview(d.get("result")),
            "error": error.get("message") if error else None,
            "tool_call_id": link.get("tool_call_id"), "llm_tool_name": link.get("tool_name"),
            "asked_by_llm_id": by_key.get(asked) if asked else None,
            "result_in_llm_id": by_result.get(str(d.get("call_id"))),
        })
    return {"calls": rows, "summary": mcp_summary(store)}
