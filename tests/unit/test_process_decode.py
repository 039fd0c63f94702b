"""Decoding process.bpf.c records into events, without bcc."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from agentsight.actors.sources import process as p
from agentsight.actors.sources.process import decode_record, open_flag_names, sockaddr


def wall(boot_ns: int) -> int:
    return boot_ns + 1_000


def header(kind: int, pid: int = 42, tid: int = 43, comm: bytes = b"agent") -> bytes:
    return p.HEADER.pack(kind, pid, tid, 1000, 5_000, comm)


def test_exec_argv_and_flags() -> None:
    args = b"python3\0-m\0agent\0"
    raw = header(p.KIND_EXEC) + p.EXEC.pack(7, 42, len(args), 3, p.EXEC_ARGS_TRUNCATED, b"/usr/bin/python3") + args
    ev = decode_record(raw, wall, "src")
    assert ev is not None and ev.topic == "process.exec"
    assert (ev.pid, ev.tid, ev.comm, ev.ts_ns, ev.source) == (42, 42, "agent", 6_000, "src")
    assert ev.data == {"ppid": 7, "filename": "/usr/bin/python3", "argv": ["python3", "-m", "agent"],
                       "argv_truncated": True, "uid": 1000}


def test_exec_without_entry_and_other_thread() -> None:
    raw = header(p.KIND_EXEC) + p.EXEC.pack(7, 50, 0, 0, p.EXEC_ARGS_MISSING, b"/bin/ls")
    ev = decode_record(raw, wall, "src")
    assert ev is not None
    assert ev.data["argv"] == [] and ev.data["argv_truncated"] and ev.data["argv_missing"]
    assert ev.data["old_tid"] == 50


def test_fork_is_about_the_child() -> None:
    ev = decode_record(header(p.KIND_FORK, pid=10, tid=11) + p.FORK.pack(99, 0), wall, "src")
    assert ev is not None and ev.topic == "process.fork"
    assert ev.pid == 99 and ev.data["ppid"] == 10 and ev.data["child_pid"] == 99 and ev.data["parent_tid"] == 11


@pytest.mark.parametrize("flags, code, sig, expect", [
    (p.EXIT_START_KNOWN | p.EXIT_CODE_KNOWN, 3, 0, (3, None, None, 2.5)),
    (p.EXIT_SIGNALED, 0, 9, (None, 9, "SIGKILL", None)),
    (p.EXIT_START_KNOWN | p.EXIT_SIGNALED, 0, 15, (None, 15, "SIGTERM", 2.5)),
    (p.EXIT_START_KNOWN | p.EXIT_SIGNALED, 0, 36, (None, 36, "SIGRTMIN+2", 2.5)),
])
def test_exit(flags: int, code: int, sig: int, expect: tuple[object, ...]) -> None:
    raw = header(p.KIND_EXIT) + p.EXIT.pack(1, flags, code, sig, 2_500_000)
    ev = decode_record(raw, wall, "src")
    assert ev is not None and ev.topic == "process.exit"
    d = ev.data
    assert (d["exit_code"], d["signal"], d["signal_name"], d["duration_ms"]) == expect


def test_open() -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    raw = header(p.KIND_OPEN) + p.OPEN.pack(-2, 5, flags, 0o644, p.OPEN_PATH_TRUNCATED, b"rel/path\0junk")
    ev = decode_record(raw, wall, "src")
    assert ev is not None and ev.topic == "file.open"
    assert ev.data == {"path": "rel/path", "flags": flags, "flag_names": ["O_WRONLY", "O_CREAT", "O_CLOEXEC"],
                       "mode": 0o644, "ret": -2, "count": 1, "dfd": 5, "path_truncated": True}


def test_open_flag_names_tmpfile_is_not_directory() -> None:
    assert open_flag_names(os.O_RDWR | os.O_TMPFILE) == ["O_RDWR", "O_TMPFILE"]
    assert open_flag_names(os.O_RDONLY | os.O_DIRECTORY) == ["O_RDONLY", "O_DIRECTORY"]


def test_connect_families() -> None:
    v4 = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 8080) + socket.inet_pton(socket.AF_INET, "127.0.0.1")
    v6 = (struct.pack("<H", socket.AF_INET6) + struct.pack(">H", 443) + b"\0" * 4
          + socket.inet_pton(socket.AF_INET6, "::1") + b"\0" * 4)
    unix = struct.pack("<H", socket.AF_UNIX) + b"/run/mcp.sock\0"
    abstract = struct.pack("<H", socket.AF_UNIX) + b"\0mcp-abstract"
    assert sockaddr(v4) == ("ipv4", "127.0.0.1", 8080)
    assert sockaddr(v6) == ("ipv6", "::1", 443)
    assert sockaddr(unix) == ("unix", "/run/mcp.sock", 0)
    assert sockaddr(abstract) == ("unix", "@mcp-abstract", 0)
    assert sockaddr(struct.pack("<H", 16) + b"\0" * 10) is None
    raw = header(p.KIND_CONNECT) + p.CONNECT.pack(-115, 3, len(v4), v4)
    ev = decode_record(raw, wall, "src")
    assert ev is not None and ev.topic == "net.connect"
    assert ev.data == {"family": "ipv4", "address": "127.0.0.1", "port": 8080, "fd": 3, "ret": -115}


def test_unknown_kind() -> None:
    assert decode_record(header(77) + b"\0" * 16, wall, "src") is None
