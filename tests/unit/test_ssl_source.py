"""The ssl source without the kernel: its C text, record layout, options, probe placement, reassembly,
which processes the periodic library rescan looks at."""

from __future__ import annotations

import ctypes
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from agentsight.actors.sources import ssl as ssl_source
from agentsight.actors.sources.ssl import RECORD, RECORD_FIELDS, SslSource
from agentsight.kernel import bpfprog, tlslibs
from agentsight.pipeline.component import OptionError

HEADER = Path(bpfprog.bpf_dir()) / "ssl.h"


def test_program_text_is_complete_without_root() -> None:
    text = SslSource("ssl", {"pid": 42, "uid": 1000, "comm": "node", "max_bytes": 65536,
                             "handshake": True}).program_text()
    for fn in ("enter_write_ex", "leave_read", "enter_read_ex_callee", "leave_callee", "enter_handshake"):
        assert re.search(rf"^int {fn}\(struct pt_regs \*ctx\)", text, re.M), fn
    for define in ("#define FILTER_PID 42", "#define FILTER_UID 1000", '#define FILTER_COMM "node"',
                   "#define FILTER_COMM_LEN 4",
                   "#define SSL_MAX_BYTES 65536", "#define SSL_MAX_CHUNKS 4", "#define SSL_HANDSHAKE 1"):
        assert define in text
    assert "struct ssl_record {" in text and '#include "ssl.h"' not in text


C_TYPES = {"__u64": "Q", "__s64": "q", "__u32": "I", "__s32": "i", "__u16": "H", "__u8": "B"}


def test_python_record_mirrors_the_header() -> None:
    body = HEADER.read_text().split("struct ssl_record {", 1)[1].split("};", 1)[0]
    fields = re.findall(r"^\s*(\w+)\s+(\w+)(?:\[(\d+)\])?;", body, re.M)
    assert tuple(name for _, name, _ in fields) == RECORD_FIELDS
    fmt = "<" + "".join(f"{n}s" if n else C_TYPES[t] for t, _, n in fields)
    assert fmt == RECORD.format
    assert RECORD.size % 8 == 0


@pytest.mark.parametrize("options, problem", [
    ({"max_bytes": 0}, "max_bytes"),
    ({"max_bytes": 5 << 20}, "max_bytes"),
    ({"ring_kib": 12}, "ring_kib"),
    ({"comm": "a\tb"}, "comm"),
    ({"comm": "x" * 16}, "comm"),
    ({"tree": True}, "tree"),
    ({"binary_path": [3]}, "binary_path"),
])
def test_bad_options_are_one_line_errors(options: dict[str, object], problem: str) -> None:
    with pytest.raises(OptionError) as err:
        SslSource("ssl", options)
    assert problem in str(err.value) and "\n" not in str(err.value)


class FakeElf:
    """Code bytes at addresses, as tlslibs._Elf would read them from a file."""

    def __init__(self, code: dict[int, bytes], x86_64: bool = True) -> None:
        self._code = code
        self.x86_64 = x86_64

    def code(self, addr: int, size: int) -> bytes:
        for start, data in self._code.items():
            if start <= addr and addr + size <= start + len(data):
                return data[addr - start:addr - start + size]
        return b""


def wrapper(callee_rel: int, clamp: bytes = b"\x31\xd2\x85\xc0\x0f\x48\xc2") -> bytes:
    """libssl's SSL_write_ex: sub $8,%rsp; call rel32; clamp; add $8,%rsp; ret."""
    return b"\x48\x83\xec\x08\xe8" + struct.pack("<i", callee_rel) + clamp + b"\x48\x83\xc4\x08\xc3"


def plan(code: dict[int, bytes], func: str = "SSL_write_ex", x86_64: bool = True) -> tlslibs.ProbeSite:
    return tlslibs._plan(FakeElf(code, x86_64), func, 0x1000, len(code[0x1000]))  # type: ignore[arg-type]


def test_verified_wrapper_probes_the_call_and_the_internal_function() -> None:
    # call target = 0x1000 + 9 + 0x100
    site = plan({0x1000: wrapper(0x100), 0x1109: b"\x41\x56\x41\x55"})
    assert (site.entry, site.ret, site.via_callee) == (0x1004, 0x1109, True)


@pytest.mark.parametrize("code, func, x86_64", [
    ({0x1000: wrapper(0x100), 0x1109: b"\x48\x83\xec\x30"}, "SSL_write_ex", True),  # internal starts with sub
    ({0x1000: wrapper(0x100, clamp=b"\x90" * 7), 0x1109: b"\x55"}, "SSL_write_ex", True),  # result not clamped
    ({0x1000: wrapper(0x100), 0x1109: b"\x55"}, "SSL_write", True),  # not an _ex function
    ({0x1000: wrapper(0x100), 0x1109: b"\x55"}, "SSL_read_ex", False),  # not x86-64
    ({0x1000: b"\x55\x48\x89\xe5" + wrapper(0x100)[4:]}, "SSL_read_ex", True),  # push %rbp prologue
    ({0x1000: wrapper(0x100)}, "SSL_read_ex", True),  # call target outside the code
])
def test_anything_unverified_keeps_the_probes_at_the_symbol(code: dict[int, bytes], func: str, x86_64: bool) -> None:
    site = plan(code, func, x86_64)
    assert (site.entry, site.ret, site.via_callee) == (0x1000, 0x1000, False)


def test_inspect_elf_on_the_system_libssl() -> None:
    paths = tlslibs.system_library_paths()
    libs = [lib for lib in map(tlslibs.inspect_elf, paths) if lib is not None]
    if not libs:
        pytest.skip("no OpenSSL libssl in the standard library directories")
    assert {site.func for site in libs[0].sites} == set(tlslibs.TLS_FUNCS)
    assert tlslibs.inspect_elf("/bin/sh") is None


def record(tid: int, call_id: int, offset: int, cap_len: int, chunk: bytes, moved: int | None = None,
           flags: int = 0, func: int = 3) -> tuple[tuple[object, ...], bytes]:
    head = RECORD.unpack(RECORD.pack(1000, 7, 0xABC, call_id, cap_len if moved is None else moved, 10, tid, 0,
                                     offset, cap_len, len(chunk), 1, func, flags, b"python3", -1, 0, 0, 0, b""))
    return head, chunk


def test_chunks_reassemble_per_call_even_interleaved() -> None:
    src = SslSource("ssl")
    a = bytes(range(256)) * 100
    b = b"y" * 20000
    for head, chunk in [record(1, 5, 0, len(a), a[:16384]), record(2, 6, 0, len(b), b[:16384]),
                        record(2, 6, 16384, len(b), b[16384:]), record(1, 5, 16384, len(a), a[16384:])]:
        src._on_chunk(head, chunk)
    got = {e.tid: e.data for e in src._out}
    assert got[1]["bytes"] == a and got[2]["bytes"] == b
    assert got[1]["conn"] == "10:abc" and got[1]["dir"] == "write" and got[1]["func"] == "SSL_write_ex"
    assert all(d["truncated"] == 0 for d in got.values()) and not src._partials


def test_a_call_missing_chunks_is_emitted_short_and_counted() -> None:
    src = SslSource("ssl")
    data = b"z" * 40000
    src._on_chunk(*record(1, 5, 0, len(data), data[:16384]))
    # The kernel lost the rest; the thread's next call flushes the old one.
    src._on_chunk(*record(1, 9, 0, 3, b"abc", func=4))
    first, second = src._out
    assert first.data["bytes"] == data[:16384] and first.data["truncated"] == 40000 - 16384
    assert second.data["bytes"] == b"abc" and second.data["dir"] == "read"
    assert src.stats["incomplete"] == 1


def test_cap_and_read_failures_are_reported_as_truncated() -> None:
    src = SslSource("ssl")
    src._on_chunk(*record(1, 5, 0, 100, b"q" * 100, moved=5000))
    src._on_chunk(*record(2, 6, 0, 16500, b"r" * 16384))
    src._on_chunk(*record(2, 6, 16384, 16500, b"\0" * 116, flags=1))
    capped, failed = src._out
    assert capped.data["truncated"] == 4900 and src.stats["truncated"] == 1
    assert failed.data["bytes"] == b"r" * 16384 and failed.data["truncated"] == 116
    assert src.stats["read_errors"] == 1


MAPS = b"""\
55d0c0a00000-55d0c0a28000 r--p 00000000 fd:01 1311                       /usr/bin/python3.12
55d0c0a28000-55d0c0d1c000 r-xp 00028000 fd:01 1311                       /usr/bin/python3.12
55d0c2e7d000-55d0c2f9e000 rw-p 00000000 00:00 0                          [heap]
7f1c2a200000-7f1c2a2a0000 r-xp 00022000 fd:01 2048                       /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a300000-7f1c2a320000 r-xp 00000000 00:2a 77                         /tmp/my lib/libssl.so.3
7f1c2a400000-7f1c2a420000 r-xp 00000000 fd:01 99                         /tmp/gone.so (deleted)
7f1c2a500000-7f1c2a501000 rw-p 00000000 fd:01 2048                       /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a600000-7f1c2a610000 r-xp 00000000 00:00 0
7ffd1c5f2000-7ffd1c5f4000 r-xp 00000000 00:00 0                          [vdso]
"""


def test_parse_maps_keeps_executable_files_once_with_their_maps_keys() -> None:
    assert tlslibs.parse_maps(MAPS) == [
        ((b"fd:01", b"1311"), "/usr/bin/python3.12"),
        ((b"fd:01", b"2048"), "/usr/lib/x86_64-linux-gnu/libssl.so.3"),
        ((b"00:2a", b"77"), "/tmp/my lib/libssl.so.3"),
    ]


def test_looking_at_a_process_again_stats_nothing_it_already_saw(monkeypatch: pytest.MonkeyPatch) -> None:
    finder = tlslibs.LibraryFinder()
    assert finder.scan_pid(os.getpid()) is not None
    stats: list[str] = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: stats.append(path) or real_stat(path, *a, **k))
    assert finder.scan_pid(os.getpid()) == [] and stats == []
    assert finder.scan_pid(_dead_pid()) is None


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class FakeFinder:
    """scan_pid answers from a table: libraries per pid, None for a process that is gone."""

    def __init__(self, answers: dict[int, list[str] | None]) -> None:
        self.answers = answers
        self.scanned: list[int] = []

    def scan_pid(self, pid: int) -> list[str] | None:
        self.scanned.append(pid)
        return self.answers.get(pid, [])


def rescanning_source(answers: dict[int, list[str] | None], **options: object) -> tuple[SslSource, FakeFinder, list[str]]:
    src = SslSource("ssl", options)
    finder = FakeFinder(answers)
    attached: list[str] = []
    src._finder = finder  # type: ignore[assignment]
    src._attach = attached.append  # type: ignore[assignment, method-assign]
    return src, finder, attached


def exec_record(pid: int) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(RECORD.pack(0, 0, 0, 0, 0, pid, pid, 0, 0, 0, 0, 3, 0, 0, b"sh", -1, 0, 0, 0, b""))


def test_unfiltered_rescan_follows_processes_that_exec_or_call_and_forgets_dead_ones() -> None:
    src, finder, attached = rescanning_source({11: ["/opt/agent/libssl.so.3"], 12: None})
    buf = exec_record(11)
    src._on_record(None, ctypes.addressof(buf), len(buf))
    src._emit(*record(12, 5, 0, 3, b"abc"))
    src._emit(*record(12, 6, 0, 3, b"def"))
    assert src._traced_now() == [11, 10]  # record() says pid 10
    src._rescan_traced()
    assert sorted(finder.scanned) == [10, 11] and attached == ["/opt/agent/libssl.so.3"]
    finder.answers[10] = None
    src._rescan_traced()
    assert src._traced_now() == [11]
    assert src.stats["rescan_passes"] == 2 and src.stats["rescan_pids"] == 4 and "rescan_us" in src.stats


def test_rescan_with_a_pid_filter_looks_at_that_pid_only() -> None:
    src, finder, _ = rescanning_source({}, pid=77)
    src._emit(*record(1, 5, 0, 3, b"abc"))
    src._rescan_traced()
    assert finder.scanned == [77]


def test_rescan_takes_a_bounded_batch_per_pass_and_goes_round(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssl_source, "_RESCAN_MAX_PIDS", 2)
    src, finder, _ = rescanning_source({})
    for pid in range(1, 6):
        src._watch(pid)
    for _ in range(3):
        src._rescan_traced()
    assert finder.scanned[:2] == [1, 2] and finder.scanned[2:4] == [3, 4] and set(finder.scanned) == {1, 2, 3, 4, 5}


def test_watched_processes_are_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssl_source, "_WATCH_MAX", 3)
    src = SslSource("ssl")
    for pid in (1, 2, 3, 2, 4):
        src._watch(pid)
    assert src._traced_now() == [2, 3, 4]


def test_rescan_period_is_live_and_zero_turns_it_off() -> None:
    src = SslSource("ssl")
    assert src.options["rescan_s"] == 5.0
    assert src.reconfigure({"rescan_s": 1}) and src._next_rescan != float("inf")
    assert src.reconfigure({"rescan_s": 0}) and src._next_rescan == float("inf")
    with pytest.raises(OptionError):
        SslSource("ssl", {"rescan_s": -1})
