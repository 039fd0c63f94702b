"""Per-link sequence state that survives a ``kill -9`` of the actor holding it.

Each actor instance keeps, per link, the next sequence number it will send
(outputs) or expects to receive (inputs) in a small memory-mapped file in the
run directory. A restarted instance reads it back, so

- the downstream of a restarted sender sees its numbering continue, and a batch
  the dead process had numbered but not sent shows up as a gap (counted as lost);
- a restarted receiver knows where its predecessor stopped, so the batches that
  died in its receive window show up as a gap on the next batch.

The state is written *before* the batch it covers is sent, so a crash at any
point counts each event exactly once: delivered, or lost.

Layout: ``SLOTS`` fixed slots of 64 bytes: 56 bytes of zero-padded utf-8 link
name, then the value as little-endian u64.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

__all__ = ["LinkState"]

SLOT = 64
NAME = 56
SLOTS = 512


class LinkState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SLOT * SLOTS:
                os.ftruncate(fd, SLOT * SLOTS)
            self._mm = mmap.mmap(fd, SLOT * SLOTS)
        finally:
            os.close(fd)
        self._slots: dict[str, int] = {}
        self.values: dict[str, int] = {}
        for i in range(SLOTS):
            raw = self._mm[i * SLOT: i * SLOT + NAME].rstrip(b"\0")
            if raw:
                name = raw.decode("utf-8", "replace")
                self._slots[name] = i
                self.values[name] = struct.unpack_from("<Q", self._mm, i * SLOT + NAME)[0]

    def get(self, name: str, default: int = 0) -> int:
        return self.values.get(name, default)

    def set(self, name: str, value: int) -> None:
        slot = self._slots.get(name)
        if slot is None:
            slot = self._allocate(name)
        self.values[name] = value
        struct.pack_into("<Q", self._mm, slot * SLOT + NAME, value)

    def _allocate(self, name: str) -> int:
        raw = name.encode()[:NAME]
        used = set(self._slots.values())
        for i in range(SLOTS):
            if i not in used:
                self._mm[i * SLOT: i * SLOT + NAME] = raw.ljust(NAME, b"\0")
                self._slots[name] = i
                return i
        raise RuntimeError("link state full: more than 512 links on one actor")

    def close(self) -> None:
        self._mm.close()
