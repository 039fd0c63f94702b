"""Synthetic load: numbered events per partition key, for tests and benchmarks.

Each event is ``gen.event`` (or ``topic``) with ``data = {"key": k, "n": per-key
counter, "i": global index, "payload": size bytes}``, so a sink can check that
nothing was lost or duplicated and that order per key held.
"""

from __future__ import annotations

import os
import time
from typing import Any

from agentsight.event import Event, now_ns
from agentsight.pipeline.component import Option, Source

__all__ = ["Generator"]


class Generator(Source):
    TYPE = "generator"
    OPTIONS = {
        "count": Option(int, 0, "events to emit in all, then finish (0: no end)"),
        "rate": Option((int, float), 0, "events per second (0: as fast as the pipeline takes them)", live=True),
        "size": Option(int, 200, "payload bytes per event (200 gives ~300-byte events on the wire)"),
        "keys": Option(int, 16, "distinct partition keys, assigned round-robin"),
        "topic": Option(str, "gen.event", "topic of every event"),
        "batch": Option(int, 256, "most events per poll"),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self._i = 0
        self._per_key = [0] * max(1, self.options["keys"])
        self._payload = b"x" * self.options["size"]
        self._started = 0.0
        self._pid = os.getpid()

    def open(self) -> None:
        self._started = time.monotonic()

    def poll(self, timeout: float) -> list[Event]:
        o = self.options
        n = o["batch"]
        if o["count"]:
            n = min(n, o["count"] - self._i)
        if o["rate"]:
            due = int((time.monotonic() - self._started) * o["rate"]) - self._i
            if due <= 0:
                time.sleep(min(timeout, 1.0 / o["rate"]))
                due = int((time.monotonic() - self._started) * o["rate"]) - self._i
            n = max(0, min(n, due))
        out = []
        keys = len(self._per_key)
        ts = now_ns()
        topic, name, pid, payload = o["topic"], self.name, self._pid, self._payload
        for _ in range(n):
            k = self._i % keys
            out.append(Event(topic, ts, name, pid, pid, "generator",
                             {"key": k, "n": self._per_key[k], "i": self._i, "payload": payload}))
            self._per_key[k] += 1
            self._i += 1
        if o["count"] and self._i >= o["count"]:
            self.finished = True
        return out

    def apply_options(self, changed: set[str]) -> None:
        if "rate" in changed:
            # Restart the pacing clock so a new rate applies from now.
            self._started = time.monotonic() - (self._i / self.options["rate"] if self.options["rate"] else 0)
