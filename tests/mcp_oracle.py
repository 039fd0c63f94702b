"""The oracle of the MCP tests: the log an MCP client kept (tests/bpf/agents/mcp_client.py: every
request it made or answered, with what came back) against the ``mcp.call`` records made of the capture.

Results are compared the way the client saw them: the recorded wire JSON is validated with the
SDK's own result type and dumped as the client dumped its copy, so defaults the SDK fills in are
on both sides. Arguments are compared exactly, after the redaction the recording applies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentsight.analysis.redact import redact_value

__all__ = ["read_log", "result_type", "pair_calls", "assert_same_calls"]


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def result_type(method: str) -> Any:
    import mcp_types as t

    return {"initialize": t.InitializeResult, "tools/list": t.ListToolsResult, "tools/call": t.CallToolResult,
            "resources/list": t.ListResourcesResult, "resources/read": t.ReadResourceResult,
            "prompts/list": t.ListPromptsResult, "prompts/get": t.GetPromptResult, "ping": t.EmptyResult,
            "sampling/createMessage": t.CreateMessageResult, "roots/list": t.ListRootsResult}[method]


def _key(direction: str, method: str, params: Any) -> tuple[Any, ...]:
    p = params if isinstance(params, dict) else {}
    if method in ("tools/call", "prompts/get"):
        return direction, method, p.get("name"), json.dumps(redact_value(p.get("arguments") or {}), sort_keys=True)
    if method == "resources/read":
        return direction, method, p.get("uri")
    return direction, method


def _record_key(r: dict[str, Any]) -> tuple[Any, ...]:
    method = r["method"]
    name = r["tool"] if method == "tools/call" else r["prompt"]
    params = {"name": name, "arguments": r["arguments"], "uri": r["uri"]}
    if method in ("tools/call", "prompts/get"):
        return r["direction"], method, name, json.dumps(r["arguments"] or {}, sort_keys=True)
    return _key(r["direction"], method, params)


def pair_calls(log: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each logged request with its record (in request order); fails on a request not recorded or a
    record of a request the client did not make."""
    left = sorted(records, key=lambda r: (r["ts_request_ns"] or 0))
    pairs = []
    for entry in log:
        key = _key(entry["dir"], entry["method"], entry.get("params"))
        found = next((r for r in left if _record_key(r) == key), None)
        assert found is not None, f"no mcp.call for {key}; recorded: {[_record_key(r) for r in left]}"
        left.remove(found)
        pairs.append((entry, found))
    assert not left, f"mcp.call records of requests the client did not log: {[_record_key(r) for r in left]}"
    return pairs


def assert_same_calls(log: list[dict[str, Any]], records: list[dict[str, Any]]) -> int:
    """Every logged request is one ``mcp.call`` with its exact arguments and result; returns the count."""
    for entry, rec in pair_calls(log, records):
        assert rec["truncated"] is False and rec["ts_response_ns"] is not None, rec
        if "error" in entry:
            assert rec["status"] == "error" and rec["error"]["code"] == entry["error"]["code"], rec
            continue
        typ = result_type(entry["method"])
        got = typ.model_validate(rec["result"]).model_dump(mode="json", by_alias=True, exclude_none=True)
        assert got == redact_value(entry["result"]), (entry["method"], got, entry["result"])
        expected_status = "tool_error" if entry["result"].get("isError") else "ok"
        assert rec["status"] == expected_status, rec
        assert rec["latency_ms"] is not None and rec["latency_ms"] >= 0
    return len(log)
