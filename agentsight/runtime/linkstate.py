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

Layout (version 2)::

    header   32 bytes   b"ASLS", u32 version, u64 slot count, 16 spare
    journal  16 bytes   flag byte, 7 spare, u64 entry count
             16 * slots entries of (u64 slot, u64 value): a step may touch every slot
    slots    64 * slots 56 bytes of zero-padded link key, then the value as little-endian u64

A link's key is its name when that fits in 56 bytes, else ``~`` and a hash of
the whole name, so two long names never share a slot and a name is found
again after a restart whatever its length. The file starts with
``INITIAL_SLOTS`` slots and doubles when they are used up (rewritten beside
and renamed over, so a kill during the growth leaves the old file whole).
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import struct
from pathlib import Path

__all__ = ["LinkState", "link_key"]

log = logging.getLogger("agentsight.runtime.linkstate")

MAGIC = b"ASLS"
VERSION = 2
HEADER = 32
SLOT = 64
NAME = 56
INITIAL_SLOTS = 256
MAX_SLOTS = 1 << 16        # 4 MiB of slots; past that a link's value is kept in memory only
J_FLAG = HEADER
J_COUNT = HEADER + 8
J_ENTRIES = HEADER + 16


def _size(slots: int) -> int:
    return J_ENTRIES + 16 * slots + SLOT * slots


def link_key(name: str) -> bytes:
    """What a slot stores for ``name``: the name itself if it fits, else a hash of all of it."""
    raw = name.encode()
    if len(raw) <= NAME and not raw.startswith(b"~") and b"\0" not in raw:
        return raw
    return b"~" + hashlib.blake2b(raw, digest_size=27).hexdigest().encode()


class LinkState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._slots: dict[str, int] = {}     # key (as text) -> slot index
        self._by_key: dict[str, int] = {}    # key -> value
        self._memory_only: set[str] = set()
        self._staged: dict[int, int] = {}
        self._capacity = 0
        self._mm = self._open()
        self._recover()
        self._load()

    # ------------------------------------------------------------------ file
    def _open(self) -> mmap.mmap:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, HEADER, 0)
            if size >= HEADER and head[:4] == MAGIC and struct.unpack_from("<I", head, 4)[0] == VERSION:
                capacity = struct.unpack_from("<Q", head, 8)[0]
                if size < _size(capacity):
                    os.ftruncate(fd, _size(capacity))
            else:  # new (or not ours): start empty
                capacity = INITIAL_SLOTS
                os.ftruncate(fd, 0)
                os.ftruncate(fd, _size(capacity))
                os.pwrite(fd, MAGIC + struct.pack("<IQ", VERSION, capacity), 0)
            self._capacity = capacity
            return mmap.mmap(fd, _size(capacity))
        finally:
            os.close(fd)

    def _slot_offset(self, slot: int) -> int:
        return J_ENTRIES + 16 * self._capacity + SLOT * slot

    def _load(self) -> None:
        for i in range(self._capacity):
            off = self._slot_offset(i)
            raw = self._mm[off: off + NAME].rstrip(b"\0")
            if raw:
                key = raw.decode("utf-8", "replace")
                self._slots[key] = i
                self._by_key[key] = struct.unpack_from("<Q", self._mm, off + NAME)[0]

    def _grow(self) -> None:
        """Double the slots: write the bigger file beside this one, rename it over, map it."""
        new_cap = min(MAX_SLOTS, self._capacity * 2)
        tmp = self.path.with_name(self.path.name + ".grow")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, _size(new_cap))
            os.pwrite(fd, MAGIC + struct.pack("<IQ", VERSION, new_cap), 0)
            old = self._mm[self._slot_offset(0): self._slot_offset(self._capacity)]
            os.pwrite(fd, old, J_ENTRIES + 16 * new_cap)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._mm.close()
        self._mm = self._open()

    # ------------------------------------------------------------------- api
    @property
    def values(self) -> dict[str, int]:
        """Every value by link key (a long name's key is its hash: use :meth:`get`)."""
        return dict(self._by_key)

    def get(self, name: str, default: int = 0) -> int:
        """The current value, staged ones included."""
        return self._by_key.get(link_key(name).decode(), default)

    def set(self, name: str, value: int) -> None:
        """Write one value now (a single store: atomic on its own)."""
        key = link_key(name).decode()
        slot = self._slot(key)
        self._by_key[key] = value
        if slot >= 0:
            struct.pack_into("<Q", self._mm, self._slot_offset(slot) + NAME, value)

    def stage(self, name: str, value: int) -> None:
        """Set a value that :meth:`commit` writes together with the others staged."""
        key = link_key(name).decode()
        slot = self._slot(key)
        self._by_key[key] = value
        if slot >= 0:
            self._staged[slot] = value

    def commit(self) -> None:
        """Write every staged value as one step (see the module doc)."""
        staged, self._staged = self._staged, {}
        if not staged:
            return
        if len(staged) == 1:
            ((slot, value),) = staged.items()
            struct.pack_into("<Q", self._mm, self._slot_offset(slot) + NAME, value)
            return
        for i, (slot, value) in enumerate(staged.items()):
            struct.pack_into("<QQ", self._mm, J_ENTRIES + 16 * i, slot, value)
        struct.pack_into("<Q", self._mm, J_COUNT, len(staged))
        self._mm[J_FLAG] = 1
        for slot, value in staged.items():
            struct.pack_into("<Q", self._mm, self._slot_offset(slot) + NAME, value)
        self._mm[J_FLAG] = 0

    def _recover(self) -> None:
        """Finish a step a killed predecessor had journaled but not fully applied."""
        if self._mm[J_FLAG] != 1:
            return
        (count,) = struct.unpack_from("<Q", self._mm, J_COUNT)
        for i in range(min(count, self._capacity)):
            slot, value = struct.unpack_from("<QQ", self._mm, J_ENTRIES + 16 * i)
            if slot < self._capacity:
                struct.pack_into("<Q", self._mm, self._slot_offset(slot) + NAME, value)
        self._mm[J_FLAG] = 0

    def _slot(self, key: str) -> int:
        """The slot of ``key`` (allocated on first use); -1 when the file is at its largest."""
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        if key in self._memory_only:
            return -1
        if len(self._slots) >= self._capacity:
            if self._capacity >= MAX_SLOTS:
                self._memory_only.add(key)
                log.warning("link state %s full (%d links): %s is kept in memory only", self.path,
                            MAX_SLOTS, key)
                return -1
            self._grow()
        slot = len(self._slots)
        off = self._slot_offset(slot)
        self._mm[off: off + NAME] = key.encode().ljust(NAME, b"\0")
        self._slots[key] = slot
        return slot

    def close(self) -> None:
        self._mm.close()
