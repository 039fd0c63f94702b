"""Analyzer stage wrappers called directly: filters, redaction, sessions, http pass-through rules."""

from __future__ import annotations

import os
import time

import pytest

from agentsight.actor import OptionError
from agentsight.actors.analyzers.filters import HttpFilter, SslFilter
from agentsight.actors.analyzers.http import Http
from agentsight.actors.analyzers.redact import Redact
from agentsight.actors.analyzers.sessions import Sessions
from agentsight.event import Event

KEY = "sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp"


def ssl(data: bytes, pid: int = 9, comm: str = "node", direction: str = "write") -> Event:
    return Event("ssl.data", 1, "ssl", pid, pid, comm, {"conn": f"{pid}:1", "dir": direction, "bytes": data,
                                                        "len": len(data)})


def http(method: str, path: str, status: int = 200) -> Event:
    return Event("http.exchange", 1, "http", 9, 9, "node",
                 {"request": {"method": method, "path": path}, "response": {"status_code": status}})


def test_http_filter_excludes_matches_and_leaves_other_topics_alone():
    f = HttpFilter("f", {"exclude": ["GET /health", "response.status_code=202"]})
    events = [http("GET", "/health/live"), http("GET", "/v1/models"), http("POST", "/x", 202),
              ssl(b"GET /health HTTP/1.1\r\n")]
    kept = f.process_batch(events)
    assert [e.data.get("request", {}).get("path") for e in kept] == ["/v1/models", None]
    assert f.stats == {"excluded": 2}


def test_ssl_filter_include_and_live_change():
    f = SslFilter("f", {"include": "len>10 & comm~node"})
    assert [len(e.data["bytes"]) for e in f.process_batch([ssl(b"x" * 20), ssl(b"short"), ssl(b"y" * 30, comm="py")])] \
        == [20]
    assert f.reconfigure({"exclude": ["data.type=binary"]})
    assert [e.data["bytes"] for e in f.process_batch([ssl(b"\xff\xfe\x00"), ssl(b"text")])] == [b"text"]


def test_bad_expression_is_an_option_error_with_position():
    with pytest.raises(OptionError, match="position 4"):
        HttpFilter("f", {"exclude": ["len>abc"]})


def test_redact_stage_cleans_bytes_and_text_and_can_be_turned_off():
    ev = ssl(b"POST /v1 HTTP/1.1\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n\r\n")
    (out,) = Redact("r").process(ev)
    assert KEY.encode() not in out.data["bytes"] and b"[REDACTED" in out.data["bytes"]
    off = Redact("r", {"enabled": False})
    (raw,) = off.process(ssl(KEY.encode()))
    assert raw.data["bytes"] == KEY.encode()


def test_http_stage_passes_other_topics_and_raw_on_request():
    h = Http("h")
    other = Event("file.open", 1, "process", 9, 9, "node", {"path": "/tmp/x"})
    assert list(h.process(other)) == [other]
    req = ssl(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [e.topic for e in h.process(req)] == ["http.request"]
    h2 = Http("h", {"raw": True})
    assert [e.topic for e in h2.process(req)] == ["ssl.data", "http.request"]


def test_sessions_stage_seeds_the_root_tree_from_proc():
    s = Sessions("s", {"root_pids": [os.getpid()]})
    out = list(s.tick(0))
    assert [e.topic for e in out] == ["session.start"]
    assert out[0].data["agent"] == "recorded" and out[0].data["pid"] == os.getpid()
    (ev,) = s.process(Event("file.open", 1, "process", os.getpid(), os.getpid(), "python3", {"path": "/x"}))
    assert ev.data["session"] == out[0].data["session"]


def test_http_stage_closes_an_exited_process_connections_after_the_grace_period():
    h = Http("h", {"exit_grace_ms": 50})
    h.process(ssl(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    exit_ev = Event("process.exit", 2, "process", 9, 9, "node", {"exit_code": 0})
    assert list(h.process(exit_ev)) == [exit_ev]
    # The response overtaken by the exit still pairs with its request.
    out = list(h.process(ssl(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", direction="read")))
    exchange = next(e for e in out if e.topic == "http.exchange")
    assert exchange.data["request"]["path"] == "/" and exchange.data["response"]["body"] == b"ok"
    h.process(ssl(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert list(h.tick(0)) == []
    time.sleep(0.06)
    (abandoned,) = [e for e in h.tick(0) if e.topic == "http.exchange"]
    assert abandoned.data["request"]["path"] == "/again" and abandoned.data["response"] is None
