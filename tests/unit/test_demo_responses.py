"""The demo LLM server's Responses API as Codex uses it: over WebSocket, free-form (custom) tools, tools as an
``additional_tools`` input item."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentsight.demo.llm_server import Running, read_log, running

KEY = "sk-demo-test-responses-5d2c"
SHELL = {"type": "function", "name": "exec_command", "description": "Run a shell command.", "strict": False,
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    with running(tmp_path) as srv:
        yield srv


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def _socket_session(server: Running, messages: list[dict[str, Any]],
                          headers: dict[str, str] | None = None) -> list[list[dict[str, Any]]]:
    """Send each message on one WebSocket; collect the events of each answer (up to its completion or error).
    A message that names ``previous_response_id`` as ``"<prev>"`` gets the id of the previous answer."""
    ctx = ssl.create_default_context(cafile=str(server.ca))
    answers: list[list[dict[str, Any]]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
            server.url.replace("https", "wss") + "/v1/responses", ssl=ctx,
            headers=headers if headers is not None else {"Authorization": f"Bearer {KEY}"}) as ws:
        previous = None
        for message in messages:
            if message.get("previous_response_id") == "<prev>":
                message = {**message, "previous_response_id": previous}
            await ws.send_str(json.dumps(message))
            events: list[dict[str, Any]] = []
            while not events or events[-1]["type"] not in ("response.completed", "error"):
                events.append(json.loads(await ws.receive_str(timeout=10)))
            if events[-1]["type"] == "response.completed":
                previous = events[-1]["response"]["id"]
            answers.append(events)
    return answers


def test_websocket_warmup_then_incremental_turns(server: Running) -> None:
    """Codex's default transport: a generate=false warm-up, then each turn names the previous response and
    sends only the new items; the server rebuilds the whole conversation (counts and cache as over HTTP)."""
    base = {"type": "response.create", "model": "gpt-5.5", "instructions": "You are Codex.", "tools": [SHELL],
            "tool_choice": "auto", "stream": True, "store": False}
    warmup, first, second = asyncio.run(_socket_session(server, [
        {**base, "input": [], "generate": False},
        {**base, "previous_response_id": "<prev>", "input": [_user("Please run `echo hi`")]},
        {**base, "previous_response_id": "<prev>",
         "input": [{"type": "function_call_output", "call_id": "x", "output": "hi\n"}]},
    ]))
    assert [e["type"] for e in warmup] == ["response.created", "response.in_progress", "response.completed"]
    assert warmup[-1]["response"]["output"] == [] and warmup[-1]["response"]["usage"]["output_tokens"] == 0
    call = next(e["item"] for e in first if e["type"] == "response.output_item.done")
    assert call["type"] == "function_call" and json.loads(call["arguments"]) == {"cmd": "echo hi"}
    done = second[-1]["response"]
    assert done["output"][0]["content"][0]["text"].startswith("The tool printed 1 line(s); the first is: hi")
    assert done["usage"]["input_tokens_details"]["cached_tokens"] > 0
    assert [e["sequence_number"] for e in second] == list(range(len(second)))
    entries = read_log(server.log)
    assert [(e["transport"], e["stream"], e["status"]) for e in entries] == [("websocket", True, 200)] * 3
    assert [e["usage"]["input_tokens"] for e in entries] == [
        a[-1]["response"]["usage"]["input_tokens"] for a in (warmup, first, second)]
    # The incremental turn counts the whole conversation: more than its own new item.
    assert entries[2]["usage"]["input_tokens"] > entries[1]["usage"]["input_tokens"]
    assert entries[2]["request"]["previous_response_id"] == first[-1]["response"]["id"]


def test_websocket_errors(server: Running) -> None:
    """An unknown previous response and a bad request are error events (the socket stays open);
    without a key the upgrade is refused with 401."""
    unknown, bad, good = asyncio.run(_socket_session(server, [
        {"type": "response.create", "model": "gpt-5.5", "previous_response_id": "resp_nope", "input": []},
        {"type": "response.create", "model": "gpt-5.5", "input": []},
        {"type": "response.create", "model": "gpt-5.5", "input": "Hello"},
    ]))
    assert unknown[-1]["error"]["code"] == "previous_response_not_found" and unknown[-1]["status"] == 400
    assert bad[-1]["type"] == "error" and "'input'" in bad[-1]["error"]["message"]
    assert good[-1]["response"]["output"][0]["content"][0]["text"].startswith("You said: Hello")
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        asyncio.run(_socket_session(server, [], headers={}))
    assert exc.value.status == 401
    assert [e["status"] for e in read_log(server.log)] == [400, 400, 200, 401]


def _post(server: Running, body: dict[str, Any]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        ctx = ssl.create_default_context(cafile=str(server.ca))
        async with aiohttp.ClientSession() as session, session.post(
                server.url + "/v1/responses", json=body, ssl=ctx, headers={"Authorization": f"Bearer {KEY}"}) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())
    return asyncio.run(go())


def test_code_mode_custom_tool_from_additional_tools(server: Running) -> None:
    """Codex's code mode: tools arrive as an additional_tools input item (namespaces); the shell-like tool is
    the free-form "exec", whose input is JavaScript calling tools.exec_command; its output closes the turn."""
    exec_tool = {"type": "custom", "name": "exec", "description": "Run JavaScript. Call `await tools.exec_command(...)`.",
                 "format": {"type": "grammar", "syntax": "lark", "definition": "start: /[\\s\\S]+/"}}
    tools_item = {"type": "additional_tools", "role": "developer",
                  "tools": [{"type": "namespace", "name": "functions", "tools": [exec_tool]}]}
    first = _post(server, {"model": "gpt-6.2-sol", "input": [tools_item, _user("Run `ls -la` please")]})
    call = first["output"][0]
    assert call["type"] == "custom_tool_call" and call["name"] == "exec"
    assert call["input"] == 'const r = await tools.exec_command({cmd: "ls -la"});\ntext(r.output);\n'
    second = _post(server, {"model": "gpt-6.2-sol", "input": [
        tools_item, _user("Run `ls -la` please"), {k: call[k] for k in ("type", "call_id", "name", "input")},
        {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "total 0\n"}]})
    assert second["output"][0]["content"][0]["text"].startswith("The tool printed 1 line(s); the first is: total 0")
    logged = read_log(server.log)[0]["tool_calls"][0]
    assert logged["input"] == call["input"] and logged["name"] == "exec"


def test_custom_tool_call_streams_input_deltas(server: Running) -> None:
    """Streamed over HTTP: custom_tool_call_input deltas that join to the input, then its done event."""
    async def go() -> str:
        ctx = ssl.create_default_context(cafile=str(server.ca))
        body = {"model": "gpt-6.2-sol", "stream": True, "input": "Run `pwd`",
                "tools": [{"type": "custom", "name": "exec", "description": "raw shell"}]}
        async with aiohttp.ClientSession() as session, session.post(
                server.url + "/v1/responses", json=body, ssl=ctx, headers={"Authorization": f"Bearer {KEY}"}) as r:
            return await r.text()
    events = [json.loads(line[6:]) for line in asyncio.run(go()).splitlines() if line.startswith("data: ")]
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
    assert "".join(deltas) == done["input"] == "pwd"  # not Codex's exec: the raw command
