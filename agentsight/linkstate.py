"""Per-link sequence state that survives a ``kill -9`` of the actor holding it.

Each actor instance keeps, per link, the next sequence number it will send
(outputs) or expects to receive (inputs) in a small memory-mapped file in the
run directory. A restarted instance reads it back, so

- the downstream of a restarted sender sees its numbering continue, and a batch
  the dead process had numbered but not sent shows up as a gap (counted as lost);
- a restarted receiver knows where its predecessor stopped, so the batches that
  died in its receive window show up as a gap on the next batch.

The state is written *before* the batch it covers is sent, so a crash at any
point counts each event exactly once: delivered, or lost. An analyzer's step
(number its outputs on every output link, mark its input consumed) must land as
one: :meth:`LinkState.stage` collects the new values and :meth:`LinkState.commit`
writes them through a journal. The journal's entries are written first, then a
one-byte flag (a single store: a kill lands before or after it); a restarted
instance that finds the flag set re-applies the entries. So a kill mid-step
either leaves every value old (the input batch shows up as one gap upstream)
or every value new (the outputs show up as one gap downstream), never both.

Layout: ``SLOTS`` fixed slots of 64 bytes: 56 bytes of zero-padded utf-8 link
name, then the value as little-endian u64. Then the journal: a flag byte, 7
spare bytes, a u64 entry count, and up to ``JOURNAL`` entries of (u64 slot, u64
value).
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
JOURNAL = 512
J_FLAG = SLOT * SLOTS
J_COUNT = J_FLAG + 8
J_ENTRIES = J_FLAG + 16
SIZE = J_ENTRIES + 16 * JOURNAL


class LinkState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._mm = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        self._slots: dict[str, int] = {}
        self.values: dict[str, int] = {}
        self._staged: dict[int, int] = {}
        self._recover()
        for i in range(SLOTS):
            raw = self._mm[i * SLOT: i * SLOT + NAME].rstrip(b"\0")
            if raw:
                name = raw.decode("utf-8", "replace")
                self._slots[name] = i
                self.values[name] = struct.unpack_from("<Q", self._mm, i * SLOT + NAME)[0]

    def get(self, name: str, default: int = 0) -> int:
        """The current value, staged ones included."""
        return self.values.get(name, default)

    def set(self, name: str, value: int) -> None:
        """Write one value now (a single store: atomic on its own)."""
        slot = self._slot(name)
        self.values[name] = value
        struct.pack_into("<Q", self._mm, slot * SLOT + NAME, value)

    def stage(self, name: str, value: int) -> None:
        """Set a value that :meth:`commit` writes together with the others staged."""
        self._staged[self._slot(name)] = value
        self.values[name] = value

    def commit(self) -> None:
        """Write every staged value as one step (see the module doc)."""
        staged, self._staged = self._staged, {}
        if not staged:
            return
        if len(staged) == 1:
            ((slot, value),) = staged.items()
            struct.pack_into("<Q", self._mm, slot * SLOT + NAME, value)
            return
        if len(staged) > JOURNAL:
            raise RuntimeError(f"link state: {len(staged)} values in one step (the journal holds {JOURNAL})")
        for i, (slot, value) in enumerate(staged.items()):
            struct.pack_into("<QQ", self._mm, J_ENTRIES + 16 * i, slot, value)
        struct.pack_into("<Q", self._mm, J_COUNT, len(staged))
        self._mm[J_FLAG] = 1
        for slot, value in staged.items():
            struct.pack_into("<Q", self._mm, slot * SLOT + NAME, value)
        self._mm[J_FLAG] = 0

    def _recover(self) -> None:
        """Finish a step a killed predecessor had journaled but not fully applied."""
        if self._mm[J_FLAG] != 1:
            return
        (count,) = struct.unpack_from("<Q", self._mm, J_COUNT)
        for i in range(min(count, JOURNAL)):
            slot, value = struct.unpack_from("<QQ", self._mm, J_ENTRIES + 16 * i)
            if slot < SLOTS:
                struct.pack_into("<Q", self._mm, slot * SLOT + NAME, value)
                raw = self._mm[slot * SLOT: slot * SLOT + NAME].rstrip(b"\0")
                if raw:
                    self.values[raw.decode("utf-8", "replace")] = value
        self._mm[J_FLAG] = 0

    def _slot(self, name: str) -> int:
        slot = self._slots.get(name)
        return self._allocate(name) if slot is None else slot

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
