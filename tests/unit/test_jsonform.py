"""Events as JSON text (recordings, jsonl files, tap --json): every value written, read back the same."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from agentsight.event import Event
from agentsight.jsonform import event_from_json, event_to_json, from_jsonable, to_json, to_jsonable

# What msgpack carries between actors, so what an event's data can hold.
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _slow(value: object) -> str:
    """The way before orjson, kept as the fallback: the reference."""
    return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"), default=str)


@given(_VALUES)
@settings(max_examples=300, deadline=None)
def test_any_event_data_reads_back_as_it_was_written(value: object) -> None:
    text = to_json({"v": value})
    assert json.loads(text) == json.loads(_slow({"v": value}))
    assert from_jsonable(json.loads(text)) == {"v": value}


def test_bytes_are_text_when_utf8_and_base64_otherwise() -> None:
    data = {"utf8": "héllo".encode(), "binary": b"\xff\x00\xfe", "view": bytearray(b"ab"), "t": (1, b"x")}
    assert json.loads(to_json(data)) == {"utf8": {"$bytes": "héllo"}, "binary": {"$base64": "/wD+"},
                                         "view": {"$bytes": "ab"}, "t": [1, {"$bytes": "x"}]}


def test_what_orjson_refuses_is_still_written() -> None:
    big = 1 << 70  # past 64 bits
    assert json.loads(to_json({"n": big})) == {"n": big}
    lone = "cut inside an emoji \ud83d"
    assert to_json({"s": lone}) == _slow({"s": lone})
    deep: object = "bottom"
    for _ in range(300):  # past orjson's 254 levels
        deep = [deep]
    assert json.loads(to_json(deep)) == json.loads(_slow(deep))
    assert json.loads(to_json({(1, 2): "tuple key", 3: "int key"})) == {"(1, 2)": "tuple key", "3": "int key"}


def test_odd_values_do_not_stop_a_recording() -> None:
    """A float that is not a number is null, as strict JSON readers (a browser) need; an object
    that is no JSON value at all is its text."""
    text = to_json({"nan": math.nan, "inf": -math.inf, "obj": object})
    assert json.loads(text)["nan"] is None and json.loads(text)["inf"] is None
    assert "NaN" not in text and "Infinity" not in text and "class" in json.loads(text)["obj"]


def test_an_event_goes_to_a_jsonl_line_and_back() -> None:
    e = Event("ssl.data", 1_764_435_000_000_000_000, "ssl", 7, 8, "claude",
              {"conn": "7:1", "bytes": b"\x16\x03\x01", "text": "ok", "n": [1, 2.5, None]})
    line = event_to_json(e)
    assert "\n" not in line
    assert event_from_json(line) == e
