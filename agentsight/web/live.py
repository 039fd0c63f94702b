"""Wakes the open pages' event streams when new rows are in the recording.

The writer (the ``web`` sink's main thread) calls :meth:`Hub.notify` from its own
thread after each batch; ``agentsight serve``, which has no writer in process,
polls the file's last id instead (:meth:`Hub.watch`). Each stream handler takes
:meth:`Hub.waiter` *before* it reads, so a batch landing between its read and its
wait still wakes it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

__all__ = ["Hub"]


class Hub:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._pending = threading.Lock()
        self._scheduled = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the server's loop (called on that loop)."""
        self._loop = loop
        self._event = asyncio.Event()

    def waiter(self) -> asyncio.Event:
        assert self._event is not None, "Hub.bind first"
        return self._event

    def _fire(self) -> None:
        with self._pending:
            self._scheduled = False
        if self._event is not None:
            event, self._event = self._event, asyncio.Event()
            event.set()

    def notify(self) -> None:
        """New rows are in: wake every stream. Safe from any thread; bursts coalesce."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._pending:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._fire)
        except RuntimeError:  # the loop closed meanwhile
            pass

    async def watch(self, last_id: Callable[[], Awaitable[int]], interval: float = 0.2) -> None:
        """Notify whenever ``last_id()`` grows (a recording another process appends to)."""
        seen = await last_id()
        while True:
            await asyncio.sleep(interval)
            now = await last_id()
            if now != seen:
                seen = now
                self._fire()
