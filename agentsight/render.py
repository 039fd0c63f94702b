"""Events for people: one readable line each, coloured on a terminal."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from agentsight.event import Event

__all__ = ["pretty", "summarize_value", "table"]

_COLORS = {"ssl": "36", "http": "34", "llm": "35", "process": "32", "file": "33", "net": "33",
           "stdio": "37", "system": "90", "gen": "37"}


def summarize_value(value: Any, limit: int = 120) -> str:
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        return (text[:limit] + f"…(+{len(value) - limit}B)") if len(text) > limit else text
    text = str(value)
    return text[:limit] + "…" if len(text) > limit else text


def pretty(event: Event, color: bool = False, width: int = 160) -> str:
    ts = _dt.datetime.fromtimestamp(event.ts_ns / 1e9).strftime("%H:%M:%S.%f")[:-3]
    topic = event.topic
    if color:
        code = _COLORS.get(topic.split(".", 1)[0], "0")
        topic = f"\x1b[{code}m{topic}\x1b[0m"
    who = f"{event.comm}[{event.pid}]" if event.pid else event.source
    fields = " ".join(f"{k}={summarize_value(v, 80)}" for k, v in event.data.items())
    line = f"{ts} {topic} {who} {fields}"
    return line if len(line) <= width else line[: width - 1] + "…"


def table(headers: list[str], rows: list[list[str]], indent: int = 0, left: set[int] | None = None) -> str:
    """Columns padded to their widest cell; column 0 and ``left`` ones left-aligned, the rest right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lefts = {0} | (left or set())
    pad = " " * indent

    def line(cells: list[str]) -> str:
        parts = [str(c).ljust(w) if i in lefts else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=False))]
        return pad + "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])
