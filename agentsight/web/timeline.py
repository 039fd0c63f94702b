"""The timeline's data: the events of a time window, or their counts when there are too many.

A window holding at most ``MAX_ITEMS`` events comes back event by event (one item
per event, with its one-line label); a larger one comes back as counts per lane
and time bucket (about one bucket per 4 pixels of the page's width), which the
page draws as one density strip per lane, so a page over 50,000 events draws a
few dozen strips instead of 50,000 items, and zooming in brings the events back.
A window too big to send whole is cut to the lanes on screen, which then may be
few enough to come back event by event. :func:`overview` is the minimap: counts per colour family
over the whole recording.

These are aggregate reads over the ``events`` table of the recording
(docs/events.md, "Recordings"), done in SQL because :class:`~agentsight.recording.store.Store` offers
rows, not counts per bucket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentsight.recording.store import Store
from agentsight.web.summary import brief, kind

__all__ = ["TimelineFilter", "MAX_ITEMS", "window", "overview", "lane_key", "ordered_lanes"]

# vis-timeline lays out about two items per millisecond: the most single events one window returns.
MAX_ITEMS = 600
# Lanes of one process, in this order (unknown sources after these).
SOURCE_ORDER = ("process", "sessions", "llm", "mcp", "http", "sse", "ssl", "stdio", "system")
# Most process lifetimes (bars under a process lane) one window returns.
MAX_LIVES = 150
# Topics drawn as a span (request start -> response end) rather than a point.
SPANS = {"llm.call": ("ts_request_start_ns", "ts_end_ns"),
         "http.exchange": ("ts_request_start_ns", "ts_response_end_ns"),
         "mcp.call": ("ts_request_ns", "ts_response_ns")}


def lane_key(pid: int, source: str) -> str:
    return f"{pid}:{source}"


@dataclass
class TimelineFilter:
    """Which rows of the recording's events table the timeline shows: what the page's filter bar
    selects (topic prefixes, pids, sources, a text), as an SQL condition; empty means everything.
    (Not the filter expressions of the filter stages: :class:`agentsight.analysis.filters.Filter`.)"""

    topics: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    text: str = ""

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.topics:
            clauses.append("(" + " OR ".join("substr(topic, 1, ?) = ?" for _ in self.topics) + ")")
            for t in self.topics:
                args += [len(t), t]
        if self.pids:
            clauses.append(f"pid IN ({', '.join('?' * len(self.pids))})")
            args += self.pids
        if self.sources:
            clauses.append(f"source IN ({', '.join('?' * len(self.sources))})")
            args += self.sources
        if self.text:
            clauses.append("(instr(lower(data), ?) > 0 OR instr(lower(topic), ?) > 0 OR instr(lower(comm), ?) > 0)")
            args += [self.text.lower()] * 3
        return (" AND ".join(clauses) or "1"), args


def ordered_lanes(store: Store) -> list[dict[str, Any]]:
    """Every lane with its ``order`` (process tree: parents before children, then by source) and ``depth``."""
    procs = store.processes()
    first_start: dict[int, int] = {}
    parent: dict[int, int] = {}
    for p in procs:
        first_start.setdefault(p["pid"], p["start_ns"] or 0)
        if p["ppid"] is not None and p["pid"] not in parent:
            parent[p["pid"]] = p["ppid"]
    children: dict[int, list[int]] = {}
    roots = []
    for pid in first_start:
        ppid = parent.get(pid)
        if ppid is not None and ppid in first_start and ppid != pid:
            children.setdefault(ppid, []).append(pid)
        else:
            roots.append(pid)
    rank: dict[int, tuple[int, int]] = {}
    stack = [(pid, 0) for pid in sorted(roots, key=lambda x: first_start[x], reverse=True)]
    while stack:
        pid, depth = stack.pop()
        if pid in rank:
            continue
        rank[pid] = (len(rank), depth)
        kids = sorted(children.get(pid, []), key=lambda x: first_start[x], reverse=True)
        stack.extend((k, depth + 1) for k in kids)
    out = store.lanes()
    unknown = len(rank)
    for i, lane in enumerate(out):
        r, depth = rank.get(lane["pid"], (unknown, 0))
        src = SOURCE_ORDER.index(lane["source"]) if lane["source"] in SOURCE_ORDER else len(SOURCE_ORDER)
        lane["key"] = lane_key(lane["pid"], lane["source"])
        lane["depth"] = depth
        lane["order"] = (r * 100 + src) if r < unknown else (unknown * 100 + len(out) + i)
    out.sort(key=lambda lane: lane["order"])
    return out


def _lives(store: Store, start_ns: int, end_ns: int, wanted: set[str] | None) -> list[dict[str, Any]]:
    """Lifetimes of the processes alive in the window (with a lane in ``wanted``, when given)."""
    rows = store.db.execute(
        "SELECT pid, comm, argv, start_ns, end_ns, exit_code, signal, signal_name, duration_ms FROM processes"
        " WHERE start_ns IS NOT NULL AND start_ns <= ? AND coalesce(end_ns, ?) >= ? ORDER BY start_ns",
        (end_ns, end_ns, start_ns))
    out = []
    for r in rows:
        if wanted is not None and lane_key(r[0], "process") not in wanted:
            continue
        argv = json.loads(r[2]) if r[2] else []
        out.append({"pid": r[0], "comm": r[1], "argv": argv, "start_ns": r[3], "end_ns": r[4], "exit_code": r[5],
                    "signal": r[6], "signal_name": r[7], "duration_ms": r[8]})
        if len(out) >= MAX_LIVES:
            break
    return out


def _item(row: dict[str, Any]) -> dict[str, Any]:
    item = brief(row)
    item["lane"] = lane_key(row["pid"], row["source"])
    span = SPANS.get(row["topic"])
    data = row.get("data")
    if span and isinstance(data, dict):
        start, end = data.get(span[0]), data.get(span[1])
        if isinstance(start, int) and isinstance(end, int) and end > start:
            item["start_ns"], item["end_ns"] = start, end
    return item


def window(store: Store, start_ns: int, end_ns: int, width_px: int, filt: TimelineFilter,
           lanes: list[tuple[int, str]] | None = None) -> dict[str, Any]:
    """The events of ``[start_ns, end_ns]`` matching ``filt``: items, or bins when there are too many.

    When the window has too many events and ``lanes`` names the lanes the page shows
    (its vertical viewport), only those come back (``scope: "lanes"``), event by event
    if they are few enough.
    """
    where, args = filt.where()
    where += " AND ts_ns >= ? AND ts_ns <= ?"
    args += [start_ns, end_ns]
    db = store.db
    counts = {lane_key(r[0], r[1]): r[2] for r in db.execute(
        f"SELECT pid, source, count(*) FROM events WHERE {where} GROUP BY pid, source", args)}
    total = sum(counts.values())
    out: dict[str, Any] = {"start_ns": start_ns, "end_ns": end_ns, "count": total, "lane_counts": counts,
                           "scope": "all"}
    wanted: set[str] | None = None
    if total > MAX_ITEMS and lanes:
        # Too many to send whole: only the lanes on screen (the page asks again as it scrolls).
        wanted = {lane_key(pid, source) for pid, source in lanes}
        total = sum(n for k, n in counts.items() if k in wanted)
        where += f" AND (pid, source) IN (VALUES {', '.join('(?, ?)' for _ in lanes)})"
        args += [v for lane in lanes for v in lane]
        out["scope"] = "lanes"
    out["lives"] = _lives(store, start_ns, end_ns, wanted)
    if total <= MAX_ITEMS:
        rows = db.execute(f"SELECT id, ts_ns, topic, source, pid, tid, comm, data FROM events WHERE {where}"
                          " ORDER BY ts_ns, id", args).fetchall()
        items = []
        for r in rows:
            row = dict(r)
            row["data"] = json.loads(row["data"])
            items.append(_item(row))
        out.update(mode="events", items=items)
        return out
    buckets = max(16, min(width_px // 4, 1000))
    bucket_ns = max(1, -(-(end_ns - start_ns + 1) // buckets))
    density: dict[str, list[int]] = {}
    for pid, source, b, n in db.execute(
            f"SELECT pid, source, (ts_ns - ?) / ? AS b, count(*) FROM events WHERE {where} GROUP BY pid, source, b",
            [start_ns, bucket_ns, *args]):
        density.setdefault(lane_key(pid, source), [0] * buckets)[min(int(b), buckets - 1)] += n
    out.update(mode="bins", bucket_ns=bucket_ns, buckets=buckets, bins=density)
    return out


def overview(store: Store, buckets: int, filt: TimelineFilter) -> dict[str, Any]:
    """Event counts per colour family in ``buckets`` equal slices of the whole recording, and per lane."""
    first, last = store.time_range()
    if first is None or last is None:
        return {"start_ns": None, "end_ns": None, "bucket_ns": 0, "buckets": 0, "series": {}, "lane_counts": {}}
    buckets = max(1, min(2000, buckets))
    bucket_ns = max(1, -(-(last - first + 1) // buckets))
    where, args = filt.where()
    series: dict[str, list[int]] = {}
    kinds: dict[str, str] = {}
    for b, topic, n in store.db.execute(
            f"SELECT (ts_ns - ?) / ? AS b, topic, count(*) FROM events WHERE {where} GROUP BY b, topic",
            [first, bucket_ns, *args]):
        k = kinds.get(topic) or kinds.setdefault(topic, kind(topic))
        series.setdefault(k, [0] * buckets)[min(int(b), buckets - 1)] += n
    lanes = {lane_key(pid, source): n for pid, source, n in store.db.execute(
        f"SELECT pid, source, count(*) FROM events WHERE {where} GROUP BY pid, source", args)}
    return {"start_ns": first, "end_ns": last, "bucket_ns": bucket_ns, "buckets": buckets, "series": series,
            "lane_counts": lanes}
