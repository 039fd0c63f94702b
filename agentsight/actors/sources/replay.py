"""Replay a recorded capture (a jsonl file written by the jsonl sink) into the pipeline.

With ``pace = "original"`` events come out with the gaps they were recorded
with (scaled by ``speed``); otherwise as fast as the pipeline takes them.
Lines that are not events are counted (``bad_lines``) and skipped.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import IO, Any

from agentsight.event import Event
from agentsight.jsonform import event_from_json
from agentsight.pipeline.component import Option, Source, fatal_on

__all__ = ["Replay"]


def _exists(value: str) -> str | None:
    return None if Path(value).is_file() else f"no such file: {value}"


class Replay(Source):
    TYPE = "replay"
    OPTIONS = {
        "path": Option(str, help="capture file (jsonl, optionally .gz)", check=_exists),
        "pace": Option(str, "fast", "fast: as fast as possible; original: keep recorded timing",
                       choices=("fast", "original")),
        "speed": Option((int, float), 1.0, "with pace=original, play this many times faster"),
        "batch": Option(int, 256, "most events per poll"),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self._file: IO[str] | None = None
        self._pending: Event | None = None
        self._t0_rec = 0
        self._t0_wall = 0.0

    def open(self) -> None:
        path = self.options["path"]
        with fatal_on(PermissionError, FileNotFoundError):
            self._file = gzip.open(path, "rt") if path.endswith(".gz") else open(path)

    def _next(self) -> Event | None:
        assert self._file is not None
        for line in self._file:
            if not line.strip():
                continue
            try:
                return event_from_json(line)
            except (ValueError, KeyError, TypeError):
                self.count("bad_lines")
        return None

    def poll(self, timeout: float) -> list[Event]:
        out: list[Event] = []
        original = self.options["pace"] == "original"
        deadline = time.monotonic() + timeout
        while len(out) < self.options["batch"]:
            ev = self._pending or self._next()
            self._pending = None
            if ev is None:
                self.finished = True
                break
            if original:
                if not self._t0_rec:
                    self._t0_rec, self._t0_wall = ev.ts_ns, time.monotonic()
                due = self._t0_wall + (ev.ts_ns - self._t0_rec) / 1e9 / self.options["speed"]
                wait = due - time.monotonic()
                if wait > 0:
                    if out or due > deadline:
                        self._pending = ev
                        if not out:
                            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
                        break
                    time.sleep(wait)
            out.append(ev)
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
