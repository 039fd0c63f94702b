"""The SQLite recording: every event, plus typed tables for what people ask about.

One file, WAL journal, mode 0600 (captured data holds secrets). The schema is
versioned (``meta.schema_version``) and documented in docs/events.md:

- ``events``: every event as recorded; ``data`` is JSON text where bytes are
  ``{"$bytes": ...}`` / ``{"$base64": ...}`` (see :mod:`agentsight.jsonform`), so
  any SQLite tool can read it and :meth:`Store.events` gives the bytes back.
- ``llm_calls``, ``processes``, ``files``, ``connections``, ``samples``,
  ``sessions``: rows derived from the events' topics when they are added.

Writers call :meth:`Store.add` with a batch (one transaction). Readers (the
``report`` command, the web UI, tests) use the query methods, which return plain
JSON-ready dicts. A reader may open the file while a writer appends to it.

Retention (the ``sqlite`` sink's ``max_mb`` / ``max_age_h``): :meth:`Store.trim` deletes
one batch of the oldest events and the derived rows older than every event left, in
one short transaction, then gives the freed pages back (``incremental_vacuum``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentsight.event import Event
from agentsight.jsonform import from_jsonable, to_json

__all__ = ["Store", "StoreError", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
WAL_SIZE_LIMIT = 16 << 20

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, topic TEXT NOT NULL, source TEXT NOT NULL,
    pid INTEGER NOT NULL, tid INTEGER NOT NULL, comm TEXT NOT NULL, session TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts_ns);
CREATE INDEX IF NOT EXISTS events_topic ON events (topic);
CREATE INDEX IF NOT EXISTS events_pid ON events (pid);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL REFERENCES events(id), ts_ns INTEGER NOT NULL,
    pid INTEGER NOT NULL, comm TEXT NOT NULL, session TEXT, provider TEXT, api TEXT, host TEXT, model TEXT,
    status_code INTEGER, stream INTEGER, input_tokens INTEGER, output_tokens INTEGER,
    cache_read_tokens INTEGER, cache_write_tokens INTEGER, reasoning_tokens INTEGER,
    cost_usd REAL, ttft_ms REAL, duration_ms REAL, stop_reason TEXT);
CREATE TABLE IF NOT EXISTS processes (
    id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, ppid INTEGER, comm TEXT, filename TEXT, argv TEXT,
    uid INTEGER, start_ns INTEGER, end_ns INTEGER, exit_code INTEGER, signal INTEGER, signal_name TEXT,
    duration_ms REAL, session TEXT, agent TEXT);
CREATE INDEX IF NOT EXISTS processes_pid ON processes (pid);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, pid INTEGER NOT NULL, comm TEXT, path TEXT NOT NULL,
    flags INTEGER, count INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS connections (
    id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, pid INTEGER NOT NULL, comm TEXT, address TEXT,
    port INTEGER, family TEXT);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, pid INTEGER NOT NULL, cpu_percent REAL,
    rss_bytes INTEGER, threads INTEGER, processes INTEGER);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, agent TEXT, pid INTEGER, start_ns INTEGER, end_ns INTEGER, exit_code INTEGER);
"""

LLM_COLUMNS = ("id", "event_id", "ts_ns", "pid", "comm", "session", "provider", "api", "host", "model",
               "status_code", "stream", "input_tokens", "output_tokens", "cache_read_tokens",
               "cache_write_tokens", "reasoning_tokens", "cost_usd", "ttft_ms", "duration_ms", "stop_reason")
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


class StoreError(RuntimeError):
    """The file is not an agentsight recording, or has a newer schema."""


def _session(data: dict[str, Any]) -> str | None:
    s = data.get("session")
    return s if isinstance(s, str) else None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v if isinstance(v, str) else None


class Store:
    """One recording file. Not thread-safe: use one Store per thread."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                raise StoreError(f"{self.path}: no such recording")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.fchmod(fd, 0o600)
            os.close(fd)
            self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        try:
            if not readonly:
                # Takes effect only on a new, empty file (before its first table): pages freed by
                # retention (:meth:`trim`) can then be given back to the file system. A recording made
                # before keeps auto_vacuum off and reuses its free pages instead.
                self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                # The WAL file is cut back to this after a checkpoint (it otherwise keeps its largest size).
                self.db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise StoreError(f"{self.path}: not an agentsight recording ({exc})") from None
        if not readonly:
            for suffix in ("-wal", "-shm"):
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    os.chmod(side, 0o600)

    def _check_schema(self) -> None:
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if has_meta:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: recording schema {version} is newer than this agentsight "
                                 f"({SCHEMA_VERSION}); upgrade agentsight to read it")
            if version == SCHEMA_VERSION:
                return
        if self.readonly:
            if not has_meta:
                raise StoreError(f"{self.path}: not an agentsight recording (no meta table)")
            return
        with self.db:
            self.db.executescript(SCHEMA)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('created_ns', ?)", (str(time.time_ns()),))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def add(self, events: Iterable[Event], *, commit: bool = True) -> None:
        """Record a batch in one transaction (``commit=False``: in the open one; the caller commits).

        A batch that fails half-way leaves nothing of itself behind either way.
        """
        if commit:
            with self.db:
                self._add(events)
            return
        if not self.db.in_transaction:
            self.db.execute("BEGIN")
        self.db.execute("SAVEPOINT batch")
        try:
            self._add(events)
        except BaseException:
            self.db.execute("ROLLBACK TO batch")
            self.db.execute("RELEASE batch")
            raise
        self.db.execute("RELEASE batch")

    def _add(self, events: Iterable[Event]) -> None:
        cur = self.db.cursor()
        for e in events:
            data = e.data if isinstance(e.data, dict) else {}
            session = _session(data)
            cur.execute(
                "INSERT INTO events (ts_ns, topic, source, pid, tid, comm, session, data) VALUES (?,?,?,?,?,?,?,?)",
                (e.ts_ns, e.topic, e.source, e.pid, e.tid, e.comm, session,
                 to_json(data)))
            derive = _DERIVE.get(e.topic)
            if derive is not None:
                derive(cur, e, data, session, cur.lastrowid or 0)

    # ------------------------------------------------------------------ reading
    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(sql, tuple(args))]

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.db.execute("SELECT key, value FROM meta")}

    def last_id(self) -> int:
        row = self.db.execute("SELECT max(id) FROM events").fetchone()
        return int(row[0] or 0)

    def time_range(self) -> tuple[int | None, int | None]:
        row = self.db.execute("SELECT min(ts_ns), max(ts_ns) FROM events").fetchone()
        return row[0], row[1]

    @staticmethod
    def _where(topics: list[str] | None, pid: int | None, text: str | None, since_ns: int | None = None,
               until_ns: int | None = None, after_id: int = 0) -> tuple[str, list[Any]]:
        clauses: list[str] = ["id > ?"]
        args: list[Any] = [after_id]
        if topics:
            clauses.append("(" + " OR ".join("substr(topic, 1, ?) = ?" for _ in topics) + ")")
            for t in topics:
                args += [len(t), t]
        if pid is not None:
            clauses.append("pid = ?")
            args.append(pid)
        if text:
            clauses.append("(instr(lower(data), ?) > 0 OR instr(lower(topic), ?) > 0 OR instr(lower(comm), ?) > 0)")
            args += [text.lower()] * 3
        if since_ns is not None:
            clauses.append("ts_ns >= ?")
            args.append(since_ns)
        if until_ns is not None:
            clauses.append("ts_ns <= ?")
            args.append(until_ns)
        return " AND ".join(clauses), args

    def events(self, *, after_id: int = 0, limit: int = 1000, topics: list[str] | None = None,
               pid: int | None = None, text: str | None = None, since_ns: int | None = None,
               until_ns: int | None = None, descending: bool = False, raw: bool = False) -> list[dict[str, Any]]:
        """Events in id order; ``data`` as JSON-ready values (``raw=True``: bytes restored)."""
        where, args = self._where(topics, pid, text, since_ns, until_ns, after_id)
        order = "DESC" if descending else "ASC"
        rows = self._rows(f"SELECT * FROM events WHERE {where} ORDER BY id {order} LIMIT ?", [*args, limit])
        for r in rows:
            data = json.loads(r["data"])
            r["data"] = from_jsonable(data) if raw else data
        return rows

    def iter_events(self, *, topics: list[str] | None = None, batch: int = 5000) -> Iterable[Event]:
        """Every event back as :class:`Event` (bytes restored), in recording order."""
        after = 0
        while True:
            rows = self.events(after_id=after, limit=batch, topics=topics, raw=True)
            if not rows:
                return
            for r in rows:
                yield Event(r["topic"], r["ts_ns"], r["source"], r["pid"], r["tid"], r["comm"], r["data"])
            after = rows[-1]["id"]

    def count_events(self, *, topics: list[str] | None = None, pid: int | None = None,
                     text: str | None = None) -> int:
        where, args = self._where(topics, pid, text)
        return int(self.db.execute(f"SELECT count(*) FROM events WHERE {where}", args).fetchone()[0])

    def lanes(self) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT pid, max(comm) AS comm, source, count(*) AS count, min(ts_ns) AS first_ns, max(ts_ns) AS last_ns"
            " FROM events GROUP BY pid, source ORDER BY min(ts_ns)")

    def topic_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute("SELECT topic, count(*) FROM events GROUP BY topic")}

    def llm_calls(self, *, after_id: int = 0, limit: int = 1000, pid: int | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM llm_calls WHERE id > ?", [after_id]
        if pid is not None:
            sql += " AND pid = ?"
            args.append(pid)
        return [_llm_row(r) for r in self._rows(sql + " ORDER BY id LIMIT ?", [*args, limit])]

    def llm_call(self, id: int) -> dict[str, Any] | None:
        """One call's row plus ``data``: the whole ``llm.call`` record."""
        rows = self._rows("SELECT c.*, e.data AS data FROM llm_calls c JOIN events e ON e.id = c.event_id"
                          " WHERE c.id = ?", (id,))
        if not rows:
            return None
        row = _llm_row(rows[0])
        row["data"] = json.loads(row["data"])
        return row

    def processes(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT * FROM processes ORDER BY coalesce(start_ns, end_ns, 0), id")
        for r in rows:
            r["argv"] = json.loads(r["argv"]) if r["argv"] else []
            del r["id"]
        return rows

    def _by_pid(self, table: str, pid: int | None) -> list[dict[str, Any]]:
        if pid is None:
            return self._rows(f"SELECT * FROM {table} ORDER BY ts_ns, id")
        return self._rows(f"SELECT * FROM {table} WHERE pid = ? ORDER BY ts_ns, id", (pid,))

    def files(self, pid: int | None = None) -> list[dict[str, Any]]:
        return self._by_pid("files", pid)

    def connections(self, pid: int | None = None) -> list[dict[str, Any]]:
        return self._by_pid("connections", pid)

    def samples(self, pid: int | None = None) -> list[dict[str, Any]]:
        return self._by_pid("samples", pid)

    def sessions(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM sessions ORDER BY start_ns")

    # ------------------------------------------------------------------ retention
    def used_bytes(self) -> int:
        """Bytes the recording's data takes: its pages less the free ones (a cheap header read)."""
        size, pages, free = (int(self.db.execute(f"PRAGMA {p}").fetchone()[0])
                             for p in ("page_size", "page_count", "freelist_count"))
        return (pages - free) * size

    def file_bytes(self) -> int:
        """Bytes on disk: the file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                pass
        return total

    def trim(self, *, max_bytes: int = 0, before_ns: int | None = None, batch: int = 2000) -> int:
        """Delete one batch of the oldest events, and the rows derived from them; the number deleted.

        Events go when the data is over ``max_bytes`` (the oldest by id, about as many as
        the excess holds, at most ``batch``) or when older than ``before_ns`` (the oldest by
        time, at most ``batch``). The newest event always stays, so ids keep growing (a
        sink's position, a page's cursor). Derived rows go with them: ``llm_calls`` by
        their event, ``files``/``connections``/``samples`` older than every event left,
        ``processes`` and ``sessions`` that ended before it (or never ended and have no
        event left). 0: nothing was over either limit. Commits, then gives freed pages
        back to the file system when the file has ``auto_vacuum=INCREMENTAL``.
        """
        db = self.db
        # Two queries: SQLite answers a lone min() or max() from the index, both at once by a scan.
        lo = db.execute("SELECT min(id) FROM events").fetchone()[0]
        hi = db.execute("SELECT max(id) FROM events").fetchone()[0]
        if lo is None or lo == hi:
            return 0
        ids: list[int] = []
        upto = lo - 1  # the size limit deletes the id range lo..upto
        if max_bytes > 0:
            used = self.used_bytes()
            if used > max_bytes:
                per_event = used / (hi - lo + 1)
                need = int((used - max_bytes) / per_event) + 1
                upto = min(lo + min(need, batch) - 1, hi - 1)
        if before_ns is not None:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM events INDEXED BY events_ts WHERE ts_ns < ? AND id > ? AND id < ?"
                " ORDER BY ts_ns LIMIT ?", (before_ns, upto, hi, batch))]
        if upto < lo and not ids:
            return 0
        with db:
            deleted = db.execute("DELETE FROM events WHERE id <= ?", (upto,)).rowcount if upto >= lo else 0
            deleted += db.executemany("DELETE FROM events WHERE id = ?", ((i,) for i in ids)).rowcount
            top = max(upto, max(ids, default=0))
            db.execute("DELETE FROM llm_calls WHERE event_id <= ?"
                       " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = llm_calls.event_id)", (top,))
            oldest = db.execute("SELECT min(ts_ns) FROM events").fetchone()[0]
            for table in ("files", "connections", "samples"):
                # Rows go in about time order: cut the leading run older than every event left
                # (a row out of order waits for a later pass) without scanning the table.
                row = db.execute(f"SELECT id FROM {table} WHERE ts_ns >= ? ORDER BY id LIMIT 1", (oldest,)).fetchone()
                if row is None:
                    db.execute(f"DELETE FROM {table} WHERE ts_ns < ?", (oldest,))
                else:
                    db.execute(f"DELETE FROM {table} WHERE id < ? AND ts_ns < ?", (row[0], oldest))
            gone = ("coalesce(end_ns, start_ns) < :t AND (end_ns IS NOT NULL"
                    " OR NOT EXISTS (SELECT 1 FROM events e WHERE e.pid = {table}.pid))")
            row = db.execute("SELECT id FROM processes WHERE coalesce(start_ns, end_ns) >= ? ORDER BY id LIMIT 1",
                             (oldest,)).fetchone()
            db.execute(f"DELETE FROM processes WHERE id < :upto AND {gone.format(table='processes')}",
                       {"t": oldest, "upto": row[0] if row else 1 << 62})
            db.execute(f"DELETE FROM sessions WHERE {gone.format(table='sessions')}", {"t": oldest})
        if int(db.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:
            db.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page per step only
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return int(deleted)


# ---------------------------------------------------------------------- derived rows

def _llm_row(r: dict[str, Any]) -> dict[str, Any]:
    r["stream"] = None if r["stream"] is None else bool(r["stream"])
    return r


def _open_process(cur: sqlite3.Cursor, pid: int) -> int | None:
    row = cur.execute("SELECT id FROM processes WHERE pid = ? AND end_ns IS NULL ORDER BY id DESC LIMIT 1",
                      (pid,)).fetchone()
    return int(row[0]) if row else None


def _fork(cur: sqlite3.Cursor, e: Event, d: dict[str, Any], session: str | None, _: int) -> None:
    cur.execute("INSERT INTO processes (pid, ppid, comm, start_ns, session, agent) VALUES (?,?,?,?,?,?)",
                (e.pid, _int(d.get("ppid")), e.comm, e.ts_ns, session, _str(d.get("agent"))))


def _exec(cur: sqlite3.Cursor, e: Event, d: dict[str, Any], session: str | None, _: int) -> None:
    argv = d.get("argv")
    argv_list = [_str(a) or "" for a in argv] if isinstance(argv, list) else []
    row = _open_process(cur, e.pid)
    if row is None:
        cur.execute("INSERT INTO processes (pid, ppid, start_ns) VALUES (?,?,?)",
                    (e.pid, _int(d.get("ppid")), e.ts_ns))
        row = cur.lastrowid
    cur.execute(
        "UPDATE processes SET comm = ?, filename = ?, argv = ?, uid = ?, ppid = coalesce(ppid, ?),"
        " session = coalesce(?, session), agent = coalesce(?, agent) WHERE id = ?",
        (e.comm, _str(d.get("filename")), json.dumps(argv_list), _int(d.get("uid")), _int(d.get("ppid")),
         session, _str(d.get("agent")), row))


def _exit(cur: sqlite3.Cursor, e: Event, d: dict[str, Any], session: str | None, _: int) -> None:
    duration = _num(d.get("duration_ms"))
    row = _open_process(cur, e.pid)
    if row is None:
        start = e.ts_ns - int(duration * 1e6) if duration is not None else None
        cur.execute("INSERT INTO processes (pid, ppid, comm, start_ns, session, agent) VALUES (?,?,?,?,?,?)",
                    (e.pid, _int(d.get("ppid")), e.comm, start, session, _str(d.get("agent"))))
        row = cur.lastrowid
    cur.execute(
        "UPDATE processes SET end_ns = ?, exit_code = ?, signal = ?, signal_name = ?, duration_ms = ?,"
        " comm = coalesce(comm, ?), session = coalesce(session, ?) WHERE id = ?",
        (e.ts_ns, _int(d.get("exit_code")), _int(d.get("signal")), _str(d.get("signal_name")), duration,
         e.comm, session, row))


def _file(cur: sqlite3.Cursor, e: Event, d: dict[str, Any], session: str | None, _: int) -> None:
    cur.execute("INSERT INTO files (ts_ns, pid, comm, path, flags, count) VALUES (?,?,?,?,?,?)",
                (e.ts_ns, e.pid, e.comm, _str(d.get("path")) or "", _int(d.get("flags")),
                 _int(d.get("count")) or 1))


def _connect(cur: sqlite3.Cursor, e: Event, d: dict[str, Any], session: str | None, _: int) -> None:
    cur.execute("INSERT INTO connections (ts_ns, pid, comm, address, port, family) VALUES (?,?,?,?,?,?)",
                (e.ts_ns, e.pid, e.comm, _str(d.get("address")), _int(d.get("port")), _str(d.get("family"))))


def _sample(cur: sqlite3.Cursor, e: Event, d: dict[str, Any], session: str | None, _: int) -> None:
    rss = d.get("rss_bytes", d.get("mem_used_bytes"))
    cur.execute("INSERT INTO samples (ts_ns, pid, cpu_percent, rss_bytes, threads, processes) VALUES (?,?,?,?,?,?)",
                (e.ts_ns, e.pid, _num(d.get("cpu_percent")), _int(rss), _int(d.get("threads")),
                 _int(d.get("processes"))))


def _llm(cur: sqlite3.Cursor, e: Event, d: dict[str, Any], session: str | None, event_id: int) -> None:
    usage: dict[str, Any] = d["usage"] if isinstance(d.get("usage"), dict) else {}
    cost: dict[str, Any] = d["cost"] if isinstance(d.get("cost"), dict) else {}
    stream = d.get("stream")
    cur.execute(
        f"INSERT INTO llm_calls ({', '.join(LLM_COLUMNS[1:])}) VALUES ({', '.join('?' * (len(LLM_COLUMNS) - 1))})",
        (event_id, e.ts_ns, e.pid, e.comm, session, _str(d.get("provider")), _str(d.get("api")),
         _str(d.get("host")), _str(d.get("model")) or _str(d.get("model_requested")), _int(d.get("status_code")),
         None if stream is None else int(bool(stream)), *(_int(usage.get(k)) for k in USAGE_KEYS),
         _num(cost.get("total")), _num(d.get("ttft_ms")), _num(d.get("duration_ms")), _str(d.get("stop_reason"))))


def _session_start(cur: sqlite3.Cursor, e: Event, d: dict[str, Any], session: str | None, _: int) -> None:
    cur.execute("INSERT OR REPLACE INTO sessions (id, agent, pid, start_ns) VALUES (?,?,?,?)",
                (_str(d.get("session")), _str(d.get("agent")), _int(d.get("pid")) or e.pid,
                 _int(d.get("start_ns")) or e.ts_ns))


def _session_end(cur: sqlite3.Cursor, e: Event, d: dict[str, Any], session: str | None, _: int) -> None:
    sid = _str(d.get("session"))
    cur.execute("INSERT OR IGNORE INTO sessions (id, agent, pid, start_ns) VALUES (?,?,?,?)",
                (sid, _str(d.get("agent")), _int(d.get("pid")) or e.pid, _int(d.get("start_ns"))))
    cur.execute("UPDATE sessions SET end_ns = ?, exit_code = ? WHERE id = ?",
                (_int(d.get("end_ns")) or e.ts_ns, _int(d.get("exit_code")), sid))


_DERIVE = {
    "process.fork": _fork,
    "process.exec": _exec,
    "process.exit": _exit,
    "file.open": _file,
    "net.connect": _connect,
    "system.sample": _sample,
    "llm.call": _llm,
    "session.start": _session_start,
    "session.end": _session_end,
}
