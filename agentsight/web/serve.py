"""Running the web server: in a background thread (the ``web`` sink), or in the foreground (``agentsight serve``).

:class:`ServerThread` owns an asyncio loop in a daemon thread; ``start`` returns
once the port is bound (or raises the bind error), ``stop`` closes the streams
and joins. :func:`serve` is the ``agentsight serve --db FILE`` command: it reads a
recording read-only and watches it for rows another process appends, so a page
on a recording that is still being written updates live too.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path

from agentsight.web.guard import TokenError, check_binding, resolve_token
from agentsight.web.server import WebServer

__all__ = ["ServerThread", "serve", "ServeError"]


class ServeError(RuntimeError):
    """An expected reason not to serve (bad binding, missing file, port taken): one line for the user."""


def bind_error(server: WebServer, exc: OSError) -> ServeError:
    why = exc.strerror or str(exc)
    return ServeError(f"cannot listen on {server.host}:{server.port}: {why} "
                      "(another server there? choose another port)")


class ServerThread:
    """A :class:`WebServer` on its own event loop in a daemon thread."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="agentsight-web", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._started.set()
            await self.server.stop()
            return
        self._started.set()
        await self._stop.wait()
        await self.server.stop()

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._started.wait(timeout):
            raise ServeError(f"the web server did not start within {timeout:.0f}s")
        if isinstance(self._error, OSError):
            raise bind_error(self.server, self._error)
        if self._error is not None:
            raise self._error

    def notify(self) -> None:
        self.server.hub.notify()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)


def serve(db: Path, host: str, port: int, token: str) -> None:
    """Serve a recording until Ctrl-C. Raises ServeError for the user's mistakes."""
    from agentsight.recording.store import Store, StoreError

    problem = check_binding(host, token)
    if problem:
        raise ServeError(problem)
    try:
        token = resolve_token(token)
    except TokenError as exc:
        raise ServeError(str(exc)) from None
    if not db.is_file():
        raise ServeError(f"no such recording: {db} (make one with `agentsight record` or a web/sqlite sink)")
    try:
        Store(db, readonly=True).close()
    except StoreError as exc:
        raise ServeError(str(exc)) from None
    server = WebServer(db, host=host, port=port, token=token, watch=True)

    async def main() -> None:
        try:
            await server.start()
        except OSError as exc:
            await server.stop()
            raise bind_error(server, exc) from None
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        url = server.url + f"timeline?token={token}"
        print(f"agentsight: serving {db} on {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        await done.wait()
        await server.stop()

    asyncio.run(main())
