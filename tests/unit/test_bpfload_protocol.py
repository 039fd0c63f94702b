"""The loader's hand-over protocol and the ELF offsets, without root or bcc (pipes stand in for
the kernel objects); tests/bpf/test_bpfload.py runs the real thing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from agentsight.kernel import bpfload, libbpf
from agentsight.kernel.bpfprog import BpfUnavailable, Loading


@pytest.fixture
def channel() -> Iterator[tuple[socket.socket, Loading]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    loading = Loading("test", proc, ours)
    yield theirs, loading
    theirs.close()
    loading.cancel()


def fds_open() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def objects(n: int, kind: str = "prog") -> list[tuple[dict[str, object], int]]:
    out: list[tuple[dict[str, object], int]] = []
    for i in range(n):
        r, w = os.pipe()
        os.close(w)
        if kind == "prog":
            out.append(({"kind": "prog", "name": f"p{i}", "type": 2}, r))
        elif kind == "map":
            out.append(({"kind": "map", "name": f"m{i}", "type": 1, "key_size": 4, "value_size": 8,
                         "max_entries": 16}, r))
        else:
            out.append(({"kind": "tracepoint", "target": f"sched:e{i}", "program": f"tracepoint__sched__e{i}"}, r))
    return out


def test_a_batch_larger_than_one_message_arrives_whole(channel: tuple[socket.socket, Loading]) -> None:
    theirs, loading = channel
    sent = objects(450) + objects(3, "map") + objects(2, "tracepoint")
    bpfload.send(theirs, sent, "all")
    for _, fd in sent:
        os.close(fd)  # the loader's copies go with it
    prog = loading.wait(timeout=10)
    assert len(prog.progs) == 450 and set(prog.maps) == {"m0", "m1", "m2"}
    assert prog["m1"].key_size == 4 and prog[b"m2"].value_size == 8
    assert ("tracepoint", "sched:e1", "tracepoint__sched__e1") in prog.links
    assert not prog.loading and loading.sock is None
    before = len(fds_open())
    prog.close()
    assert len(fds_open()) == before - 455


def test_later_programs_arrive_in_a_second_batch_or_say_why_not(channel: tuple[socket.socket, Loading]) -> None:
    theirs, loading = channel
    bpfload.send(theirs, objects(2), "batch")
    prog = loading.wait(timeout=10)
    assert prog.loading and not loading.ready()
    late = [({"kind": "prog", "name": "late", "type": 5}, fd) for _, fd in objects(1)]
    bpfload.send(theirs, late, "all")
    os.close(late[0][1])
    assert loading.ready()
    prog.poll(0)
    assert not prog.loading and prog.program_fd("late") > 0
    prog.close()


def test_a_late_failure_leaves_the_program_running(channel: tuple[socket.socket, Loading]) -> None:
    theirs, loading = channel
    bpfload.send(theirs, objects(1), "batch")
    prog = loading.wait(timeout=10)
    theirs.send(b'{"error": "the kernel rejected bpf/test.bpf.c:late (...)"}')
    with pytest.raises(libbpf.BpfError, match=r"bpf/test.bpf.c:late is not loaded: the kernel rejected"):
        prog.program_fd("late")
    assert prog.program_fd("p0") > 0
    prog.close()


def test_an_error_or_a_dead_loader_is_one_line_and_nothing_leaks(channel: tuple[socket.socket, Loading]) -> None:
    theirs, loading = channel
    before = fds_open()
    theirs.send(b'{"error": "could not load bpf/test.bpf.c: Failed to compile BPF module <text>"}')
    with pytest.raises(BpfUnavailable, match="^could not load bpf/test.bpf.c: Failed to compile"):
        loading.wait(timeout=10)
    assert fds_open() <= before


def test_a_loader_that_dies_mid_batch_is_said(channel: tuple[socket.socket, Loading]) -> None:
    theirs, loading = channel
    sent = objects(2)
    socket.send_fds(theirs, [b'{"objects": [{"kind": "prog", "name": "a", "type": 2}, '
                             b'{"kind": "prog", "name": "b", "type": 2}], "end": null}'], [fd for _, fd in sent])
    for _, fd in sent:
        os.close(fd)
    theirs.close()
    before = fds_open()
    with pytest.raises(BpfUnavailable, match=r"^the eBPF loader of bpf/test.bpf.c exited with code 0 before"):
        loading.wait(timeout=10)
    assert fds_open() < before  # the two fds it had received are closed, and its socket


def test_file_offset_of_an_address_follows_the_program_headers() -> None:
    path = os.path.realpath(sys.executable)
    with open(path, "rb") as f:
        elf = ELFFile(f)
        sym = elf.get_section_by_name(".dynsym").get_symbol_by_name("Py_Initialize")[0]
        addr = sym["st_value"]
        seg = next(s for s in elf.iter_segments()
                   if s["p_type"] == "PT_LOAD" and s["p_vaddr"] <= addr < s["p_vaddr"] + s["p_memsz"])
        assert libbpf.file_offset(path, addr) == addr - seg["p_vaddr"] + seg["p_offset"]
    with pytest.raises(libbpf.BpfError, match="in no executable segment"):
        libbpf.file_offset(path, 0)
    with pytest.raises(libbpf.BpfError, match="not an ELF file"):
        libbpf.file_offset(str(Path(__file__)), 0x1000)


def test_map_keys_and_values_must_have_the_map_sizes() -> None:
    m = libbpf.Map("m", -1, 1, 4, 8, 16)
    with pytest.raises(ValueError, match="key of 2 bytes, the map's keys have 4"):
        m.lookup(b"ab")
    with pytest.raises(ValueError, match="value of 4 bytes, the map's values have 8"):
        m.update(b"abcd", b"1234")
