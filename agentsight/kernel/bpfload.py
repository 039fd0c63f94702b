"""The short-lived loader: compile an eBPF program with bcc, load it, hand its kernel objects over.

Run by :func:`agentsight.kernel.bpfprog.start` as ``python -P bpfload.py FD`` (this file, by path:
it imports only the standard library and bcc, never the agentsight package). It reads one JSON
request on stdin::

    {"name": "ssl", "text": "<the final C>", "cflags": [...],
     "programs": [["enter_write", 2], ...],     # more functions to load: [name, bcc prog type]
     "later": [["enter_seal", 2], ...]}         # to load after the first hand-over

compiles ``text`` with bcc (``BPF(text=...)``, which also loads and attaches every
``TRACEPOINT_PROBE``), loads the ``programs`` asked for, and sends on the unix socket FD
(SOCK_SEQPACKET) the file descriptors of the maps, the programs and the perf events of the
tracepoints it attached, with SCM_RIGHTS: one or more messages, each a JSON header listing
its fds in order, the last one of a batch saying where it ends::

    {"objects": [{"kind": "map", "name": "events", "type": 27, "key_size": 0, "value_size": 0,
                  "max_entries": 16777216},
                 {"kind": "prog", "name": "enter_write", "type": 2},
                 {"kind": "tracepoint", "target": "sched:sched_process_exec",
                  "program": "tracepoint__sched__sched_process_exec"}, ...],
     "end": null | "batch" | "all"}

or one ``{"error": "<one line>"}``. The ``later`` programs (verified while the source already
runs: the AEAD ones take ~1 s together) follow as a second batch, or an error. Then it exits at once (``os._exit``: bcc's atexit cleanup
must not detach what it handed over). The kernel keeps every object alive as long as some
process holds an fd to it, so the receiver owns them from then on; bcc and LLVM (~100 MB)
leave with this process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
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
                    ("bpf_table_max_entries_id", ctypes.c_size_t)):
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
                     "max_entries": lib.bpf_table_max_entries_id(bpf.module, i)}, fd))
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


def send(sock: socket.socket, objects: list[tuple[dict[str, Any], int]], end: str) -> None:
    """Hand ``objects`` over in messages of at most FDS_PER_MESSAGE fds; the last one says ``end``:
    ``"batch"`` (more will follow: the programs asked for ``later``) or ``"all"``."""
    for start in range(0, len(objects), FDS_PER_MESSAGE) or [0]:
        part = objects[start:start + FDS_PER_MESSAGE]
        last = start + FDS_PER_MESSAGE >= len(objects)
        header = {"objects": [desc for desc, _ in part], "end": end if last else None}
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


def main() -> None:
    """Compile, hand over what the source needs now, then load and hand over the ``later`` programs."""
    # Ctrl-C reaches the whole process group: the source decides (it kills this process, or
    # exits, and the next send fails: SIGPIPE stays ignored, Python's default).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(sys.argv[1]))
    code = 0
    try:
        request = json.loads(sys.stdin.buffer.read())
        bpf = compile_program(request)
        import bcc

        prog_types: dict[str, int] = {}
        load_programs(bpf, request["name"], request.get("programs", []), prog_types)
        later = request.get("later", [])
        sent = _objects(bpf, bcc.lib, prog_types)
        send(sock, sent, "batch" if later else "all")
        if later:
            load_programs(bpf, request["name"], later, prog_types)
            fds = {fd for _, fd in sent}
            send(sock, [(desc, fd) for desc, fd in _objects(bpf, bcc.lib, prog_types) if fd not in fds], "all")
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


if __name__ == "__main__":
    main()
