"""The kernel objects of a loaded eBPF program, used without bcc: libbpf1 through ctypes.

A source process holds file descriptors handed over by the loader (:mod:`agentsight.kernel.bpfload`):
maps, programs and the perf events that attach programs. This module works them:

- :class:`Map`: lookup / update / delete / iteration over raw key and value bytes (per-CPU
  values come back per CPU, or summed as counters);
- :class:`RingBuffers`: libbpf's ``ring_buffer__new/__add/__poll/__consume`` with one Python
  callback per ring (``callback(ctx, data_address, size)``, the shape bcc used);
- :func:`attach_uprobe` / :func:`attach_tracepoint`: a perf event from the ``uprobe`` PMU or
  a tracepoint's id, then ``PERF_EVENT_IOC_SET_BPF`` and ``ENABLE``. The program stays
  attached while any process holds the returned fd, and closing the last one detaches it
  (nothing is written to ``uprobe_events``: no stray probe outlives its holder);
- :func:`file_offset`: a virtual address in an ELF file -> the file offset a uprobe takes.

libbpf.so.1 maps about 1 MB; LLVM and bcc are never loaded here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["BpfError", "Map", "RingBuffers", "attach_uprobe", "attach_tracepoint", "file_offset",
           "MAP_PERCPU", "MAP_RINGBUF", "PROG_KPROBE", "PROG_TRACEPOINT"]

PROG_KPROBE, PROG_TRACEPOINT, PROG_RAW_TRACEPOINT = 2, 5, 17
MAP_PERCPU = frozenset({5, 6, 10, 21})  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE
MAP_RINGBUF = 27
BPF_ANY = 0

PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
_PERF_ATTR_SIZE = 128
_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
_PMU = Path("/sys/bus/event_source/devices")
_TRACEFS = (Path("/sys/kernel/tracing/events"), Path("/sys/kernel/debug/tracing/events"))

_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class BpfError(OSError):
    """A map operation, ring-buffer call or attachment the kernel refused; the message says which
    (``errno`` keeps the code)."""

    def __str__(self) -> str:
        return str(self.strerror)


_lib: ctypes.CDLL | None = None
_libc = ctypes.CDLL(None, use_errno=True)


def lib() -> ctypes.CDLL:
    """libbpf.so.1, loaded once (bcc's packages depend on it: libbpfcc -> libbpf1)."""
    global _lib
    if _lib is None:
        try:
            cdll = ctypes.CDLL("libbpf.so.1", use_errno=True)
        except OSError as exc:
            raise BpfError(errno.ENOENT, f"libbpf.so.1 cannot be loaded ({exc}); run: sudo scripts/setup.sh "
                           "(or apt-get install libbpf1)") from None
        vp, i, u32, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_size_t
        for fn, res, args in (
            ("bpf_map_lookup_elem", i, [i, vp, vp]),
            ("bpf_map_update_elem", i, [i, vp, vp, ctypes.c_uint64]),
            ("bpf_map_delete_elem", i, [i, vp]),
            ("bpf_map_get_next_key", i, [i, vp, vp]),
            ("libbpf_num_possible_cpus", i, []),
            ("ring_buffer__new", vp, [i, _SAMPLE_FN, vp, vp]),
            ("ring_buffer__add", i, [vp, i, _SAMPLE_FN, vp]),
            ("ring_buffer__poll", i, [vp, i]),
            ("ring_buffer__consume", i, [vp]),
            ("ring_buffer__epoll_fd", i, [vp]),
            ("ring_buffer__free", None, [vp]),
        ):
            func = getattr(cdll, fn)
            func.restype, func.argtypes = res, args
        del u32, sz
        _lib = cdll
    return _lib


def _check(rc: int, what: str) -> int:
    """libbpf 1.x returns -errno (and sets errno) on failure."""
    if rc < 0:
        code = -rc if rc != -1 else (ctypes.get_errno() or errno.EPERM)
        raise BpfError(code, f"{what}: {os.strerror(code)}")
    return rc


_possible_cpus: int | None = None


def possible_cpus() -> int:
    global _possible_cpus
    if _possible_cpus is None:
        _possible_cpus = _check(lib().libbpf_num_possible_cpus(), "counting the possible CPUs")
    return _possible_cpus


class Map:
    """One eBPF map, by fd. Keys and values are the raw bytes of the C types (native order).

    A per-CPU map's value is one slot per possible CPU, each rounded up to 8 bytes:
    :meth:`lookup_percpu` returns them, :meth:`sum` adds them up as counters.
    """

    def __init__(self, name: str, fd: int, map_type: int, key_size: int, value_size: int,
                 max_entries: int) -> None:
        self.name = name
        self.fd = fd
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.percpu = map_type in MAP_PERCPU
        self._slot = (value_size + 7) & ~7
        self._buf_size = self._slot * possible_cpus() if self.percpu else value_size

    def __repr__(self) -> str:
        return (f"Map({self.name!r}, fd={self.fd}, type={self.type}, key={self.key_size}, "
                f"value={self.value_size}, max_entries={self.max_entries})")

    def _key(self, key: bytes) -> bytes:
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key of {len(key)} bytes, the map's keys have {self.key_size}")
        return key

    def _raw(self, key: bytes) -> ctypes.Array[ctypes.c_char] | None:
        out = ctypes.create_string_buffer(self._buf_size)
        rc = lib().bpf_map_lookup_elem(self.fd, self._key(key), out)
        if rc == -errno.ENOENT or (rc == -1 and ctypes.get_errno() == errno.ENOENT):
            return None
        _check(rc, f"looking up map {self.name}")
        return out

    def lookup(self, key: bytes) -> bytes | None:
        """The value under ``key`` (for a per-CPU map, CPU 0's), or None."""
        out = self._raw(key)
        return None if out is None else out.raw[:self.value_size]

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        """Each possible CPU's value under ``key`` (a per-CPU map), or None."""
        out = self._raw(key)
        if out is None:
            return None
        raw = out.raw
        return [raw[i:i + self.value_size] for i in range(0, len(raw), self._slot)]

    def sum(self, key: bytes) -> int:
        """A per-CPU u64 counter under ``key``, added up over the CPUs (0 when absent)."""
        values = self.lookup_percpu(key) if self.percpu else [self.lookup(key) or b""]
        return sum(int.from_bytes(v[:8], "little") for v in values or ())

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self.value_size:
            raise ValueError(f"map {self.name}: value of {len(value)} bytes, the map's values have "
                             f"{self.value_size}")
        if self.percpu:
            value = value.ljust(self._slot, b"\0") * possible_cpus()
        _check(lib().bpf_map_update_elem(self.fd, self._key(key), value, flags), f"updating map {self.name}")

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; False if it was not there."""
        rc = lib().bpf_map_delete_elem(self.fd, self._key(key))
        if rc == -errno.ENOENT or (rc == -1 and ctypes.get_errno() == errno.ENOENT):
            return False
        _check(rc, f"deleting from map {self.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        """Every key, in the kernel's order (a hash map changing meanwhile may skip or repeat some)."""
        prev: bytes | None = None
        out = ctypes.create_string_buffer(self.key_size)
        while True:
            rc = lib().bpf_map_get_next_key(self.fd, prev, out)
            if rc == -errno.ENOENT or (rc == -1 and ctypes.get_errno() == errno.ENOENT):
                return
            _check(rc, f"iterating map {self.name}")
            prev = out.raw
            yield prev

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value


RecordCallback = Callable[[Any, int, int], Any]


class RingBuffers:
    """libbpf's ring-buffer reader over one or more ring maps, each with its callback.

    A callback gets ``(None, address, size)`` per record and runs inside :meth:`poll` /
    :meth:`consume`. If one raises, the record is skipped, the others are still read, and
    the first exception is raised again when the call returns (nothing is swallowed).
    """

    def __init__(self) -> None:
        self._rb: int | None = None
        self._callbacks: list[Any] = []  # the ctypes thunks must outlive the reader
        self._error: BaseException | None = None

    def add(self, ring: Map, callback: RecordCallback) -> None:
        if ring.type != MAP_RINGBUF:
            raise ValueError(f"map {ring.name} is not a ring buffer (type {ring.type})")

        def on_sample(ctx: Any, data: int, size: int) -> int:
            try:
                ret = callback(ctx, data, size)
                return ret if isinstance(ret, int) and ret < 0 else 0
            except BaseException as exc:  # raised again by poll/consume, after the ring is read
                if self._error is None:
                    self._error = exc
                return 0

        thunk = _SAMPLE_FN(on_sample)
        if self._rb is None:
            rb = lib().ring_buffer__new(ring.fd, thunk, None, None)
            if not rb:
                code = ctypes.get_errno() or errno.EINVAL
                raise BpfError(code, f"opening ring buffer {ring.name}: {os.strerror(code)}")
            self._rb = rb
        else:
            _check(lib().ring_buffer__add(self._rb, ring.fd, thunk, None), f"adding ring buffer {ring.name}")
        self._callbacks.append(thunk)

    def epoll_fd(self) -> int | None:
        """The reader's epoll fd: readable when a ring has woken it (None before the first ring)."""
        if self._rb is None:
            return None
        return int(lib().ring_buffer__epoll_fd(self._rb))

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for records, then read every ready one; how many were read."""
        if self._rb is None:
            return 0
        return self._done(lib().ring_buffer__poll(self._rb, timeout_ms), "polling")

    def consume(self) -> int:
        """Read every record there is now, without waiting."""
        if self._rb is None:
            return 0
        return self._done(lib().ring_buffer__consume(self._rb), "reading")

    def _done(self, rc: int, what: str) -> int:
        error, self._error = self._error, None
        if error is not None:
            raise error
        if rc == -errno.EINTR:  # a signal arrived during epoll_wait: nothing read, not an error
            return 0
        return _check(rc, f"{what} the ring buffer")

    def close(self) -> None:
        if self._rb is not None:
            lib().ring_buffer__free(self._rb)
            self._rb = None
        self._callbacks.clear()


# ---- attaching programs: perf events ---------------------------------------------------------

def _perf_event_open(attr: bytes, pid: int, cpu: int, what: str) -> int:
    nr = _PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise BpfError(errno.ENOSYS, f"{what}: perf_event_open is not known on {platform.machine()}")
    buf = ctypes.create_string_buffer(attr, _PERF_ATTR_SIZE)
    fd = _libc.syscall(ctypes.c_long(nr), buf, ctypes.c_int(pid), ctypes.c_int(cpu), ctypes.c_int(-1),
                       ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        code = ctypes.get_errno()
        raise BpfError(code, f"{what}: perf_event_open: {os.strerror(code)}")
    return int(fd)


def _perf_attr(ev_type: int, config: int, config1: int = 0, config2: int = 0) -> bytes:
    """struct perf_event_attr: type, size, config, sample_period 1, wakeup_events 1, config1/2."""
    return struct.pack("=IIQQQQQIIQQ", ev_type, _PERF_ATTR_SIZE, config, 1, 0, 0, 0, 1, 0, config1, config2)


def _set_bpf(pfd: int, prog_fd: int, what: str) -> int:
    try:
        fcntl.ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError as exc:
        os.close(pfd)
        raise BpfError(exc.errno or errno.EINVAL, f"{what}: {exc.strerror}") from None
    return pfd


_uprobe_pmu: tuple[int, int] | None = None


def uprobe_pmu() -> tuple[int, int]:
    """(perf type of the uprobe PMU, bit of config that makes a retprobe)."""
    global _uprobe_pmu
    if _uprobe_pmu is None:
        try:
            pmu_type = int((_PMU / "uprobe" / "type").read_text())
            fmt = (_PMU / "uprobe" / "format" / "retprobe").read_text().strip()  # "config:0"
        except (OSError, ValueError) as exc:
            raise BpfError(errno.ENOENT, f"this kernel has no uprobe PMU ({exc}): uprobes need Linux 4.17 "
                           "or later") from None
        _uprobe_pmu = (pmu_type, int(fmt.split(":", 1)[1].split("-")[0]))
    return _uprobe_pmu


def attach_uprobe(prog_fd: int, path: str, offset: int, pid: int = -1, ret: bool = False,
                  what: str = "") -> int:
    """Run ``prog_fd`` at file ``offset`` of ``path`` (on return with ``ret``), in ``pid`` or every
    process (-1). Returns the perf event's fd: the probe lives as long as it is open."""
    pmu_type, ret_bit = uprobe_pmu()
    what = what or f"{'uretprobe' if ret else 'uprobe'} on {path}+{offset:#x}"
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = _perf_attr(pmu_type, (1 << ret_bit) if ret else 0, ctypes.addressof(name), offset)
    try:
        pfd = _perf_event_open(attr, pid if pid >= 0 else -1, -1 if pid >= 0 else 0, what)
    except BpfError as exc:
        if exc.errno == errno.EINVAL:
            # The kernel refuses a second probe at one address with another reference-counter
            # offset; bcc 0.26's Python attach_uprobe passes an uninitialised one.
            raise BpfError(errno.EINVAL, f"{exc}; if dmesg says 'ref_ctr_offset mismatch', another tracer "
                           "(a bcc tool) probes this address") from None
        raise
    return _set_bpf(pfd, prog_fd, what)


def tracepoint_id(category: str, event: str) -> int:
    for root in _TRACEFS:
        try:
            return int((root / category / event / "id").read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise BpfError(errno.EACCES, f"tracepoint {category}:{event}: {exc}") from None
    raise BpfError(errno.ENOENT, f"tracepoint {category}:{event} does not exist on this kernel")


def attach_tracepoint(prog_fd: int, category: str, event: str) -> int:
    """Run ``prog_fd`` (a tracepoint program) on ``category:event`` in every process; the perf event's fd."""
    what = f"tracepoint {category}:{event}"
    pfd = _perf_event_open(_perf_attr(PERF_TYPE_TRACEPOINT, tracepoint_id(category, event)), -1, 0, what)
    return _set_bpf(pfd, prog_fd, what)


# ---- ELF: virtual address -> file offset ------------------------------------------------------

def file_offset(path: str, vaddr: int) -> int:
    """The file offset of virtual address ``vaddr`` in ELF ``path`` (an executable PT_LOAD
    segment's p_offset + the distance from its p_vaddr), the way uprobes want it."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF":
            raise BpfError(errno.ENOEXEC, f"{path} is not an ELF file")
        wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
        if wide:
            phoff, = struct.unpack_from(order + "Q", ident, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
            layout = struct.Struct(order + "IIQQQQQQ")  # type, flags, offset, vaddr, paddr, filesz, memsz, align
        else:
            phoff, = struct.unpack_from(order + "I", ident, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", ident, 42)
            layout = struct.Struct(order + "IIIIIIII")  # type, offset, vaddr, paddr, filesz, memsz, flags, align
        table = os.pread(f.fileno(), phentsize * phnum, phoff)
    for i in range(phnum):
        fields = layout.unpack_from(table, i * phentsize)
        if wide:
            p_type, p_flags, p_offset, p_vaddr, _, _, p_memsz, _ = fields
        else:
            p_type, p_offset, p_vaddr, _, _, p_memsz, p_flags, _ = fields
        if p_type == 1 and p_flags & 1 and p_vaddr <= vaddr < p_vaddr + p_memsz:  # PT_LOAD, PF_X
            return int(vaddr - p_vaddr + p_offset)
    raise BpfError(errno.EFAULT, f"{vaddr:#x} is in no executable segment of {path}")
