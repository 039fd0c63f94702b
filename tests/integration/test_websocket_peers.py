"""WebSocket read from real peers: an aiohttp server and client over a real socket.

A small TCP relay between them records what each side sent, chunk by chunk as the kernel handed
it over (``write`` = client to server, as the TLS probe of an agent sees it). The recording goes
through the stage logic whole and one byte at a time: the messages must be exactly the ones the
peers sent, under every permessage-deflate negotiation aiohttp can make; a Codex-like Responses
server must give the exact ``llm.call`` records.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from agentsight.event import Event
from agentsight.jsonform import event_to_json, to_jsonable
from tests.chain import Chain, Records, ssl_events
from tests.conftest import read_jsonl
from tests.integration.test_analyzer_stages import config

SECRET = "sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp"
Handler = Callable[[web.WebSocketResponse], Awaitable[None]]
Client = Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]]


async def _converse(handler: Handler, client: Client, *, path: str = "/v1/responses", compress: int = 15,
                    headers: dict[str, str] | None = None) -> Records:
    """Run ``client`` against ``handler`` through a recording relay; returns what went each way."""
    records: Records = []
    relayed: list[asyncio.Task[None]] = []

    async def ws_route(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=bool(compress))
        await ws.prepare(request)
        await handler(ws)
        if not ws.closed:
            await ws.close()
        return ws

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        while data := await reader.read(65536):
            records.append((direction, data))
            writer.write(data)
            await writer.drain()
        writer.close()

    async def relay(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", port)
        task = asyncio.gather(pump(cr, sw, "write"), pump(sr, cw, "read"))
        relayed.append(task)  # type: ignore[arg-type]
        await task

    app = web.Application()
    app.router.add_get(path, ws_route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    relay_server = await asyncio.start_server(relay, "127.0.0.1", 0)
    relay_port = relay_server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"http://127.0.0.1:{relay_port}{path}", compress=compress, headers=headers or {}) as ws:
            await client(ws)
        await asyncio.wait_for(asyncio.gather(*relayed), 10)
    finally:
        relay_server.close()
        await runner.cleanup()
    return records


def converse(handler: Handler, client: Client, **kw: Any) -> Records:
    return asyncio.run(asyncio.wait_for(_converse(handler, client, **kw), 60))


def stages(records: Records) -> list[Event]:
    return Chain().run(codex_ssl(records))


def codex_ssl(records: Records) -> list[Event]:
    return ssl_events(records, conn="9:7f01", pid=9, comm="codex")


def one_byte(records: Records) -> Records:
    return [(d, data[i : i + 1]) for d, data in records for i in range(len(data))]


def ws_messages(events: list[Event]) -> list[tuple[str, int, Any, bool]]:
    return [(e.data["dir"], e.data["opcode"], e.data["text"] if e.data["text"] is not None else e.data["data"],
             e.data["compressed"]) for e in events if e.topic == "http.ws"]


# --------------------------------------------------------------------------- frames and deflate

SMALL = "hello"
REPEATED = json.dumps({"type": "response.output_text.delta", "delta": "the same words " * 300})
RANDOM_TEXT = base64.b64encode(os.urandom(100_000)).decode()  # compressed it still needs a 64-bit length
RANDOM_BYTES = os.urandom(70_000)
CLIENT_SENDS: list[str | bytes] = [SMALL, REPEATED, REPEATED, RANDOM_TEXT, RANDOM_BYTES, SMALL]


def reply(msg: str | bytes) -> list[str | bytes]:
    """What the server answers to one client message: two texts, or the bytes reversed."""
    if isinstance(msg, bytes):
        return [msg[::-1]]
    return [f"ack {len(msg)}", REPEATED if len(msg) < 1000 else msg[:200] + "..."]


async def echo_server(ws: web.WebSocketResponse) -> None:
    await ws.ping(b"server ping")
    async for m in ws:
        if m.type == WSMsgType.TEXT:
            answers = reply(m.data)
        elif m.type == WSMsgType.BINARY:
            answers = reply(m.data)
        else:
            break
        for a in answers:
            await (ws.send_bytes(a) if isinstance(a, bytes) else ws.send_str(a))


async def echo_client(ws: aiohttp.ClientWebSocketResponse) -> None:
    for msg in CLIENT_SENDS:
        await (ws.send_bytes(msg) if isinstance(msg, bytes) else ws.send_str(msg))
        for want in reply(msg):
            got = await ws.receive(timeout=10)
            assert got.data == want
    await ws.ping(b"client ping")
    await ws.close()


def _offer(extra: str) -> Callable[..., str]:
    def gen(compress: int = 15, isserver: bool = False, server_notakeover: bool = False) -> str:
        return "permessage-deflate; client_max_window_bits" + extra
    return gen


@pytest.mark.parametrize("variant", ["none", "deflate", "server_window_10", "server_no_context_takeover",
                                     "client_no_context_takeover"])
def test_real_peers_messages_read_exactly(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    compress = 0 if variant == "none" else 10 if variant == "server_window_10" else 15
    if variant == "server_no_context_takeover":  # aiohttp's client never offers it: make it, the server obliges
        monkeypatch.setattr(aiohttp.client, "ws_ext_gen", _offer("; server_no_context_takeover"))
    if variant == "client_no_context_takeover":  # aiohttp's server never asks it: make it, the client obliges
        real = aiohttp.web_ws.ws_ext_gen
        monkeypatch.setattr(aiohttp.web_ws, "ws_ext_gen",
                            lambda **kw: real(**kw) + "; client_no_context_takeover")
    records = converse(echo_server, echo_client, compress=compress)
    head = records[1][1].split(b"\r\n\r\n")[0].decode()
    if variant != "none":
        assert "permessage-deflate" in head
    negotiated = {"server_window_10": "server_max_window_bits=10"}.get(variant, variant)
    for term in ("server_max_window_bits=10", "server_no_context_takeover", "client_no_context_takeover"):
        assert (term in head) == (term == negotiated), term

    events = stages(records)
    got = ws_messages(events)
    sent = [("write", 1 if isinstance(m, str) else 2, m, compress > 0) for m in CLIENT_SENDS]
    answered = [("read", 1 if isinstance(a, str) else 2, a, compress > 0) for m in CLIENT_SENDS for a in reply(m)]
    assert [g for g in got if g[0] == "write" and g[1] != 8] == sent
    assert [g for g in got if g[0] == "read" and g[1] != 8] == answered
    assert [g[:3] for g in got if g[1] == 8] == [("write", 8, ""), ("read", 8, "")]
    assert not [e for e in events if e.topic == "http.error"]
    (end,) = [e.data for e in events if e.topic == "http.ws.end"]
    assert (end["sent"], end["received"], end["dropped"]) == (len(sent) + 1, len(answered) + 1, 0)
    sizes = {len(m) for m in CLIENT_SENDS}
    assert max(sizes) > 65535  # a 64-bit length went by, masked

    strip = [{k: v for k, v in e.data.items() if k != "ts_start_ns"} for e in events if e.topic == "http.ws"]
    split = stages(one_byte(records))
    assert [{k: v for k, v in e.data.items() if k != "ts_start_ns"} for e in split if e.topic == "http.ws"] == strip


# --------------------------------------------------------------------------- Responses over WebSocket

INSTRUCTIONS = "You are Codex, based on GPT-5. You are running as a coding agent in the Codex CLI."
SHELL_TOOL = {"type": "function", "name": "shell", "description": "Runs a shell command and returns its output.",
              "strict": False, "parameters": {"type": "object", "properties": {
                  "command": {"type": "array", "items": {"type": "string"}},
                  "workdir": {"type": "string"}}, "required": ["command"], "additionalProperties": False}}


def create(input_items: list[dict[str, Any]]) -> dict[str, Any]:
    """A response.create as Codex sends it: a Responses request body with a type."""
    return {"type": "response.create", "model": "gpt-5-codex", "instructions": INSTRUCTIONS, "input": input_items,
            "tools": [SHELL_TOOL], "tool_choice": "auto", "parallel_tool_calls": False,
            "reasoning": {"effort": "medium", "summary": "auto"}, "store": False, "stream": True,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "0199a1f2-6c1e-7d52-9f3b-4b8e2d7c1a05"}


USER_MSG = {"type": "message", "role": "user", "content": [
    {"type": "input_text", "text": f"List the files here. My key is {SECRET}, do not print it."}]}
CALL_ITEM = {"type": "function_call", "id": "fc_01", "status": "completed", "call_id": "call_Ls01",
             "name": "shell", "arguments": '{"command":["ls","-a"],"workdir":"/work"}'}
OUTPUT_ITEM = {"type": "function_call_output", "call_id": "call_Ls01",
               "output": '{"output":".\\n..\\nREADME.md\\n","metadata":{"exit_code":0}}'}
REQUESTS = [create([USER_MSG]), create([USER_MSG, CALL_ITEM, OUTPUT_ITEM]), create([{**USER_MSG, "content": [
    {"type": "input_text", "text": "And now?"}]}])]


def _resp(rid: str, status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": rid, "object": "response", "status": status, "model": "gpt-5-codex-2025-09-15",
            "output": output, "usage": usage}


def answer_events(n: int) -> list[dict[str, Any]]:
    """The server's events for request ``n`` (the third is cut short by a close)."""
    if n == 0:
        reasoning = {"type": "reasoning", "id": "rs_01", "summary": [
            {"type": "summary_text", "text": "**Listing files** I will run ls."}], "encrypted_content": "gAAAAB..."}
        usage = {"input_tokens": 2143, "input_tokens_details": {"cached_tokens": 1920}, "output_tokens": 97,
                 "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 2240}
        return [
            {"type": "codex.rate_limits", "plan_type": "plus", "rate_limits": {"primary": {"used_percent": 3}}},
            {"type": "response.created", "sequence_number": 0, "response": _resp("resp_01", "in_progress", [], None)},
            {"type": "response.in_progress", "sequence_number": 1,
             "response": _resp("resp_01", "in_progress", [], None)},
            {"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
             "item": {"type": "reasoning", "id": "rs_01", "summary": []}},
            {"type": "response.reasoning_summary_text.delta", "sequence_number": 3, "item_id": "rs_01",
             "output_index": 0, "summary_index": 0, "delta": "**Listing files**"},
            {"type": "response.reasoning_summary_text.delta", "sequence_number": 4, "item_id": "rs_01",
             "output_index": 0, "summary_index": 0, "delta": " I will run ls."},
            {"type": "response.output_item.done", "sequence_number": 5, "output_index": 0, "item": reasoning},
            {"type": "response.output_item.added", "sequence_number": 6, "output_index": 1,
             "item": {**CALL_ITEM, "status": "in_progress", "arguments": ""}},
            *[{"type": "response.function_call_arguments.delta", "sequence_number": 7 + i, "item_id": "fc_01",
               "output_index": 1, "delta": d} for i, d in enumerate(['{"command":["ls",', '"-a"],', '"workdir":"/work"}'])],
            {"type": "response.output_item.done", "sequence_number": 10, "output_index": 1, "item": CALL_ITEM},
            {"type": "response.completed", "sequence_number": 11,
             "response": _resp("resp_01", "completed", [reasoning, CALL_ITEM], usage)},
        ]
    if n == 1:
        msg = {"type": "message", "id": "msg_02", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Only README.md is here.", "annotations": []}]}
        usage = {"input_tokens": 2290, "input_tokens_details": {"cached_tokens": 2048}, "output_tokens": 12,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2302}
        return [
            {"type": "response.created", "sequence_number": 0, "response": _resp("resp_02", "in_progress", [], None)},
            {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
             "item": {**msg, "status": "in_progress", "content": []}},
            *[{"type": "response.output_text.delta", "sequence_number": 2 + i, "item_id": "msg_02",
               "output_index": 0, "content_index": 0, "delta": d}
              for i, d in enumerate(["Only ", "README.md", " is here."])],
            {"type": "response.output_item.done", "sequence_number": 5, "output_index": 0, "item": msg},
            {"type": "response.completed", "sequence_number": 6,
             "response": _resp("resp_02", "completed", [msg], usage)},
        ]
    return [
        {"type": "response.created", "sequence_number": 0, "response": _resp("resp_03", "in_progress", [], None)},
        {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_03", "output_index": 0,
         "content_index": 0, "delta": "Partial"},
    ]


async def responses_server(ws: web.WebSocketResponse) -> None:
    n = 0
    async for m in ws:
        if m.type != WSMsgType.TEXT:
            break
        assert json.loads(m.data)["type"] == "response.create"
        for ev in answer_events(n):
            await ws.send_str(json.dumps(ev))
        if n == 2:
            await ws.close(code=1011, message=b"upstream went away")
            return
        n += 1


async def codex_client(ws: aiohttp.ClientWebSocketResponse) -> None:
    for body in REQUESTS:
        await ws.send_str(json.dumps(body))
        while True:
            m = await ws.receive(timeout=10)
            if m.type != WSMsgType.TEXT or json.loads(m.data)["type"] == "response.completed":
                break


def _stable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("ts_") and k not in ("ttft_ms", "duration_ms")}


def test_codex_responses_over_websocket_give_exact_llm_calls() -> None:
    records = converse(responses_server, codex_client, path="/backend-api/codex/responses",
                       headers={"Authorization": f"Bearer {SECRET}", "OpenAI-Beta": "responses_websockets=2026-02-06",
                                "User-Agent": "codex_cli_rs/0.46.0 (Ubuntu 24.4.0; x86_64) xterm-256color"})
    events = stages(records)
    assert SECRET not in repr([e.data for e in events])
    calls = [e.data for e in events if e.topic == "llm.call"]
    assert [c["response_id"] for c in calls] == ["resp_01", "resp_02", "resp_03"]
    first, second, third = calls
    for c in calls:
        assert (c["api"], c["transport"], c["host"], c["endpoint"], c["stream"], c["status_code"]) == (
            "openai.responses", "websocket", f"127.0.0.1:{c['host'].split(':')[1]}", "/backend-api/codex/responses",
            True, None)
        assert (c["model_requested"], c["model"], c["system"]) == ("gpt-5-codex", "gpt-5-codex-2025-09-15",
                                                                     INSTRUCTIONS)
        assert c["user_agent"] == "codex_cli_rs/0.46.0 (Ubuntu 24.4.0; x86_64) xterm-256color"
        assert [t["name"] for t in c["tools"]] == ["shell"] and c["seq"] == 0
    assert [c["ws_index"] for c in calls] == [0, 1, 2]
    assert first["messages"] == [{"role": "user", "content": "List the files here. My key is [REDACTED:sk], do not "
                                  "print it.", "parts": [{"type": "text", "text": "List the files here. My key is "
                                                          "[REDACTED:sk], do not print it."}]}]
    assert (first["output_text"], first["reasoning"], first["stop_reason"]) == ("", "**Listing files** I will run ls.",
                                                                               "completed")
    assert first["tool_calls"] == [{"id": "call_Ls01", "name": "shell",
                                    "arguments": '{"command":["ls","-a"],"workdir":"/work"}',
                                    "input": {"command": ["ls", "-a"], "workdir": "/work"}}]
    assert {k: v for k, v in first["usage"].items() if k != "raw"} == {
        "input_tokens": 2143, "output_tokens": 97, "cache_read_tokens": 1920, "cache_write_tokens": None,
        "reasoning_tokens": 64, "uncached_input_tokens": 223, "total_tokens": 2240}
    # codex.rate_limits is read (13 events) and, not being a Responses event, changes nothing
    assert first["stream_events"] == 13 and first["notes"] == [] and first["error"] is None
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    assert second["messages"][2]["parts"][0]["content"] == OUTPUT_ITEM["output"]
    assert (second["output_text"], second["tool_calls"], second["stop_reason"]) == ("Only README.md is here.", [],
                                                                                   "completed")
    assert (second["usage"]["input_tokens"], second["usage"]["output_tokens"], second["usage"]["cache_read_tokens"]) \
        == (2290, 12, 2048)
    assert (third["output_text"], third["usage"]["input_tokens"]) == ("Partial", None)
    assert third["notes"] == ["response incomplete: websocket closed (code 1011)"]
    for c in calls:
        assert c["ts_request_start_ns"] <= c["ts_first_byte_ns"] <= c["ts_first_token_ns"] <= c["ts_end_ns"]

    split = [e.data for e in stages(one_byte(records)) if e.topic == "llm.call"]
    assert [_stable(c) for c in split] == [_stable(c) for c in calls]


def test_the_actor_pipeline_gives_the_same_websocket_calls(pipeline: Any, workdir: Any) -> None:
    """The Codex capture replayed through real actor processes (http x2 -> sse -> llm -> redact -> jsonl)."""
    records = converse(responses_server, codex_client, path="/backend-api/codex/responses",
                       headers={"Authorization": f"Bearer {SECRET}"})
    cap, out = workdir / "cap.jsonl", workdir / "out.jsonl"
    cap.write_text("".join(event_to_json(e) + "\n" for e in codex_ssl(records)))
    p = pipeline(config(cap, out)).start()
    assert p.wait(90) == 0, p.stderr()
    rows = read_jsonl(out)
    got = [r["data"] for r in rows if r["topic"] == "llm.call"]
    want = [json.loads(json.dumps(to_jsonable(e.data))) for e in stages(records) if e.topic == "llm.call"]
    assert [_stable(c) for c in got] == [_stable(c) for c in want] and len(got) == 3
    sent = len(REQUESTS) + sum(len(answer_events(n)) for n in range(3))
    assert sum(1 for r in rows if r["topic"] == "http.ws") == sent + 2  # and a close frame each way
    assert SECRET not in out.read_text() and "no events lost" in p.stderr()
