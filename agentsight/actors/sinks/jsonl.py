"""Write events as JSON lines, owner-only, with size-based rotation.

``path`` grows to ``max_bytes`` (checked after each flush), then becomes ``path.1`` (older files shift up to
``path.<max_files>``, the oldest is deleted). Bytes are encoded as described in
:mod:`agentsight.jsonform`, so ``replay`` reads the file back byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from agentsight.event import Event
from agentsight.jsonform import event_to_json
from agentsight.pipeline.component import Capabilities, Option, Sink, fatal_on

__all__ = ["JsonlSink"]


class JsonlSink(Sink):
    TYPE = "jsonl"
    CAPS = Capabilities(claims=True)
    OPTIONS = {
        "path": Option(str, help="output file"),
        "max_bytes": Option(int, 0, "rotate when the file reaches this size (0: never)"),
        "max_files": Option(int, 5, "rotated files to keep"),
        "fsync": Option(bool, False, "fsync at every flush (durable, slower)"),
    }

    @classmethod
    def claims(cls, options: dict[str, Any]) -> list[str]:
        return [f"file:{os.path.abspath(options['path'])}"] if isinstance(options.get("path"), str) else []

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.path = Path(self.options["path"])
        self._file: IO[str] | None = None
        self._size = 0

    def open(self) -> None:
        with fatal_on(PermissionError, FileNotFoundError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1 << 16)
        self._size = os.fstat(fd).st_size

    def write(self, events: list[Event]) -> None:
        assert self._file is not None
        text = "".join(event_to_json(e) + "\n" for e in events)
        self._file.write(text)
        self._size += len(text.encode()) if not text.isascii() else len(text)

    def position(self) -> int:
        return self._size

    def durable_position(self) -> int:
        assert self._file is not None
        return os.fstat(self._file.fileno()).st_size

    def truncate(self, position: int) -> None:
        """Cut lines written (by a killed predecessor) past the last acknowledged flush."""
        assert self._file is not None
        self._file.flush()
        os.truncate(self._file.fileno(), position)
        self._size = position
        self.count("truncated_unacknowledged")

    def after_flush(self) -> None:
        limit = self.options["max_bytes"]
        if limit and self._size >= limit:
            self._rotate()

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        keep = self.options["max_files"]
        for i in range(keep, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i - 1}") if i > 1 else self.path
            dst = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, dst)
        oldest = self.path.with_name(f"{self.path.name}.{keep + 1}")
        if oldest.exists():
            oldest.unlink()
        self.count("rotations")
        self.open()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            if self.options["fsync"]:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None
