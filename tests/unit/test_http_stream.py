"""HTTP/1.1 reassembly: framing, codings, pairing, resync, streaming events."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
import zstandard

from agentsight.analysis.httpstream import HttpStreams
from agentsight.event import Event

REQ = b"POST /v1/x HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 2\r\n\r\n{}"


def feed(http: HttpStreams, records: list[tuple[str, bytes]], conn: str = "1:ab") -> list[Event]:
    out: list[Event] = []
    for i, (d, b) in enumerate(records):
        out += http.feed(Event("ssl.data", 100 + i, "ssl", 1, 1, "curl", {"conn": conn, "dir": d, "bytes": b}))
    return out


def topics(events: list[Event]) -> list[str]:
    return [e.topic for e in events]


def only(events: list[Event], topic: str) -> list[dict]:
    return [e.data for e in events if e.topic == topic]


@pytest.mark.parametrize(
    "coding,encode",
    [
        ("gzip", lambda b: gzip.compress(b)),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
        ("br", brotli.compress),
        ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
        ("gzip, br", lambda b: brotli.compress(gzip.compress(b))),
    ],
)
def test_content_codings_are_decoded_at_any_split(coding: str, encode) -> None:
    body = b'{"answer": "' + b"x" * 3000 + b'"}'
    enc = encode(body)
    resp = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (coding.encode(), len(enc)) + enc
    for cut in (1, 40, len(resp) // 2, len(resp) - 1):
        out = feed(HttpStreams(), [("write", REQ), ("read", resp[:cut]), ("read", resp[cut:])])
        (r,) = only(out, "http.response")
        assert r["body"] == body and r["decode_error"] is None and r["wire_size"] == len(enc)
        assert r["body_text"] == body.decode()


def test_chunked_body_and_trailers() -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    (r,) = only(feed(HttpStreams(), [("write", REQ), ("read", resp)]), "http.response")
    assert r["body"] == b"hello world" and r["complete"]


def test_bad_gzip_is_reported_not_raised() -> None:
    resp = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnotgz"
    (r,) = only(feed(HttpStreams(), [("write", REQ), ("read", resp)]), "http.response")
    assert r["decode_error"] and r["complete"] and r["body"] == b""


def test_head_response_has_no_body_and_next_exchange_parses() -> None:
    head = b"HEAD /f HTTP/1.1\r\nHost: h\r\n\r\n"
    resp1 = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    resp2 = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    out = feed(HttpStreams(), [("write", head + REQ), ("read", resp1 + resp2)])
    ex = only(out, "http.exchange")
    assert [(e["request"]["method"], e["response"]["status_code"], e["response"]["body"]) for e in ex] == [
        ("HEAD", 200, b""), ("POST", 201, b"ok")]


def test_informational_response_is_skipped() -> None:
    resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"
    (r,) = only(feed(HttpStreams(), [("write", REQ), ("read", resp)]), "http.response")
    assert r["status_code"] == 200 and r["body"] == b"z"


def test_body_delimited_by_close_completes_on_close() -> None:
    http = HttpStreams()
    out = feed(http, [("write", REQ), ("read", b"HTTP/1.0 200 OK\r\n\r\nstream until close")])
    assert only(out, "http.response") == []
    out = http.close_connection("1:ab")
    (r,) = only(out, "http.response")
    assert r["body"] == b"stream until close" and r["complete"]


def test_truncated_response_is_reported_incomplete_on_close() -> None:
    http = HttpStreams()
    feed(http, [("write", REQ), ("read", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")])
    out = http.close_pid(1)
    (r,) = only(out, "http.response")
    assert not r["complete"] and r["body"] == b"abc" and r["error"]
    assert len(only(out, "http.exchange")) == 1


@pytest.mark.parametrize("head,body,why", [
    (b"Content-Length: 10", b"abc", "(7 bytes short)"),
    (b"Transfer-Encoding: chunked", b"3\r\nabc\r\n", "(incomplete chunked read)"),
    (b"Transfer-Encoding: chunked", b"a\r\nabc", "(incomplete chunked read)"),
])
def test_a_body_cut_by_the_close_says_how_it_was_framed(head: bytes, body: bytes, why: str) -> None:
    http = HttpStreams()
    feed(http, [("write", REQ), ("read", b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\n" + body)])
    (err,) = only(http.close_connection("1:ab"), "http.error")
    assert err["error"] == f"peer closed connection without sending complete message body {why}"


def test_request_without_response_still_gives_an_exchange_on_close() -> None:
    http = HttpStreams()
    feed(http, [("write", REQ)])
    (ex,) = only(http.flush(), "http.exchange")
    assert ex["response"] is None and ex["request"]["path"] == "/v1/x"


def test_garbage_between_messages_is_skipped_counted_and_reported() -> None:
    http = HttpStreams()
    junk = b"\x16\x03\x01\x00garbage-bytes\r\n\r\n"
    out = feed(http, [("write", junk + REQ + b"POST nonsense\r\n\r\n" + REQ),
                      ("read", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nJUNK" +
                       b"HTTP/1.1 204 No Content\r\n\r\n")])
    assert [e["request"]["path"] for e in only(out, "http.exchange")] == ["/v1/x", "/v1/x"]
    errors = only(out, "http.error")
    assert len(errors) >= 2 and all(e["conn"] == "1:ab" for e in errors)
    assert http.stats.malformed == len(errors)
    assert http.stats.skipped_bytes >= len(junk) + 4


def test_start_line_cut_across_records_during_resync() -> None:
    http = HttpStreams()
    out = feed(http, [("write", b"zzzzzzzzzzzzzzzzzzzzzzzz PO"), ("write", REQ[2:])])
    assert [r["path"] for r in only(out, "http.request")] == ["/v1/x"]


def test_streaming_response_surfaces_head_and_chunks_live() -> None:
    http = HttpStreams()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = feed(http, [("write", REQ), ("read", head)])
    assert topics(out) == ["http.request", "http.stream.head"]
    assert out[1].data["ts_first_byte_ns"] == 101 and out[1].data["ts_request_start_ns"] == 100
    out = feed(http, [("read", b"6\r\ndata: \r\n")])
    assert only(out, "http.stream.chunk")[0]["data"] == b"data: " and "http.response" not in topics(out)
    out = feed(http, [("read", b"3\r\nx\n\n\r\n0\r\n\r\n")])
    (chunk,) = only(out, "http.stream.chunk")
    assert chunk["offset"] == 6 and chunk["data"] == b"x\n\n"
    assert topics(out)[-2:] == ["http.response", "http.exchange"]


def test_headers_are_redacted_but_kept() -> None:
    req = b"GET /v1/models?key=AIzaSyD4fakeFakeFake1234567890abcdEFGH HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer tok_abcdefghijklmnop123\r\n\r\n"
    (r,) = only(feed(HttpStreams(), [("write", req)]), "http.request")
    assert dict(r["headers"])["authorization"].startswith("[REDACTED")
    assert "AIzaSyD4fake" not in r["target"] and r["path"] == "/v1/models"
    (r,) = only(feed(HttpStreams(redact=False), [("write", req)]), "http.request")
    assert dict(r["headers"])["authorization"] == "Bearer tok_abcdefghijklmnop123"


def test_non_ssl_events_and_missing_fields_are_ignored() -> None:
    http = HttpStreams()
    assert http.feed(Event("process.exec", 1, "process", data={"pid": 1})) == []
    assert http.feed(Event("ssl.data", 1, "ssl", data={"dir": "write"})) == []
    assert http.stats.records == 0


def test_connections_are_independent() -> None:
    http = HttpStreams()
    out = feed(http, [("write", REQ[:10])], conn="1:a") + feed(http, [("write", REQ)], conn="1:b")
    out += feed(http, [("write", REQ[10:])], conn="1:a")
    assert sorted(r["conn"] for r in only(out, "http.request")) == ["1:a", "1:b"]
    assert http.stats.connections == 2


def test_bytes_the_capture_cut_keep_the_framing_of_what_follows() -> None:
    http = HttpStreams()
    body = b"x" * 5000
    head = b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"
    cut = Event("ssl.data", 1, "ssl", 1, 1, "node", {"conn": "1:ab", "dir": "write", "bytes": head + body[:1000],
                                                      "len": len(head) + 5000, "truncated": 4000})
    out = http.feed(cut)
    out += feed(http, [("read", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
                       ("write", b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"),
                       ("read", b"HTTP/1.1 204 No Content\r\n\r\n")])
    exchanges = [e.data for e in out if e.topic == "http.exchange"]
    assert [(x["request"]["path"], x["response"]["status_code"]) for x in exchanges] == [("/big", 200),
                                                                                         ("/next", 204)]
    assert exchanges[0]["request"]["body_size"] == 5000
    assert http.stats.capture_gap_bytes == 4000 and http.stats.malformed == 0


@pytest.mark.parametrize("last_event", [b"data: [DONE]\n\n", b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                                        b"event: response.completed\r\ndata: {}\r\n\r\n"])
def test_an_event_stream_is_complete_at_its_end_event_without_the_chunked_terminator(last_event: bytes) -> None:
    """SDKs stop reading at the end event: the 0-size chunk may only come (or never) at close."""
    http = HttpStreams()
    body = b"data: {\"x\": 1}\n\n" + last_event
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = feed(http, [("write", b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"),
                      ("read", head + b"%x\r\n" % len(body) + body + b"\r\n")])
    (exchange,) = [e.data for e in out if e.topic == "http.exchange"]
    assert exchange["response"]["complete"] and exchange["response"]["body"] == body
    # The terminator arriving later, or the connection closing without it, adds nothing.
    later = feed(http, [("read", b"0\r\n\r\n")]) + http.close_connection("1:ab")
    assert [e.topic for e in later] == [] and http.stats.malformed == 0
    closed = HttpStreams()
    feed(closed, [("write", b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"),
                  ("read", head + b"%x\r\n" % len(body) + body + b"\r\n")])
    assert [e.topic for e in closed.close_connection("1:ab")] == [] and closed.stats.malformed == 0


def test_an_event_stream_without_its_end_event_waits_for_the_terminator() -> None:
    http = HttpStreams()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"data: {\"x\": 1}\n\n"
    out = feed(http, [("write", b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n"),
                      ("read", head + b"%x\r\n" % len(body) + body + b"\r\n")])
    assert "http.exchange" not in [e.topic for e in out]
    assert "http.exchange" in [e.topic for e in feed(http, [("read", b"0\r\n\r\n")])]
