"""Property tests: random and mutated bytes never raise, are counted, and the next exchange still parses."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentsight.analysis.httpstream import HttpStreams
from agentsight.event import Event
from tests.chain import Chain, Records, ssl_events

FX = Path(__file__).parent.parent / "fixtures" / "llm"
REQ = (FX / "openai_chat_stream.req").read_bytes()
RESP = (FX / "openai_chat_stream.resp").read_bytes()
START = re.compile(rb"GET |POST |PUT |DELETE |PATCH |HEAD |OPTIONS |CONNECT |TRACE |HTTP/1\.[01] ")
BLANK_LINE = re.compile(rb"\n\r?\n")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(marks, marks[1:], strict=False) if b > a]


def run(records: Records) -> tuple[HttpStreams, list[Event]]:
    chain = Chain()
    return chain.http, chain.run(ssl_events(records))


@SETTINGS
@given(st.binary(max_size=600), st.binary(max_size=600), st.lists(st.integers(0, 2000), max_size=6))
def test_random_bytes_never_raise(wr: bytes, rd: bytes, points: list[int]) -> None:
    http, _ = run([("write", c) for c in cut(wr, points)] + [("read", c) for c in cut(rd, points)])
    assert http.stats.records == len(cut(wr, points)) + len(cut(rd, points))


@SETTINGS
@given(st.binary(min_size=1, max_size=400), st.binary(max_size=400), st.lists(st.integers(0, 900), max_size=5))
def test_junk_then_valid_exchange(junk_w: bytes, junk_r: bytes, points: list[int]) -> None:
    # Junk that cannot end a head (no blank line) and holds no start line: it must all be skipped.
    # It ends at a line end: "*" glued to "POST" would be the (legal) method "*POST".
    junk_w, junk_r = junk_w + b"\r\n", junk_r + b"\r\n"
    for junk in (junk_w, junk_r):
        assume(not BLANK_LINE.search(junk) and not START.search(junk))
    records = [("write", c) for c in cut(junk_w + REQ, points)] + [("read", c) for c in cut(junk_r + RESP, points)]
    http, out = run(records)
    calls = [e.data for e in out if e.topic == "llm.call"]
    assert len(calls) == 1 and calls[0]["output_text"] == "Lyon is 18°C and cloudy; checking Nice."
    assert calls[0]["tool_calls"][0]["arguments"] == '{"city":"Nice"}'
    assert http.stats.skipped_bytes >= len(junk_w) + len(junk_r) - 2 * 8
    assert http.stats.malformed >= 1


@SETTINGS
@given(st.data())
def test_mutated_request_head_then_valid_exchange(data: st.DataObject) -> None:
    """A corrupted, cut-short request (capture glitch) followed by a good exchange on the same connection.

    The cut falls at a line end: a partial line glued to the next request line is one
    (possibly valid, e.g. method ``PPOST``) line, which no parser can tell apart.
    """
    line_ends = [m.end() for m in re.finditer(rb"\r\n", REQ[: REQ.index(b"\r\n\r\n")])]
    n = data.draw(st.sampled_from(line_ends))
    bad = bytearray(REQ[:n])
    for _ in range(data.draw(st.integers(0, 8))):
        i = data.draw(st.integers(0, len(bad) - 3))
        bad[i] = data.draw(st.integers(0, 255))  # the final CRLF stays
    bad_b = bytes(bad)
    assume(not BLANK_LINE.search(bad_b))
    points = data.draw(st.lists(st.integers(0, len(REQ) * 2), max_size=4))
    http, out = run([("write", c) for c in cut(bad_b + REQ, points)] + [("read", RESP)])
    calls = [e.data for e in out if e.topic == "llm.call"]
    assert [c["output_text"] for c in calls] == ["Lyon is 18°C and cloudy; checking Nice."]
    # Either the broken head was rejected (counted) or h11 read it as the valid one's prefix and failed.
    assert http.stats.malformed >= 1 or bad_b == REQ[:n]
