"""The HTTP app: the JSON API (docs/web.md), the event stream (SSE) and the page.

Every read goes to the recording through a read-only :class:`~agentsight.recording.store.Store`
per worker thread (SQLite connections stay in their thread; WAL lets them read
while the writer appends), run off the event loop so one slow query never stalls
the live stream. :mod:`agentsight.web.guard` checks every request first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from agentsight import __version__
from agentsight.recording.report import tls_unseen
from agentsight.recording.store import SCHEMA_VERSION, Store
from agentsight.web.guard import SECURITY_HEADERS, guard_middleware, is_loopback
from agentsight.web.live import Hub
from agentsight.web.mcpcalls import mcp_view
from agentsight.web.summary import brief
from agentsight.web.timeline import TimelineFilter, ordered_lanes, overview, window

__all__ = ["WebServer", "STATIC", "PAGES"]

STATIC = Path(__file__).resolve().parent / "static"
# Paths that answer with the page; the page's own router shows the view.
PAGES = ("/timeline", "/processes", "/llm", "/log")
# Most events one stream message carries; a larger backlog is sent in several.
PUSH_LIMIT = 1000
# A stream further behind than this is told to reload instead of replaying the gap.
RESET_BACKLOG = 20_000

T = TypeVar("T")
_dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"), default=str)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.json_response(obj, status=status, dumps=_dumps)


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_dumps({"error": message}), content_type="application/json")


def _int(request: web.Request, name: str, default: int | None, lo: int | None = None,
         hi: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be an integer, got {raw!r}") from None
    if lo is not None and value < lo:
        value = lo
    if hi is not None and value > hi:
        value = hi
    return value


def _list(request: web.Request, name: str) -> list[str]:
    return [p for p in request.query.get(name, "").split(",") if p]


def _filter(request: web.Request) -> TimelineFilter:
    try:
        pids = [int(p) for p in _list(request, "pids")]
    except ValueError:
        raise _bad("pids must be integers separated by commas") from None
    return TimelineFilter(topics=_list(request, "topics"), pids=pids, sources=_list(request, "sources"),
                  text=request.query.get("text", "").strip())


class WebServer:
    """The app over one recording file; ``start``/``stop`` run on the caller's event loop."""

    def __init__(self, db: str | Path, *, host: str, port: int, token: str, watch: bool = False,
                 live: bool = True) -> None:
        self.db = Path(db)
        if not token:
            raise ValueError("the web UI needs a token (see agentsight.web.guard.resolve_token)")
        self.host, self.port, self.token = host, port, token
        self.watch = watch
        self.live = live
        self.hub = Hub()
        self._local = threading.local()
        self._stores: list[Store] = []
        self._stores_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="agentsight-web")
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ reads
    def _store(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.db, readonly=True)
            self._local.store = store
            with self._stores_lock:
                self._stores.append(store)
        return store

    async def read(self, fn: Callable[[Store], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._store()))

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(middlewares=[guard_middleware(self.token, check_host=is_loopback(self.host))],
                              client_max_size=64 * 1024)
        r = app.router
        r.add_get("/", self.root)
        for path in PAGES:
            r.add_get(path, self.page)
            r.add_get(path + "/{rest:.*}", self.page)
        r.add_get("/api/info", self.info)
        r.add_get("/api/lanes", self.lanes)
        r.add_get("/api/timeline", self.timeline)
        r.add_get("/api/overview", self.overview)
        r.add_get("/api/events", self.events)
        r.add_get("/api/events/{id:\\d+}", self.event)
        r.add_get("/api/processes", self.processes)
        r.add_get("/api/processes/{pid:\\d+}", self.process)
        r.add_get("/api/llm/calls", self.llm_calls)
        r.add_get("/api/llm/calls/{id:\\d+}", self.llm_call)
        r.add_get("/api/sessions", self.sessions)
        r.add_get("/api/mcp/calls", self.mcp_calls)
        r.add_get("/api/stream", self.stream)
        r.add_static("/static", STATIC, append_version=False)
        return app

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/timeline")

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def info(self, request: web.Request) -> web.Response:
        def q(s: Store) -> dict[str, Any]:
            first, last = s.time_range()
            db = s.db
            return {
                "version": __version__, "schema_version": SCHEMA_VERSION, "file": self.db.name,
                "meta": s.meta(), "last_id": s.last_id(), "start_ns": first, "end_ns": last,
                "live": self.live,
                "counts": {
                    "events": db.execute("SELECT count(*) FROM events").fetchone()[0],
                    "llm_calls": db.execute("SELECT count(*) FROM llm_calls").fetchone()[0],
                    "mcp_calls": db.execute("SELECT count(*) FROM events WHERE topic = 'mcp.call'").fetchone()[0],
                    "processes": db.execute("SELECT count(*) FROM processes").fetchone()[0],
                },
                "topics": s.topic_counts(),
                "tls_unseen": tls_unseen(s),
            }
        return _json(await self.read(q))

    async def lanes(self, request: web.Request) -> web.Response:
        return _json({"lanes": await self.read(ordered_lanes)})

    async def timeline(self, request: web.Request) -> web.Response:
        start = _int(request, "start_ns", None)
        end = _int(request, "end_ns", None)
        width = _int(request, "width", 1200, 100, 10_000) or 1200
        filt = _filter(request)
        lanes: list[tuple[int, str]] = []
        for key in _list(request, "lanes")[:500]:
            pid, _, source = key.partition(":")
            if not pid.isdigit() or not source:
                raise _bad(f"lanes must be <pid>:<source> separated by commas, got {key!r}")
            lanes.append((int(pid), source))

        def q(s: Store) -> dict[str, Any]:
            first, last = s.time_range()
            lo = start if start is not None else (first or 0)
            hi = end if end is not None else (last or 0)
            if hi < lo:
                raise _bad("end_ns is before start_ns")
            return window(s, lo, hi, width, filt, lanes or None)
        return _json(await self.read(q))

    async def overview(self, request: web.Request) -> web.Response:
        buckets = _int(request, "buckets", 300, 1, 2000) or 300
        filt = _filter(request)
        return _json(await self.read(lambda s: overview(s, buckets, filt)))

    async def events(self, request: web.Request) -> web.Response:
        after = _int(request, "after_id", 0, 0) or 0
        limit = _int(request, "limit", 200, 1, 5000) or 200
        topics = _list(request, "topics") or None
        pid = _int(request, "pid", None)
        text = request.query.get("text", "").strip() or None
        since = _int(request, "since_ns", None)
        until = _int(request, "until_ns", None)
        want_total = request.query.get("total", "") in ("1", "true")
        fmt = request.query.get("format", "full")

        def q(s: Store) -> dict[str, Any]:
            rows = s.events(after_id=after, limit=limit + 1, topics=topics, pid=pid, text=text,
                            since_ns=since, until_ns=until)
            more = len(rows) > limit
            rows = rows[:limit]
            out: dict[str, Any] = {"events": [brief(r) | {"data": r["data"]} if fmt == "full" else brief(r)
                                              for r in rows],
                                   "more": more, "last_id": s.last_id()}
            if want_total:
                out["total"] = s.count_events(topics=topics, pid=pid, text=text)
            return out
        return _json(await self.read(q))

    async def event(self, request: web.Request) -> web.Response:
        eid = int(request.match_info["id"])

        def q(s: Store) -> dict[str, Any] | None:
            rows = s.events(after_id=eid - 1, limit=1)
            return brief(rows[0]) | {"data": rows[0]["data"], "session": rows[0]["session"]} \
                if rows and rows[0]["id"] == eid else None
        row = await self.read(q)
        if row is None:
            return _json({"error": f"no event {eid}"}, 404)
        return _json(row)

    async def processes(self, request: web.Request) -> web.Response:
        return _json(await self.read(process_tree_rows))

    async def process(self, request: web.Request) -> web.Response:
        pid = int(request.match_info["pid"])
        start = _int(request, "start_ns", None)

        def q(s: Store) -> dict[str, Any]:
            procs = s.processes()
            runs = sorted((p for p in procs if p["pid"] == pid), key=lambda p: p["start_ns"] or 0)
            lo, hi = _run_span(runs, start)

            def within(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [r for r in rows if lo <= r["ts_ns"] < hi]
            return {"pid": pid, "runs": runs,
                    "children": [p for p in procs if p["ppid"] == pid and lo <= (p["start_ns"] or lo) < hi],
                    "llm_calls": within(s.llm_calls(pid=pid, limit=100_000)), "files": within(s.files(pid)),
                    "connections": within(s.connections(pid)), "samples": within(s.samples(pid))}
        return _json(await self.read(q))

    async def llm_calls(self, request: web.Request) -> web.Response:
        after = _int(request, "after_id", 0, 0) or 0
        limit = _int(request, "limit", 1000, 1, 10_000) or 1000
        pid = _int(request, "pid", None)
        return _json({"calls": await self.read(lambda s: s.llm_calls(after_id=after, limit=limit, pid=pid))})

    async def llm_call(self, request: web.Request) -> web.Response:
        cid = int(request.match_info["id"])
        row = await self.read(lambda s: s.llm_call(cid))
        if row is None:
            return _json({"error": f"no LLM call {cid}"}, 404)
        return _json(row)

    async def mcp_calls(self, request: web.Request) -> web.Response:
        pid = _int(request, "pid", None)
        return _json(await self.read(lambda s: mcp_view(s, pid)))

    async def sessions(self, request: web.Request) -> web.Response:
        return _json({"sessions": await self.read(lambda s: s.sessions())})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``hello`` once, then ``events`` (one-line rows) as they are recorded."""
        after = _int(request, "after", None, 0)
        if after is None:
            last_event = request.headers.get("Last-Event-ID", "")
            after = int(last_event) if last_event.isdigit() else await self.read(lambda s: s.last_id())
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no", **SECURITY_HEADERS})
        await resp.prepare(request)
        await resp.write(f"retry: 1000\nevent: hello\ndata: {_dumps({'last_id': after})}\n\n".encode())
        cursor = after
        try:
            while True:
                waiter = self.hub.waiter()
                last = await self.read(lambda s: s.last_id())
                if last - cursor > RESET_BACKLOG:
                    cursor = last
                    await resp.write(f"id: {cursor}\nevent: reset\ndata: {_dumps({'last_id': cursor})}\n\n".encode())
                    continue
                read_after = functools.partial(Store.events, after_id=cursor, limit=PUSH_LIMIT)
                rows = await self.read(read_after) if last > cursor else []
                if rows:
                    cursor = rows[-1]["id"]
                    body = _dumps({"events": [brief(r) for r in rows], "last_id": last})
                    await resp.write(f"id: {cursor}\nevent: events\ndata: {body}\n\n".encode())
                    continue
                try:
                    await asyncio.wait_for(waiter.wait(), timeout=15)
                except TimeoutError:
                    await resp.write(b": ping\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        self.hub.bind(asyncio.get_running_loop())
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:  # an ephemeral port (tests): learn which
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                self.port = server.sockets[0].getsockname()[1]
        if self.watch:
            self._watcher = asyncio.create_task(self.hub.watch(lambda: self.read(lambda s: s.last_id())))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._stores_lock:
            for s in self._stores:
                with contextlib.suppress(Exception):
                    s.close()
            self._stores.clear()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def _run_span(runs: list[dict[str, Any]], start_ns: int | None) -> tuple[int, int]:
    """The time span owned by the run of a pid that started at ``start_ns``: until the next run of that pid.

    With no ``start_ns`` (or no such run) the pid's whole history is meant.
    """
    big = 1 << 63
    starts = [r["start_ns"] for r in runs]
    if start_ns is None or start_ns not in starts or len(runs) < 2:
        return -big, big
    i = starts.index(start_ns)
    lo = -big if i == 0 else start_ns
    hi = big if i + 1 == len(runs) else (runs[i + 1]["start_ns"] or big)
    return lo, hi


def process_tree_rows(s: Store) -> dict[str, Any]:
    """Every process (one row per run of a pid) with its own counts of LLM calls, files, connections, events.

    A pid reused by several processes splits its rows by time: each run owns what
    happened from its start until the next run of that pid started.
    """
    import bisect

    db = s.db
    procs = s.processes()
    known = {p["pid"] for p in procs}
    # Processes seen only through other events (no exec/fork/exit captured) still get a node.
    for pid, comm, first in db.execute(
            "SELECT pid, max(comm), min(ts_ns) FROM events WHERE pid != 0 GROUP BY pid"):
        if pid not in known:
            procs.append({"pid": pid, "ppid": None, "comm": comm, "filename": None, "argv": [], "uid": None,
                          "start_ns": first, "end_ns": None, "exit_code": None, "signal": None, "signal_name": None,
                          "duration_ms": None, "session": None, "agent": None, "seen_only": True})
    runs: dict[int, list[dict[str, Any]]] = {}
    for p in procs:
        p["counts"] = {}
        p["tokens"] = {"input": 0, "output": 0, "cost_usd": 0.0}
        runs.setdefault(p["pid"], []).append(p)
    starts: dict[int, list[int]] = {}
    for pid, rs in runs.items():
        rs.sort(key=lambda p: p["start_ns"] or 0)
        starts[pid] = [p["start_ns"] or 0 for p in rs]

    def owner(pid: int, ts: int) -> dict[str, Any] | None:
        rs = runs.get(pid)
        if not rs:
            return None
        return rs[max(0, bisect.bisect_right(starts[pid], ts) - 1)]

    for table, key in (("files", "files"), ("connections", "connections"), ("events", "events")):
        for pid, ts in db.execute(f"SELECT pid, ts_ns FROM {table}"):
            run = owner(pid, ts)
            if run is not None:
                run["counts"][key] = run["counts"].get(key, 0) + 1
    for pid, ts, i, o, c in db.execute("SELECT pid, ts_ns, input_tokens, output_tokens, cost_usd FROM llm_calls"):
        run = owner(pid, ts)
        if run is not None:
            run["counts"]["llm_calls"] = run["counts"].get("llm_calls", 0) + 1
            t = run["tokens"]
            t["input"] += i or 0
            t["output"] += o or 0
            t["cost_usd"] += c or 0.0
    return {"processes": procs, "sessions": s.sessions()}


def private_db_path() -> Path:
    """A fresh owner-only temporary file for a recording nobody asked to keep."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix="agentsight-web-", suffix=".db")
    os.close(fd)
    os.unlink(name)
    return Path(name)
