"""Responses calls over WebSocket: ``http.ws`` messages in, one ``llm.call`` per ``response.create``.

The stage is fed ``http.ws`` records as HttpStreams makes them; tests/integration/test_websocket_peers.py
runs the whole chain on what real aiohttp peers sent.
"""

from __future__ import annotations

import json
from typing import Any

from agentsight.actors.analyzers.llm import Llm
from agentsight.analysis.llm import LlmCalls, is_ws_call_start
from agentsight.analysis.websocket import OP_CLOSE, OP_TEXT
from agentsight.event import Event

SECRET = "sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp"
PATH = "/v1/responses"


class Conn:
    """Makes the http.ws records of one connection, numbered as HttpStreams numbers them."""

    def __init__(self, conn: str = "5:c0", path: str | None = PATH) -> None:
        self.conn, self.path, self.ts = conn, path, 1_000
        self.index = {"write": 0, "read": 0}

    def msg(self, direction: str, body: Any, opcode: int = OP_TEXT, close_code: int | None = None) -> Event:
        self.ts += 10
        index = self.index[direction]
        self.index[direction] += 1
        text = body if isinstance(body, str) else json.dumps(body)
        return Event("http.ws", self.ts, "http", 5, 5, "codex", {
            "conn": self.conn, "seq": 0, "index": index, "dir": direction, "opcode": opcode, "text": text,
            "data": None, "close_code": close_code, "size": len(text), "wire_size": len(text), "compressed": False,
            "frames": 1, "truncated": False, "decode_error": None, "host": "api.openai.com", "path": self.path,
            "ts_start_ns": self.ts - 5})

    def create(self, text: str = "hi", **extra: Any) -> Event:
        return self.msg("write", {"type": "response.create", "model": "gpt-5", "instructions": "Be brief.",
                                  "input": [{"type": "message", "role": "user",
                                             "content": [{"type": "input_text", "text": text}]}], **extra})

    def answer(self, text: str, rid: str = "resp_1", usage: dict[str, int] | None = None) -> list[Event]:
        usage = usage or {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
        resp = {"id": rid, "status": "in_progress", "model": "gpt-5-2025-08-07", "output": []}
        item = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
        return [self.msg("read", {"type": "response.created", "response": resp}),
                self.msg("read", {"type": "response.output_text.delta", "output_index": 0, "delta": text}),
                self.msg("read", {"type": "response.completed", "response": {
                    **resp, "status": "completed", "output": [item], "usage": usage}})]

    def end(self) -> Event:
        self.ts += 10
        return Event("http.ws.end", self.ts, "http", 5, 5, "codex",
                     {"conn": self.conn, "seq": 0, "host": "api.openai.com", "path": self.path})


def feed(llm: LlmCalls, events: list[Event]) -> list[dict[str, Any]]:
    return [e.data for ev in events for e in llm.feed(ev) if e.topic == "llm.call"]


def test_calls_in_sequence_on_one_connection() -> None:
    c = Conn()
    events = [c.create("first"), *c.answer("One.", "resp_1"), c.msg("write", {"type": "response.processed",
                                                                               "response_id": "resp_1"}),
              c.msg("read", {"type": "codex.rate_limits"}), c.create("second"), *c.answer("Two.", "resp_2"), c.end()]
    calls = feed(LlmCalls(), events)
    assert [(x["response_id"], x["output_text"], x["messages"][0]["content"], x["ws_index"]) for x in calls] == [
        ("resp_1", "One.", "first", 0), ("resp_2", "Two.", "second", 2)]
    x = calls[0]
    assert (x["api"], x["transport"], x["provider"], x["endpoint"], x["model"], x["system"]) == (
        "openai.responses", "websocket", "openai", PATH, "gpt-5-2025-08-07", "Be brief.")
    assert (x["usage"]["input_tokens"], x["usage"]["output_tokens"], x["stream_events"], x["notes"]) == (10, 2, 3, [])
    assert (x["ts_request_start_ns"], x["ts_first_byte_ns"], x["ts_first_token_ns"], x["ts_end_ns"]) == (
        1005, 1015, 1030, 1040)
    assert x["cost"] is not None and x["cost"]["currency"] == "USD"


def test_a_connection_that_ends_mid_call_gives_an_incomplete_call() -> None:
    c = Conn()
    calls = feed(LlmCalls(), [c.create(), *c.answer("cut")[:2], c.end()])
    assert [(x["output_text"], x["stop_reason"], x["notes"]) for x in calls] == [
        ("cut", "in_progress", ["response incomplete: connection closed before the response ended"])]


def test_a_close_frame_or_the_next_request_ends_the_open_call() -> None:
    c = Conn()
    events = [c.create("a"), c.answer("x")[0], c.create("b"), c.answer("y")[0],
              c.msg("read", "\u0003\u00f3going away", opcode=OP_CLOSE, close_code=1011)]
    calls = feed(LlmCalls(), events)
    assert [x["notes"] for x in calls] == [["response incomplete: the next response.create came first"],
                                           ["response incomplete: websocket closed (code 1011)"]]


def test_a_wrapped_error_event_is_the_calls_error() -> None:
    c = Conn()
    err = {"type": "error", "status": 429, "error": {"type": "usage_limit_reached",
                                                      "message": "The usage limit has been reached"},
           "headers": {"x-codex-primary-used-percent": "100"}}
    (x,) = feed(LlmCalls(), [c.create(), c.msg("read", err)])
    assert x["status_code"] == 429 and x["notes"] == []
    assert {k: x["error"][k] for k in ("type", "message", "status")} == {
        "type": "usage_limit_reached", "message": "The usage limit has been reached", "status": 429}
    assert json.loads(x["error"]["body"])["status"] == 429


def test_a_failed_response_ends_the_call_with_its_error() -> None:
    c = Conn()
    failed = {"type": "response.failed", "response": {"id": "resp_f", "status": "failed", "model": "gpt-5",
                                                      "error": {"code": "server_error", "message": "boom"}}}
    (x,) = feed(LlmCalls(), [c.create(), c.msg("read", failed)])
    assert (x["stop_reason"], x["error"]["type"], x["error"]["message"], x["status_code"]) == (
        "failed", "server_error", "boom", None)


def test_only_responses_paths_open_calls() -> None:
    realtime = Conn(path="/v1/realtime")
    assert feed(LlmCalls(), [realtime.msg("write", {"type": "response.create", "response": {}}),
                             realtime.msg("read", {"type": "response.done"}), realtime.end()]) == []
    assert is_ws_call_start(Conn(path="/openai/v1/responses").create().data)
    assert is_ws_call_start(Conn(path=None).create().data)  # capture began after the upgrade
    assert not is_ws_call_start(Conn().msg("read", {"type": "response.create"}).data)
    assert not is_ws_call_start(Conn().msg("write", "not json: response.create").data)


def test_credentials_are_redacted_unless_asked_not_to() -> None:
    c = Conn()
    events = [c.create(f"my key is {SECRET}"), *c.answer("ok")]
    (x,) = feed(LlmCalls(), events)
    assert SECRET not in repr(x) and "[REDACTED:sk]" in x["messages"][0]["content"]
    (raw,) = feed(LlmCalls(redact=False), events)
    assert SECRET in raw["messages"][0]["content"]


def test_the_user_agent_comes_from_the_upgrade_exchange() -> None:
    c = Conn()
    upgrade = Event("http.exchange", 900, "http", 5, 5, "codex", {
        "conn": c.conn, "seq": 0, "request": {"method": "GET", "path": PATH, "headers": [
            ["user-agent", "codex_cli_rs/0.46.0"]]}, "response": {"status_code": 101}})
    llm = LlmCalls()
    assert llm.feed(upgrade) == []
    (x,) = feed(llm, [c.create(), *c.answer("ok")])
    assert x["user_agent"] == "codex_cli_rs/0.46.0"


def test_open_calls_are_bounded() -> None:
    llm = LlmCalls(max_ws=2)
    conns = [Conn(f"5:{i}") for i in range(3)]
    calls = feed(llm, [c.create() for c in conns])
    assert [(x["conn"], x["notes"]) for x in calls] == [("5:0", ["response incomplete: too many open websocket "
                                                                  "calls", "no response captured"])]
    assert llm.stats.calls == 1 and llm.stats.ws_messages == 3


def test_the_llm_actor_passes_websocket_records_on_and_adds_calls() -> None:
    stage = Llm("llm", {"keep_exchanges": False})
    c = Conn()
    out = [e for ev in [c.create(), *c.answer("ok"), c.end()] for e in stage.process(ev)]
    assert [e.topic for e in out] == ["http.ws"] * 4 + ["llm.call", "http.ws.end"]
