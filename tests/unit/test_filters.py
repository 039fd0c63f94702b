"""The filter language: the seed's examples, operators, precedence, and positioned errors."""

from __future__ import annotations

import pytest

from agentsight.analysis.filters import FilterError, compile_filter
from agentsight.event import Event

GET_HEALTH = Event("http.request", 1, "http", 5, 5, "node", {"method": "GET", "path": "/health/live", "host": "a"})
POST_RGSTR = Event("http.exchange", 1, "http", 5, 5, "node", {
    "request": {"method": "POST", "path": "/v1/rgstr", "target": "/v1/rgstr?x=1"},
    "response": {"status_code": 202, "content_type": "application/json"}})
RESP_500 = Event("http.response", 1, "http", 6, 6, "python3", {"status_code": 500, "body_text": "oops"})
SSL_BIN = Event("ssl.data", 1, "ssl", 7, 7, "node", {"bytes": b"\x16\x03\x01\xff\xfe\x00" * 400, "len": 2400,
                                                      "func": "SSL_read", "dir": "read"})
SSL_TEXT = Event("ssl.data", 1, "ssl", 8, 8, "curl", {"bytes": b"GET / HTTP/1.1\r\n", "len": 16,
                                                       "func": "SSL_write_ex", "dir": "write"})
ALL = [GET_HEALTH, POST_RGSTR, RESP_500, SSL_BIN, SSL_TEXT]


def hits(expr: str) -> list[int]:
    f = compile_filter(expr)
    return [i for i, e in enumerate(ALL) if f.matches(e)]


@pytest.mark.parametrize("expr,expected", [
    ("GET /health", [0]),
    ("GET", [0]),
    ("POST /api", []),
    ("POST /v1", [1]),
    ("request.path_prefix=/v1/rgstr | response.status_code=202", [1]),
    ("response.status_code>=500", [2]),
    ("response.status_code!=202", [2]),
    ("data.type=binary", [3]),
    ("data.type=text", [4]),
    ("len>1000 & comm~node", [3]),
    ("len>1000 & comm~NODE", [3]),
    ("comm~node & !(data.type=binary)", [0, 1]),
    ("!comm~node", [2, 4]),
    ("pid=5 | pid=8", [0, 1, 4]),
    ("pid = 5 & topic=http.request", [0]),
    ("func~/^SSL_(read|write)_ex$/", [4]),
    ("func!~/_ex$/ & topic=ssl.data", [3]),
    ('body_text="oops"', [2]),
    ("missing.field!=3", []),
    ("SSL_read", [3]),
    ("(pid<6 | pid>7) & !GET", [1, 4]),
    ("pid>=5 & pid<=6 & comm~py | len=16", [2, 4]),
])
def test_expressions(expr: str, expected: list[int]) -> None:
    assert hits(expr) == expected


def test_and_binds_tighter_than_or() -> None:
    assert hits("pid=8 | pid=5 & comm=python3") == [4]
    assert hits("(pid=8 | pid=5) & comm~node") == [0, 1]


def test_dict_events_work_too() -> None:
    assert compile_filter("comm=x & data.len>1").matches({"topic": "ssl.data", "comm": "x", "data": {"len": 2}})


@pytest.mark.parametrize("expr,pos", [
    ("", 0),
    ("pid=", 4),
    ("pid>abc", 4),
    ("(pid=1", 6),
    ("pid=1 )", 6),
    ("pid=1 & ", 8),
    ("& pid=1", 0),
    ('comm="node', 5),
    ("func~/(unclosed/", 6),
    ("request.path_prefix~x", 0),
    ("pid=1 pid=2", 6),
])
def test_errors_carry_a_position(expr: str, pos: int) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(expr)
    assert info.value.position == pos, info.value.pointer()
    assert info.value.pointer().splitlines()[1].index("^") == pos
