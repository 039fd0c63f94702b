"""Write events into a SQLite recording (:mod:`agentsight.recording.store`), owner-only, WAL.

The batches the runtime hands over between two flushes are one transaction, so a
reader (``report``, ``serve``) sees whole batches while the recording grows, and
the runtime acknowledges them only once committed (the position is the last row id).

Retention (``max_mb``, ``max_age_h``) runs after a commit, every ``retention_interval``
seconds (and at start): while the data is over the cap (then down to 90% of it, so it
does not run at every flush) or holds events older than the age, the oldest events go
in batches with their derived rows (:meth:`~agentsight.recording.store.Store.trim`), each flush
spending at most ~0.1 s on it. The count is the stat ``retention_deleted``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from agentsight.event import Event
from agentsight.pipeline.component import Capabilities, Option, Sink, fatal_on
from agentsight.recording.store import Store

__all__ = ["SqliteSink"]

# Trimming stops at this share of max_mb once started, so it does not run at every flush.
LOW_WATER = 0.9
# Longest a flush spends trimming; what is left waits for the next flush (0.2 s later).
TRIM_BUDGET_S = 0.1


def _not_negative(value: float) -> str | None:
    return "must be 0 or more" if value < 0 else None


class SqliteSink(Sink):
    TYPE = "sqlite"
    CAPS = Capabilities(claims=True)
    OPTIONS = {
        "path": Option(str, help="recording file (created 0600; appended to when it exists)"),
        "meta": Option(dict, {}, "key/value pairs stored in the recording's meta table"),
        "max_mb": Option((int, float), 0, "keep the recording's data under this many MiB: the oldest events "
                         "go first, with their rows in llm_calls, processes, files... (0: no cap)",
                         live=True, check=_not_negative),
        "max_age_h": Option((int, float), 0, "delete events older than this many hours (0: keep them)",
                            live=True, check=_not_negative),
        "retention_interval": Option((int, float), 60.0, "seconds between two retention checks",
                                     live=True, check=lambda v: None if v > 0 else "must be more than 0"),
    }

    @classmethod
    def claims(cls, options: dict[str, Any]) -> list[str]:
        return [f"file:{os.path.abspath(options['path'])}"] if isinstance(options.get("path"), str) else []

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.store: Store | None = None
        self._next_check = 0.0   # monotonic time of the next retention check (0: at the first flush)
        self._trimming = False   # over the cap: keep trimming until under LOW_WATER of it
        self._pending = False    # a pass ran out of its time budget: go on at the next flush

    def open(self) -> None:
        with fatal_on(PermissionError, FileNotFoundError):
            self.store = Store(self.options["path"])
        for key, value in self.options["meta"].items():
            self.store.set_meta(str(key), str(value))

    def apply_options(self, changed: set[str]) -> None:
        if changed & {"max_mb", "max_age_h", "retention_interval"}:
            self._next_check = 0.0  # a new limit applies at the next flush
            self._trimming = False

    def write(self, events: list[Event]) -> None:
        assert self.store is not None
        self.store.add(events, commit=False)

    def flush(self) -> None:
        if self.store is not None:
            self.store.db.commit()
            self.retain()

    def retain(self, now: float | None = None) -> int:
        """Apply the retention limits if a check is due; the number of events deleted."""
        o = self.options
        if self.store is None or not (o["max_mb"] or o["max_age_h"]):
            return 0
        now = time.monotonic() if now is None else now
        if not self._pending and now < self._next_check:
            return 0
        self._next_check = now + o["retention_interval"]
        self._pending = False
        cap = int(o["max_mb"] * (1 << 20))
        before = time.time_ns() - int(o["max_age_h"] * 3600e9) if o["max_age_h"] else None
        if cap and not self._trimming:
            self._trimming = self.store.used_bytes() > cap
        if not self._trimming and before is None:
            return 0
        deadline = time.monotonic() + TRIM_BUDGET_S
        deleted = 0
        while True:
            n = self.store.trim(max_bytes=int(cap * LOW_WATER) if self._trimming else 0, before_ns=before)
            deleted += n
            if n == 0:
                self._trimming = False
                break
            if time.monotonic() >= deadline:
                self._pending = True  # the rest at the next flush, 0.2 s later
                break
        if deleted:
            self.count("retention_deleted", deleted)
        return deleted

    def position(self) -> int:
        return self.store.last_id() if self.store is not None else 0

    def close(self) -> None:
        if self.store is not None:
            self.flush()
            self.store.close()
            self.store = None
