"""Events from another pipeline's bus (local ipc or remote tcp with CURVE).

This is how a pipeline on one machine runs its own sinks on what a pipeline on
another machine captured. Gaps on the bus are counted as ``bus_lost`` (and so as
dropped): the bus is lossy by design, never silently.
"""

from __future__ import annotations

from typing import Any

from agentsight.event import Event
from agentsight.pipeline.component import Option, Source, fatal_on
from agentsight.runtime.subscriber import Subscriber

__all__ = ["BusSource"]


class BusSource(Source):
    TYPE = "bus"
    OPTIONS = {
        "connect": Option(str, help="bus endpoint: ipc://<run dir>/bus or tcp://HOST:PORT"),
        "topics": Option(list, [""], "topic prefixes to subscribe to"),
        "server_key": Option(str, "", "the remote bus's public key (file or Z85 text)"),
        "client_key": Option(str, "", "this subscriber's .key_secret file (must be authorized there)"),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self._sub: Subscriber | None = None

    def open(self) -> None:
        from agentsight.runtime.bus import load_public_key, load_secret_key

        o = self.options
        with fatal_on(PermissionError, FileNotFoundError, ValueError):  # no key file, or no key in it
            server = load_public_key(o["server_key"]) if o["server_key"] else None
            client = load_secret_key(o["client_key"]) if o["client_key"] else None
        self._sub = Subscriber(o["connect"], o["topics"], server_key=server, client_keys=client)

    def poll(self, timeout: float) -> list[Event]:
        assert self._sub is not None
        events = self._sub.recv(timeout)
        lost = self._sub.stats.lost - self.stats.get("bus_lost", 0)
        if lost:
            self.count("bus_lost", lost)
        return events

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
