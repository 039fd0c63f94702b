"""Events as JSON (jsonl files, `tap --json`, the web API), reversibly.

JSON has no bytes, so a ``bytes`` value becomes ``{"$bytes": "<text>"}`` when it is
valid UTF-8 (readable with jq) and ``{"$base64": "<b64>"}`` otherwise.
:func:`from_jsonable` turns both back into ``bytes``, so a jsonl capture replays
byte for byte.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson

from agentsight.event import Event

__all__ = ["to_jsonable", "from_jsonable", "to_json", "event_to_json", "event_from_json"]


def to_jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return {"$bytes": value.decode("utf-8")}
        except UnicodeDecodeError:
            return {"$base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            if "$bytes" in value and isinstance(value["$bytes"], str):
                return value["$bytes"].encode("utf-8")
            if "$base64" in value and isinstance(value["$base64"], str):
                return base64.b64decode(value["$base64"])
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


def _orjson_default(value: Any) -> Any:
    """What orjson does not write itself: bytes as :func:`to_jsonable` writes them, anything else
    as its ``str``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return to_jsonable(bytes(value))
    return str(value)


def to_json(value: Any) -> str:
    """``value`` as compact JSON text, bytes in the reversible form above (what the recording and
    jsonl files hold). orjson writes it in one pass (a tenth of the time of :func:`to_jsonable`
    then ``json.dumps``: every event of a recording goes through here); what orjson refuses
    (integers past 64 bits, a lone surrogate, nesting past 254 levels, keys other than text and
    numbers) takes that slower way."""
    try:
        return orjson.dumps(value, default=_orjson_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"), default=str)


def event_to_json(event: Event) -> str:
    return to_json(event.to_dict())


def event_from_json(line: str) -> Event:
    """Parse one jsonl line; raises ValueError (json errors included) on bad input."""
    d = json.loads(line)
    if not isinstance(d, dict) or "topic" not in d or "ts_ns" not in d:
        raise ValueError("not an agentsight event (needs topic and ts_ns)")
    d["data"] = from_jsonable(d.get("data") or {})
    return Event.from_dict(d)
