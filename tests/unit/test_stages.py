"""Analyzer stage wrappers called directly: filters, redaction, sessions, http pass-through rules."""

from __future__ import annotations

import os

import pytest

from agentsight.actors.analyzers.filters import HttpFilter, SslFilter
from agentsight.actors.analyzers.http import Http
from agentsight.actors.analyzers.redact import Redact
from agentsight.actors.analyzers.sessions import Sessions
from agentsight.event import Event
from agentsight.pipeline.component import OptionError

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
    assert list(h.tick(1_000_000_000)) == []  # the first tick after the exit starts the 50 ms
    assert list(h.tick(1_049_999_999)) == []
    (abandoned,) = [e for e in h.tick(1_050_000_000) if e.topic == "http.exchange"]
    assert abandoned.data["request"]["path"] == "/again" and abandoned.data["response"] is None


def _through(stages, events):
    for st in stages:
        out = []
        for e in events:
            out.extend(st.process(e))
        out.extend(st.flush())
        events = out
    return events


def _sse(kind: str, payload: dict) -> str:
    import json

    return f"event: {kind}\ndata: {json.dumps(payload)}\n\n"


ANT_KEY = "sk-ant-api03-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3Ab4Cd5Ef6Gh7Ij8"
PEM_KEY = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw\n"
           "7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFc\n-----END RSA PRIVATE KEY-----")


def _anthropic_stream(deltas: list[str]) -> bytes:
    body = _sse("message_start", {"type": "message_start", "message": {"id": "m1", "model": "claude-x",
                                                                         "usage": {"input_tokens": 3}}})
    body += _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})
    for d in deltas:
        body += _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": d}})
    body += _sse("message_stop", {"type": "message_stop"})
    return body.encode()


def _request(body_text: str, query: str = "") -> bytes:
    body = body_text.encode()
    return (f"POST /v1/messages{query} HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _stages():
    from agentsight.actors.analyzers.llm import Llm
    from agentsight.actors.analyzers.sse import Sse

    return [Http("http"), Sse("sse"), Llm("llm"), Redact("redact")]


def _leaks(events, fragment: str) -> list[str]:
    return [e.topic for e in events if fragment in repr(e.data) or fragment.encode() in repr(e.data).encode()]


def test_a_key_echoed_in_a_streamed_answer_and_split_across_tls_reads_is_redacted_whole():
    import json

    req = _request(json.dumps({"model": "claude-x", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    stream = _anthropic_stream([f"your key is {ANT_KEY} ok"])
    cut = stream.index(ANT_KEY.encode()) + 20
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    reads = [head] + [b"%x\r\n" % len(p) + p + b"\r\n" for p in (stream[:cut], stream[cut:])] + [b"0\r\n\r\n"]
    out = _through(_stages(), [ssl(req)] + [ssl(r, direction="read") for r in reads])
    assert "llm.call" in [e.topic for e in out] and "sse.event" in [e.topic for e in out]
    assert _leaks(out, ANT_KEY[22:40]) == []


def test_a_key_split_across_two_answer_deltas_is_redacted_whole_in_the_call():
    import json

    req = _request(json.dumps({"model": "claude-x", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    stream = _anthropic_stream([f"your key is {ANT_KEY[:25]}", f"{ANT_KEY[25:]} ok"])
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(stream) + stream
    out = _through(_stages(), [ssl(req), ssl(resp, direction="read")])
    (call,) = [e for e in out if e.topic == "llm.call"]
    assert ANT_KEY[30:45] not in repr(call.data) and "[REDACTED:sk-ant] ok" in repr(call.data)


def test_a_pem_private_key_and_a_query_key_never_reach_the_records():
    import json

    req = _request(json.dumps({"model": "claude-x", "messages": [{"role": "user", "content": f"use {PEM_KEY}"}]}),
                   query="?key=not-google-but-secret-77")
    answer = json.dumps({"id": "m", "model": "claude-x", "content": [{"type": "text", "text": "ok"}],
                         "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer
    out = _through(_stages(), [ssl(req), ssl(resp, direction="read")])
    assert "llm.call" in [e.topic for e in out]
    assert _leaks(out, "MIIEowIBAAKCAQEAu1SU1") == [] and _leaks(out, "7onLRnrq0") == []
    assert _leaks(out, "not-google-but-secret") == []
    (request,) = [e for e in out if e.topic == "http.request"]
    assert request.data["query"] == "key=[REDACTED:secret]"


def test_an_authorization_header_split_across_two_writes_is_redacted_whole_in_raw_records():
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer " + KEY.encode() + \
        b"\r\nContent-Length: 2\r\n\r\n{}"
    for cut in range(head.index(b"Authorization"), head.index(b"\r\nContent-Length") + 1, 5):
        out = _through([Http("h", {"raw": True}), Redact("r")], [ssl(head[:cut]), ssl(head[cut:])])
        raw = b"".join(e.data["bytes"] for e in out if e.topic == "ssl.data")
        assert KEY[10:30].encode() not in raw, cut
        assert raw.endswith(b"Content-Length: 2\r\n\r\n{}")
