"""Sink ``web``: record events and serve the web UI over them, live.

Each batch goes into a recording (:class:`~agentsight.recording.store.Store`: the ``db`` file,
or a private temporary one removed at close), then wakes the open pages, which
show the new events within a second. The HTTP server (:mod:`agentsight.web`) runs
in a background thread of this actor's process, on ``host:port``
(127.0.0.1:7395 by default; port 0 picks a free one, written to the recording's
meta as ``web_url``). It always requires a token: ``token``, else
``$AGENTSIGHT_TOKEN``, else the user's stored one (:func:`agentsight.web.guard.resolve_token`);
the URL with it is printed once at start. A non-loopback ``host`` needs ``token`` set;
the config is refused otherwise.

With ``write = false`` it writes nothing: it serves ``db``, the recording a ``sqlite`` sink
of the same pipeline writes (the always-on collector: one store, one retention), read-only,
and pages update as that sink commits (the file is watched, as ``agentsight serve`` does).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from agentsight.event import Event
from agentsight.pipeline.component import Capabilities, FatalStartError, Option, OptionError, Sink, fatal_on
from agentsight.web import DEFAULT_HOST, DEFAULT_PORT

__all__ = ["WebSink"]


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"{value} is not a TCP port (0-65535)"


class WebSink(Sink):
    TYPE = "web"
    CAPS = Capabilities(check_options=True, claims=True)
    OPTIONS = {
        "host": Option(str, DEFAULT_HOST, "address to listen on; a non-loopback one needs a token"),
        "port": Option(int, DEFAULT_PORT, "TCP port to listen on", check=_port),
        "token": Option(str, "", "secret the page and API require (Authorization: Bearer, or ?token= once); "
                                 "empty: $AGENTSIGHT_TOKEN, else the stored ~/.config/agentsight/web-token"),
        "db": Option(str, "", "recording file to write and serve (empty: a private temporary file, "
                              "removed at stop)"),
        "write": Option(bool, True, "false: only serve db, which a sqlite sink of the pipeline writes "
                                    "(one store; its retention applies)"),
        "show_token": Option(bool, True, "print the URL with the token in it at start (false: without it, "
                                         "for a service whose output goes to a shared log)"),
    }

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        from agentsight.web.guard import check_binding

        problem = check_binding(str(options.get("host", DEFAULT_HOST)), str(options.get("token", "")))
        problems = [problem] if problem else []
        if options.get("write") is False and not options.get("db"):
            problems.append("write = false needs db: the recording another sink writes")
        return problems

    @classmethod
    def claims(cls, options: dict[str, Any]) -> list[str]:
        host, port = options.get("host", DEFAULT_HOST), options.get("port", DEFAULT_PORT)
        out = [f"tcp://{host}:{port}"] if port else []
        if isinstance(options.get("db"), str) and options["db"] and options.get("write") is not False:
            out.append(f"file:{os.path.abspath(options['db'])}")  # read-only, it is the writer's to claim
        return out

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        problems = self.check_options(self.options)
        if problems:
            raise OptionError(problems[0])
        self._store: Any = None
        self._thread: Any = None
        self._private: Path | None = None

    @property
    def url(self) -> str:
        return self._thread.server.url if self._thread is not None else ""

    def open(self) -> None:
        from agentsight.recording.store import Store
        from agentsight.web.serve import ServeError, ServerThread
        from agentsight.web.server import WebServer, private_db_path

        o = self.options
        if o["db"]:
            path = Path(o["db"])
        else:
            path = self._private = private_db_path()
        with fatal_on(PermissionError, FileNotFoundError):
            if o["write"]:
                self._store = Store(path)
            else:
                Store(path).close()  # made (0600, schema) if the writer has not yet: readers need the tables
        from agentsight.web.guard import TokenError, resolve_token

        try:
            token = resolve_token(o["token"])
        except TokenError as exc:
            raise FatalStartError(str(exc)) from None
        server = WebServer(path, host=o["host"], port=o["port"], token=token, watch=not o["write"])
        self._thread = ServerThread(server)
        try:
            self._thread.start()
        except ServeError as exc:
            self.close()
            raise FatalStartError(str(exc)) from None  # retrying cannot free the port
        # Where the page is (port 0 picks a free port): in the recording, and said once.
        if self._store is not None:
            self._store.set_meta("web_url", self.url)
        query = f"?token={token}" if o["show_token"] else " (token required)"
        print(f"agentsight[sinks/{self.name}]: web UI on {self.url}timeline{query}", file=sys.stderr, flush=True)

    def write(self, events: list[Event]) -> None:
        if self._store is not None:  # None: serving what another sink writes
            self._store.add(events, commit=False)
        self.count("events", len(events))

    def flush(self) -> None:
        if self._store is not None:
            self._store.db.commit()
            self._thread.notify()

    def position(self) -> int:
        return self._store.last_id() if self._store is not None else 0

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self._store is not None:
            self._store.db.commit()
            self._store.close()
            self._store = None
        if self._private is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self._private}{suffix}")
            self._private = None
