"""SSE parsing per the WHATWG field rules, at every split, and the merge stage."""

from __future__ import annotations

import pytest

from agentsight.analysis.sse import SseEvent, SseMerge, SseParser, parse_sse
from agentsight.event import Event

STREAM = (
    b"\xef\xbb\xbf: comment\r\n"
    b"data: first\r\ndata:second\r\n\r\n"  # multi-line data, no space after colon
    b"event: delta\nid: 42\nretry: 1500\ndata: {\"a\": 1}\n\n"
    b"id: bad\x00id\nretry: 12x\nunknown: z\ndata\n\n"  # NUL id ignored, bad retry ignored, empty data
    b"event: only-type\n\n"  # no data: not dispatched, type reset
    b"data:  two spaces\rdata: cr-only\r\r"
    b"data: [DONE]\n\n"
    b"data: never finished"
)
EXPECTED = [
    ("message", "first\nsecond", None, None),
    ("delta", '{"a": 1}', "42", 1500),
    ("message", "", "42", 1500),
    ("message", " two spaces\ncr-only", "42", 1500),
    ("message", "[DONE]", "42", 1500),
]


def summary(events: list[SseEvent]) -> list[tuple]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def test_field_rules() -> None:
    p = SseParser()
    events = p.feed(STREAM)
    assert summary(events) == EXPECTED
    assert events[-1].done and not events[0].done
    assert p.comments == 1
    assert p.discarded_tail == len(b"data: never finished")


def test_every_split_and_byte_at_a_time_agree() -> None:
    whole = SseParser().feed(STREAM)
    for i in range(len(STREAM) + 1):
        p = SseParser()
        assert p.feed(STREAM[:i]) + p.feed(STREAM[i:]) == whole, i
    p = SseParser()
    assert [e for b in STREAM for e in p.feed(bytes([b]))] == whole


def test_multibyte_utf8_split_across_feeds() -> None:
    data = "data: café ✓\n\n".encode()
    for i in range(len(data)):
        p = SseParser()
        assert summary(p.feed(data[:i]) + p.feed(data[i:])) == [("message", "café ✓", None, None)]


def test_timeline_stamps_events_with_the_record_that_completed_them() -> None:
    body = b"data: a\n\ndata: b\n\n"
    events = parse_sse(body, [[5, 100], [10, 200], [len(body), 300]])
    assert [(e.data, e.ts_ns) for e in events] == [("a", 200), ("b", 300)]


@pytest.mark.parametrize("live", [True, False])
def test_merge_stage(live: bool) -> None:
    stage = SseMerge(live=live)
    base = {"conn": "1:a", "seq": 0}
    out = stage.feed(Event("http.stream.head", 1, "http", data={**base, "content_type": "text/event-stream"}))
    out += stage.feed(Event("http.stream.chunk", 2, "http", data={**base, "offset": 0, "data": b"data: x\n"}))
    out += stage.feed(Event("http.stream.chunk", 3, "http", data={**base, "offset": 8, "data": b"\ndata: [DONE]\n\n"}))
    live_events = [e.data for e in out if e.topic == "sse.event"]
    assert [(e["data"], e["ts_ns"]) for e in live_events] == ([("x", 3), ("[DONE]", 3)] if live else [])
    body = b"data: x\n\ndata: [DONE]\n\n"
    ex = Event("http.exchange", 4, "http", data={**base, "response": {
        "content_type": "text/event-stream", "body": body, "timeline": [[8, 2], [len(body), 3]]}})
    (merged,) = stage.feed(ex)
    sse = merged.data["response"]["sse"]
    assert sse["count"] == 2 and sse["done"] and sse["data"] == "x" and sse["types"] == ["message"]
    assert [e["ts_ns"] for e in sse["events"]] == [3, 3]


def test_non_stream_events_pass_through() -> None:
    ev = Event("http.exchange", 1, "http", data={"conn": "c", "seq": 1, "response": {"content_type": "application/json",
                                                                                      "body": b"{}"}})
    assert SseMerge().feed(ev) == [ev] and "sse" not in ev.data["response"]
