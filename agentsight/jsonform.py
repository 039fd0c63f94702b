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

from agentsight.event import Event

__all__ = ["to_jsonable", "from_jsonable", "event_to_json", "event_from_json"]


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


def event_to_json(event: Event) -> str:
    d = event.to_dict()
    d["data"] = to_jsonable(event.data)
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def event_from_json(line: str) -> Event:
    """Parse one jsonl line; raises ValueError (json errors included) on bad input."""
    d = json.loads(line)
    if not isinstance(d, dict) or "topic" not in d or "ts_ns" not in d:
        raise ValueError("not an agentsight event (needs topic and ts_ns)")
    d["data"] = from_jsonable(d.get("data") or {})
    return Event.from_dict(d)
