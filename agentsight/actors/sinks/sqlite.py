"""Write events into a SQLite recording (:mod:`agentsight.store`), owner-only, WAL.

The batches the runtime hands over between two flushes are one transaction, so a
reader (``report``, ``serve``) sees whole batches while the recording grows, and
the runtime acknowledges them only once committed (the position is the last row id).
"""

from __future__ import annotations

import os
from typing import Any

from agentsight.actor import Option, Sink
from agentsight.event import Event
from agentsight.store import Store

__all__ = ["SqliteSink"]


class SqliteSink(Sink):
    TYPE = "sqlite"
    OPTIONS = {
        "path": Option(str, help="recording file (created 0600; appended to when it exists)"),
        "meta": Option(dict, {}, "key/value pairs stored in the recording's meta table"),
    }

    @classmethod
    def claims(cls, options: dict[str, Any]) -> list[str]:
        return [f"file:{os.path.abspath(options['path'])}"] if isinstance(options.get("path"), str) else []

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.store: Store | None = None

    def open(self) -> None:
        self.store = Store(self.options["path"])
        for key, value in self.options["meta"].items():
            self.store.set_meta(str(key), str(value))

    def write(self, events: list[Event]) -> None:
        assert self.store is not None
        self.store.add(events, commit=False)

    def flush(self) -> None:
        if self.store is not None:
            self.store.db.commit()

    def position(self) -> int:
        return self.store.last_id() if self.store is not None else 0

    def close(self) -> None:
        if self.store is not None:
            self.flush()
            self.store.close()
            self.store = None
