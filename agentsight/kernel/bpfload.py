"""The short-lived loader: compile an eBPF program with bcc, load it, hand its kernel objects over.

Run by :func:`agentsight.kernel.bpfprog.start` as ``python -P bpfload.py FD`` (this file, by path:
of the agentsight package it imports only the compile cache and libbpf modules, which use the
standard library alone; bcc only when it compiles). It reads one JSON request on stdin::

    {"name": "ssl", "text": "<the final C>", "cflags": [...],
     "programs": [["enter_write", 2], ...],     # more functions to load: [name, bcc prog type]
     "later": [["enter_seal", 2], ...]}         # to load after the first hand-over

compiles ``text`` with bcc (``BPF(text=...)``, which also loads and attaches every
``TRACEPOINT_PROBE``), loads the ``programs`` asked for, and sends on the unix socket FD
(SOCK_SEQPACKET) the file descriptors of the maps, the programs and the perf events of the
tracepoints it attached, with SCM_RIGHTS: one or more messages, each a JSON header listing
its fds in order, the last one of a batch saying where it ends::

    {"objects": [{"kind": "map", "name": "events", "type": 27, "key_size": 0, "value_size": 0,
                  "max_entries": 16777216, "flags": 0},
                 {"kind": "prog", "name": "enter_write", "type": 2},
                 {"kind": "tracepoint", "target": "sched:sched_process_exec",
                  "program": "tracepoint__sched__sched_process_exec"}, ...],
     "end": null | "batch" | "all"}

or one ``{"error": "<one line>"}``. The ``later`` programs (verified while the source already
runs: the AEAD ones take ~1 s together) follow as a second batch, or an error. Then it exits at once (``os._exit``: bcc's atexit cleanup
must not detach what it handed over). The kernel keeps every object alive as long as some
process holds an fd to it, so the receiver owns them from then on; bcc and LLVM (~100 MB)
leave with this process.

Before compiling, the loader looks for the bytecode of the same text in the compile cache
(:mod:`agentsight.kernel.bpfcache`): with an entry, it makes the maps, loads the programs
(on two threads: the first batch's at the head of the queue, the ``later`` ones verified
meanwhile and after) and attaches the tracepoints itself, without bcc; the first message of the
hand-over then says ``"cache": "hit"``. After a compile it writes the entry (``"miss"``); an
entry it cannot use is said in one line on stderr, and the program is compiled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

# SCM_MAX_FD is 253: stay under it per message.
FDS_PER_MESSAGE = 200
SETUP_HINT = "run: sudo scripts/setup.sh"


def _objects(bpf: Any, lib: Any, prog_types: dict[str, int]) -> list[tuple[dict[str, Any], int]]:
    """(description, fd) of every map, loaded program and tracepoint attachment of ``bpf``."""
    import ctypes

    for fn, res in (("bpf_num_tables", ctypes.c_size_t), ("bpf_table_name", ctypes.c_char_p),
                    ("bpf_table_fd_id", ctypes.c_int), ("bpf_table_type_id", ctypes.c_int),
                    ("bpf_table_key_size_id", ctypes.c_size_t), ("bpf_table_leaf_size_id", ctypes.c_size_t),
                    ("bpf_table_max_entries_id", ctypes.c_size_t), ("bpf_table_flags_id", ctypes.c_int)):
        getattr(lib, fn).restype = res
        getattr(lib, fn).argtypes = [ctypes.c_void_p] + ([] if fn == "bpf_num_tables" else [ctypes.c_size_t])
    out: list[tuple[dict[str, Any], int]] = []
    for i in range(lib.bpf_num_tables(bpf.module)):
        fd = lib.bpf_table_fd_id(bpf.module, i)
        if fd < 0:
            continue
        out.append(({"kind": "map", "name": lib.bpf_table_name(bpf.module, i).decode(),
                     "type": lib.bpf_table_type_id(bpf.module, i),
                     "key_size": lib.bpf_table_key_size_id(bpf.module, i),
                     "value_size": lib.bpf_table_leaf_size_id(bpf.module, i),
                     "max_entries": lib.bpf_table_max_entries_id(bpf.module, i),
                     "flags": lib.bpf_table_flags_id(bpf.module, i)}, fd))
    for name, fn in bpf.funcs.items():
        text = name.decode()
        kind = prog_types.get(text, 5 if text.startswith("tracepoint__") else 2)
        out.append(({"kind": "prog", "name": text, "type": kind}, fn.fd))
    for tp, fd in bpf.tracepoint_fds.items():
        target = tp.decode()
        out.append(({"kind": "tracepoint", "target": target,
                     "program": "tracepoint__" + target.replace(":", "__")}, fd))
    for tp, fd in bpf.raw_tracepoint_fds.items():
        out.append(({"kind": "raw_tracepoint", "target": tp.decode(), "program": "raw_tracepoint__" + tp.decode()},
                    fd))
    if bpf.kprobe_fds or bpf.uprobe_fds:
        raise RuntimeError("kprobes and uprobes attached at load are not handed over; attach them in the source")
    return out


def compile_program(request: dict[str, Any]) -> Any:
    """The ``bcc.BPF`` of ``request``: compiled, its tracepoints loaded and attached. Raises LoadError."""
    try:
        import bcc
    except ImportError as exc:
        raise LoadError(f"bcc is not importable ({exc}); {SETUP_HINT}") from None
    try:
        return bcc.BPF(text=request["text"].encode(), cflags=request.get("cflags", []))
    except Exception as exc:  # bcc raises bare Exception on compile and load errors
        raise LoadError(f"could not load bpf/{request['name']}.bpf.c: {exc}") from None


def load_programs(bpf: Any, name: str, programs: list[list[Any]], prog_types: dict[str, int]) -> None:
    """Load more functions of ``bpf`` (bcc's ``load_func``); a verifier rejection names the function."""
    for fn_name, prog_type in programs:
        try:
            bpf.load_func(fn_name.encode(), prog_type)
        except Exception as exc:  # bcc raises bare Exception, the verifier log went to stderr
            raise LoadError(f"the kernel rejected bpf/{name}.bpf.c:{fn_name} ({exc}); "
                            "see the verifier log above") from None
        prog_types[fn_name] = prog_type


class LoadError(Exception):
    """What to tell the source, in one line."""


class SourceGone(Exception):
    """The source closed its end (it stopped, or was killed): nobody to hand anything to."""


def send(sock: socket.socket, objects: list[tuple[dict[str, Any], int]], end: str, cache: str = "") -> None:
    """Hand ``objects`` over in messages of at most FDS_PER_MESSAGE fds; the last one says ``end``:
    ``"batch"`` (more will follow: the programs asked for ``later``) or ``"all"``. ``cache``
    (``"hit"``, ``"miss"``, ``"off"``) rides on the first message."""
    for start in range(0, len(objects), FDS_PER_MESSAGE) or [0]:
        part = objects[start:start + FDS_PER_MESSAGE]
        last = start + FDS_PER_MESSAGE >= len(objects)
        header: dict[str, Any] = {"objects": [desc for desc, _ in part], "end": end if last else None}
        if cache and start == 0:
            header["cache"] = cache
        try:
            socket.send_fds(sock, [json.dumps(header).encode()], [fd for _, fd in part])
        except OSError:
            raise SourceGone() from None


def _tell(sock: socket.socket, error: str) -> int:
    """Send the one-line error (if the source still listens); the exit code."""
    try:
        sock.send(json.dumps({"error": error}).encode())
    except OSError:
        pass
    return 1


def _bcc_entry(bpf: Any, lib: Any) -> Any:
    """The cache entry of a compiled ``bpf``: every map, every function's bytecode, the tracepoints
    bcc attached (None when the module has something the cache does not rebuild)."""
    import ctypes

    from agentsight.kernel import bpfcache

    if bpf.raw_tracepoint_fds or bpf.kprobe_fds or bpf.uprobe_fds:
        return None
    for fn, res, args in (("bpf_num_functions", ctypes.c_size_t, [ctypes.c_void_p]),
                          ("bpf_function_name", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_size_t]),
                          ("bpf_function_start", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
                          ("bpf_function_size", ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_char_p]),
                          ("bpf_module_license", ctypes.c_char_p, [ctypes.c_void_p])):
        getattr(lib, fn).restype, getattr(lib, fn).argtypes = res, args
    maps = [bpfcache.MapSpec(d["name"], fd, d["type"], d["key_size"], d["value_size"], d["max_entries"], d["flags"])
            for d, fd in _objects(bpf, lib, {}) if d["kind"] == "map"]
    functions = {}
    for i in range(lib.bpf_num_functions(bpf.module)):
        name = lib.bpf_function_name(bpf.module, i)
        start, size = lib.bpf_function_start(bpf.module, name), lib.bpf_function_size(bpf.module, name)
        if start and size:
            functions[name.decode()] = ctypes.string_at(start, size)
    license = (lib.bpf_module_license(bpf.module) or b"GPL").decode()
    return bpfcache.Entry(maps, functions, license, sorted(tp.decode() for tp in bpf.tracepoint_fds))


class _Cached:
    """A program made from a cache entry: maps first, then every program verified on two threads
    (the kernel's verifier runs in each thread's syscall), the ones needed first at the head of
    the queue."""

    def __init__(self, entry: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.entry = entry
        self.fds: dict[int, int] = {}  # compile-time map fd -> ours
        self.made: list[tuple[dict[str, Any], int]] = []  # everything handed over, or to close
        self.pool = ThreadPoolExecutor(2)
        self.pending: list[Any] = []  # futures not collected yet

    def maps(self) -> list[tuple[dict[str, Any], int]]:
        from agentsight.kernel import bpfcache

        out = []
        for spec in self.entry.maps:
            fd = bpfcache.create_map(spec)
            self.fds[spec.fd] = fd
            out.append(({"kind": "map", "name": spec.name, "type": spec.type, "key_size": spec.key_size,
                         "value_size": spec.value_size, "max_entries": spec.max_entries, "flags": spec.flags}, fd))
        self.made += out
        return out

    def _load(self, name: str, prog_type: int) -> tuple[dict[str, Any], int]:
        from agentsight.kernel import bpfcache

        if name not in self.entry.functions:
            raise bpfcache.CacheError(f"the entry has no function {name}")
        code = bpfcache.relocate(self.entry.functions[name], self.fds)
        return {"kind": "prog", "name": name, "type": prog_type}, bpfcache.load_program(
            name, prog_type, code, self.entry.license)

    def submit(self, programs: list[tuple[str, int]]) -> list[Any]:
        """Queue ``programs`` ((name, type)) for loading; their futures."""
        futures = [self.pool.submit(self._load, name, prog_type) for name, prog_type in programs]
        self.pending += futures
        return futures

    def collect(self, futures: list[Any]) -> list[tuple[dict[str, Any], int]]:
        """What ``futures`` made (kept in ``made``); the first refusal is raised once all are done."""
        error: BaseException | None = None
        out = []
        for future in futures:
            self.pending.remove(future)
            try:
                out.append(future.result())
            except BaseException as exc:  # noqa: B036 - re-raised below, after the others are collected
                error = error or exc
        self.made += out
        if error is not None:
            raise error
        return out

    def attach(self, tracepoints: list[str], progs: list[tuple[dict[str, Any], int]]) -> None:
        """Attach each autoloaded tracepoint program, as bcc's autoload did."""
        from agentsight.kernel import libbpf

        for tp, (desc, prog_fd) in zip(tracepoints, progs, strict=True):
            category, _, event = tp.partition(":")
            fd = libbpf.attach_tracepoint(prog_fd, category, event)
            self.made.append(({"kind": "tracepoint", "target": tp, "program": desc["name"]}, fd))

    def close(self) -> None:
        """Stop loading and let go of everything made (after a failure)."""
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)
        for future in self.pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.made.append(future.result())
        self.pending.clear()
        for _, fd in self.made:
            try:
                os.close(fd)
            except OSError:
                pass
        self.made.clear()


def _from_cache(sock: socket.socket, request: dict[str, Any], entry: Any) -> bool:
    """Hand over the program built from ``entry``; False (nothing sent, nothing kept) when the kernel
    refused a part of it: the caller compiles."""
    from agentsight.kernel import bpfcache, libbpf

    cached = _Cached(entry)
    tracepoints = list(entry.tracepoints)
    autoload = [("tracepoint__" + tp.replace(":", "__"), libbpf.PROG_TRACEPOINT) for tp in tracepoints]
    programs = [(fn, kind) for fn, kind in request.get("programs", [])]
    later = [(fn, kind) for fn, kind in request.get("later", [])]
    try:
        cached.maps()
        autoload_futures, program_futures = cached.submit(autoload), cached.submit(programs)
        later_futures = cached.submit(later)
        progs = cached.collect(autoload_futures)
        cached.attach(tracepoints, progs)
        cached.collect(program_futures)
    except (bpfcache.CacheError, libbpf.BpfError) as exc:
        cached.close()
        print(f"agentsight: bpf/{request['name']}.bpf.c: the compiled copy in the cache was not used ({exc}); "
              "compiling", file=sys.stderr)
        return False
    send(sock, cached.made, "batch" if later else "all", cache="hit")
    if later:
        sent = len(cached.made)
        try:
            cached.collect(later_futures)
        except (bpfcache.CacheError, libbpf.BpfError) as exc:
            # The first batch runs already: the later programs are reported missing, as after a compile.
            _tell(sock, f"the kernel rejected a program of bpf/{request['name']}.bpf.c from the compile cache: {exc}")
            return True
        send(sock, cached.made[sent:], "all")
    return True


def _cached_entry(request: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(cache directory, key, entry or None) for ``request``; (None, None, None) when the cache is off."""
    from agentsight.kernel import bpfcache

    directory = bpfcache.cache_dir()
    if directory is None or "text" not in request:
        return None, None, None
    key = bpfcache.entry_key(request["text"], request.get("cflags", []))
    try:
        return directory, key, bpfcache.read(directory, key)
    except bpfcache.CacheError as exc:
        print(f"agentsight: bpf/{request['name']}.bpf.c: {exc}; compiling", file=sys.stderr)
        return directory, key, None


def _store(directory: Any, key: str, bpf: Any, lib: Any, name: str) -> None:
    """Keep the compiled program for the next load (a failure is one line: the next load compiles)."""
    from agentsight.kernel import bpfcache

    try:
        entry = _bcc_entry(bpf, lib)
        if entry is not None:
            bpfcache.write(directory, key, entry)
    except (OSError, bpfcache.CacheError) as exc:
        print(f"agentsight: bpf/{name}.bpf.c: could not keep the compiled program in {directory}: {exc}",
              file=sys.stderr)


def main() -> None:
    """Load from the compile cache, or compile; hand over what the source needs now, then the
    ``later`` programs."""
    # Ctrl-C reaches the whole process group: the source decides (it kills this process, or
    # exits, and the next send fails: SIGPIPE stays ignored, Python's default).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the agentsight package (-P left it out)
    sock = socket.socket(fileno=int(sys.argv[1]))
    code = 0
    try:
        request = json.loads(sys.stdin.buffer.read())
        directory, key, entry = _cached_entry(request)
        if entry is None or not _from_cache(sock, request, entry):
            _compile_and_send(sock, request, directory, key)
    except SourceGone:
        code = 1
    except LoadError as exc:
        code = _tell(sock, str(exc))
    except Exception as exc:  # a bug here: still one line for the source, the traceback on stderr
        import traceback

        traceback.print_exc()
        code = _tell(sock, f"the eBPF loader failed: {type(exc).__name__}: {exc}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _compile_and_send(sock: socket.socket, request: dict[str, Any], directory: Any, key: Any) -> None:
    """The bcc path: compile, hand over, load and hand over the ``later`` programs, keep the entry."""
    bpf = compile_program(request)
    import bcc

    prog_types: dict[str, int] = {}
    load_programs(bpf, request["name"], request.get("programs", []), prog_types)
    later = request.get("later", [])
    sent = _objects(bpf, bcc.lib, prog_types)
    send(sock, sent, "batch" if later else "all", cache="miss" if directory is not None else "off")
    if later:
        load_programs(bpf, request["name"], later, prog_types)
        fds = {fd for _, fd in sent}
        send(sock, [(desc, fd) for desc, fd in _objects(bpf, bcc.lib, prog_types) if fd not in fds], "all")
    if directory is not None:
        _store(directory, key, bpf, bcc.lib, request["name"])


if __name__ == "__main__":
    main()
