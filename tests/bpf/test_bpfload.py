"""The loader child and the libbpf runtime, on real kernel objects (root).

A program is compiled by bcc in a child that hands its fds over and exits; everything here
(maps, ring buffers, uprobes, tracepoints) then works on those fds without bcc.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from agentsight.kernel import bpfcache, bpfprog, libbpf
from agentsight.kernel.bpfprog import KPROBE, TRACEPOINT, BpfUnavailable, Program

ROOT = Path(__file__).resolve().parents[2]

# A record per probe hit: the configured value, the pid, whether it was the return.
RECORD = struct.Struct("=QII")
TEXT = r"""
#include <uapi/linux/ptrace.h>
BPF_RINGBUF_OUTPUT(events, 8);
BPF_HASH(config, u32, u64, 16);       // 0: the value to report, 1: the pid the syscall counter watches
BPF_PERCPU_ARRAY(counts, u64, 3);     // 0: probe hits, 1: execs, 2: getppid calls of the watched pid
BPF_HASH(seen, u32, u32, 64);         // pids that hit the probe

struct rec { u64 value; u32 pid; u32 ret; };

static __always_inline int hit(u32 ret)
{
    u32 zero = 0;
    u64 *value = config.lookup(&zero);
    if (!value)
        return 0;
    u64 *n = counts.lookup(&zero);
    if (n)
        *n += 1;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    seen.update(&pid, &ret);
    struct rec *r = events.ringbuf_reserve(sizeof(struct rec));
    if (!r)
        return 0;
    r->value = *value;
    r->pid = pid;
    r->ret = ret;
    events.ringbuf_submit(r, 0);
    return 0;
}

int on_call(struct pt_regs *ctx) { return hit(0); }
int on_return(struct pt_regs *ctx) { return hit(1); }

int on_getppid(void *ctx)
{
    u32 one = 1, two = 2;
    u64 *watched = config.lookup(&one);
    if (!watched || *watched != (bpf_get_current_pid_tgid() >> 32))
        return 0;
    u64 *n = counts.lookup(&two);
    if (n)
        *n += 1;
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 one = 1;
    u64 *n = counts.lookup(&one);
    if (n)
        *n += 1;
    return 0;
}
"""

TARGET_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) long agentsight_probe_me(long x) { __asm__ volatile(""); return x * 2; }
int main(void) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        printf("%ld\n", agentsight_probe_me(atol(line)));
        fflush(stdout);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The probed program, built as a PIE (ET_DYN) and as a fixed-address executable (ET_EXEC)."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("targets")
    (d / "target.c").write_text(TARGET_C)
    out = {}
    for kind, flags in (("pie", ["-fPIE", "-pie"]), ("exec", ["-no-pie"])):
        subprocess.run(["cc", "-O1", *flags, "-o", str(d / kind), str(d / "target.c")], check=True)
        out[kind] = d / kind
    return out


def symbol(path: Path, name: str) -> int:
    with open(path, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]
        return int(sym["st_value"])


class Target:
    """A running target: ``call(n)`` makes it call the probed function once."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def call(self, n: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == str(n * 2)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture(params=["compiled", "from-cache"])
def program(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Program]:
    """The test program, compiled by bcc, or made from the compile cache's entry of it (bcc not involved)."""
    monkeypatch.setenv(bpfcache.ENV, str(tmp_path / "bpf-cache"))
    args = dict(programs=[("on_call", KPROBE), ("on_return", KPROBE)], later=[("on_getppid", TRACEPOINT)], text=TEXT)
    if request.param == "from-cache":
        first = bpfprog.start("loadtest", **args).wait()  # type: ignore[arg-type]
        first.complete()
        first.close()
    prog = bpfprog.start("loadtest", **args).wait()  # type: ignore[arg-type]
    assert prog.cache == ("hit" if request.param == "from-cache" else "miss")
    yield prog
    prog.close()


def read_records(prog: Program, want: int, timeout: float = 5.0) -> list[tuple[int, int, int]]:
    got: list[tuple[int, int, int]] = []

    def on_record(_ctx: object, data: int, size: int) -> None:
        import ctypes
        assert size == RECORD.size
        got.append(RECORD.unpack(ctypes.string_at(data, size)))

    prog.open_ring_buffer("events", on_record)
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        prog.poll(50)
    return got


def u32(n: int) -> bytes:
    return struct.pack("=I", n)


def u64(n: int) -> bytes:
    return struct.pack("=Q", n)


def test_the_loader_hands_everything_over_and_exits(program: Program) -> None:
    assert set(program.maps) == {"events", "config", "counts", "seen"}
    counts = program["counts"]
    assert (counts.type, counts.key_size, counts.value_size, counts.max_entries) == (6, 4, 8, 3) and counts.percpu
    assert program["events"].type == libbpf.MAP_RINGBUF
    assert {"on_call", "on_return", "tracepoint__sched__sched_process_exec"} <= set(program.progs)
    assert list(program.links) == [("tracepoint", "sched:sched_process_exec", "tracepoint__sched__sched_process_exec")]
    # The later program arrives by itself (or when first used); the loader is gone then.
    deadline = time.monotonic() + 30
    while program.loading and time.monotonic() < deadline:
        program.poll(50)
    assert not program.loading and "on_getppid" in program.progs
    assert all(os.fstat(fd) for fd in program.fds())


def test_a_map_written_here_is_seen_by_a_uprobe_attached_after_the_loader_exited(
        program: Program, targets: dict[str, Path]) -> None:
    program["config"].update(u32(0), u64(4242))
    for kind in ("pie", "exec"):
        target = Target(targets[kind])
        try:
            program.attach_uprobe(str(targets[kind]), symbol(targets[kind], "agentsight_probe_me"), "on_call",
                                  pid=target.pid)
            program.attach_uretprobe(str(targets[kind]), symbol(targets[kind], "agentsight_probe_me"),
                                     "on_return", pid=target.pid)
            target.call(5)
            target.call(6)
        finally:
            target.close()
    records = read_records(program, 8)
    assert sorted(r[2] for r in records) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert {r[0] for r in records} == {4242}
    assert program["counts"].sum(u32(0)) == 8
    per_cpu = program["counts"].lookup_percpu(u32(0))
    assert per_cpu is not None and len(per_cpu) == libbpf.possible_cpus()
    seen = program["seen"]
    pids = {struct.unpack("=I", k)[0] for k in seen.keys()}
    assert len(pids) == 2
    assert seen.delete(u32(pids.pop())) and not seen.delete(u32(999_999_999))
    assert len(list(seen.items())) == 1


def test_a_pid_filtered_uprobe_fires_in_that_process_only(program: Program, targets: dict[str, Path]) -> None:
    program["config"].update(u32(0), u64(1))
    path = targets["pie"]
    traced, other = Target(path), Target(path)
    try:
        program.attach_uprobe(str(path), symbol(path, "agentsight_probe_me"), "on_call", pid=traced.pid)
        other.call(1)
        traced.call(2)
        other.call(3)
        traced.call(4)  # the ring keeps order: a record of call 3 would come before this one
    finally:
        traced.close()
        other.close()
    records = read_records(program, 2)
    assert [r[1] for r in records] == [traced.pid, traced.pid]


def test_tracepoints_attached_by_the_loader_and_later_here_fire(program: Program) -> None:
    counts = program["counts"]
    before = counts.sum(u32(1))
    subprocess.run(["/bin/true"], check=True)
    assert counts.sum(u32(1)) > before  # sched_process_exec, attached by the loader that is gone
    program["config"].update(u32(1), u64(os.getpid()))
    program.attach_tracepoint("syscalls:sys_enter_getppid", "on_getppid")
    for _ in range(3):
        os.getppid()
    assert counts.sum(u32(2)) == 3


def test_close_detaches_and_leaves_nothing_behind(targets: dict[str, Path]) -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    events_file = Path("/sys/kernel/tracing/uprobe_events")
    probes_before = events_file.read_text() if events_file.exists() else ""
    prog = bpfprog.load("loadtest", programs=[("on_call", KPROBE), ("on_getppid", TRACEPOINT)], text=TEXT)
    prog["config"].update(u32(0), u64(7))
    prog["config"].update(u32(1), u64(os.getpid()))
    path = targets["pie"]
    prog.attach_uprobe(str(path), symbol(path, "agentsight_probe_me"), "on_call")
    prog.attach_tracepoint("syscalls:sys_enter_getppid", "on_getppid")
    prog.open_ring_buffer("events", lambda *_: 0)
    # Keep the counter map alive past close(), to see that the programs no longer run.
    counts = libbpf.Map("counts", os.dup(prog["counts"].fd), 6, 4, 8, 3)
    target = Target(path)
    try:
        target.call(1)
        os.getppid()
        assert (counts.sum(u32(0)), counts.sum(u32(2))) == (1, 1)
        prog.close()
        target.call(2)
        os.getppid()
        assert (counts.sum(u32(0)), counts.sum(u32(2))) == (1, 1)
    finally:
        target.close()
        os.close(counts.fd)
    assert set(os.listdir("/proc/self/fd")) == fds_before
    assert (events_file.read_text() if events_file.exists() else "") == probes_before
    prog.close()  # twice is fine


def test_a_source_process_never_maps_bcc() -> None:
    code = (
        "import os, sys\n"
        "from agentsight.actors.sources.process import ProcessSource\n"
        "src = ProcessSource('p', {'pid': os.getpid(), 'mode': 1})\n"
        "src.open()\n"
        "src.poll(0.1)\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('bcc' in sys.modules, 'libbcc' in maps, 'LLVM' in maps, len(os.listdir(f'/proc/{os.getpid()}/task')))\n"
        "src.stop(); src.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:3] == ["False", "False", "False"]


def test_errors_are_one_line() -> None:
    with pytest.raises(BpfUnavailable) as compile_error:
        bpfprog.load("broken", text="int f(void *ctx) { return undeclared; }")
    assert str(compile_error.value).startswith("could not load bpf/broken.bpf.c:") and "\n" not in str(compile_error.value)
    rejected = TEXT + "int bad(struct pt_regs *ctx) { u64 *p = (u64 *)ctx; return p[4000]; }\n"
    with pytest.raises(BpfUnavailable) as verifier:
        bpfprog.load("loadtest", programs=[("bad", KPROBE)], text=rejected)
    assert str(verifier.value).startswith("the kernel rejected bpf/loadtest.bpf.c:bad ")
    assert "\n" not in str(verifier.value)
    # A program asked for later that the kernel rejects: the rest runs, using it says why.
    prog = bpfprog.load("loadtest", programs=[("on_call", KPROBE)], later=[("bad", KPROBE)], text=rejected)
    try:
        with pytest.raises(libbpf.BpfError) as late:
            prog.attach_uprobe("/bin/true", 0, "bad")
        assert "bpf/loadtest.bpf.c:bad is not loaded: the kernel rejected" in str(late.value)
        with pytest.raises(libbpf.BpfError) as missing:
            prog.attach_tracepoint("syscalls:sys_enter_getppid", "on_getppid")
        assert "on_getppid is not loaded" in str(missing.value)
        with pytest.raises(libbpf.BpfError) as no_tracepoint:
            libbpf.tracepoint_id("syscalls", "sys_enter_nothing_like_this")
        assert "does not exist" in str(no_tracepoint.value)
    finally:
        prog.close()


def test_file_offsets_match_the_program_headers(targets: dict[str, Path]) -> None:
    for kind, path in targets.items():
        addr = symbol(path, "agentsight_probe_me")
        with open(path, "rb") as f:
            elf = ELFFile(f)
            seg = next(s for s in elf.iter_segments()
                       if s["p_type"] == "PT_LOAD" and s["p_vaddr"] <= addr < s["p_vaddr"] + s["p_memsz"])
            expected = addr - seg["p_vaddr"] + seg["p_offset"]
        assert libbpf.file_offset(str(path), addr) == expected, kind
    with pytest.raises(libbpf.BpfError):
        libbpf.file_offset(str(targets["pie"]), 1 << 40)


def test_closing_while_later_programs_are_verified_stops_the_loader() -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    loading = bpfprog.start("loadtest", programs=[("on_call", KPROBE)],
                            later=[("on_return", KPROBE), ("on_getppid", TRACEPOINT)], text=TEXT)
    prog = loading.wait()
    prog.close()
    assert loading.proc.returncode is not None  # killed and reaped, not left behind
    assert set(os.listdir("/proc/self/fd")) == fds_before


def test_the_cache_holds_the_compiled_program_and_an_entry_the_kernel_refuses_is_compiled_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "bpf-cache"
    monkeypatch.setenv(bpfcache.ENV, str(cache))
    args = dict(programs=[("on_call", KPROBE)], later=[("on_getppid", TRACEPOINT)], text=TEXT)
    assert bpfprog.warm(bpfprog.Request("loadtest", {}, [("on_call", KPROBE)], [("on_getppid", TRACEPOINT)],
                                        text=TEXT)) == "miss"
    entries = list(cache.glob("*.json"))
    assert len(entries) == 1
    kept = bpfcache.read(cache, entries[0].stem)
    assert kept is not None and {"on_call", "on_return", "on_getppid"} <= set(kept.functions)
    assert {m.name for m in kept.maps} == {"events", "config", "counts", "seen"}
    assert kept.tracepoints == ["sched:sched_process_exec"]
    # Damage on_call so that the verifier refuses it (r0 = *(u64 *)(r9 + 0): r9 is never set).
    kept.functions["on_call"] = struct.pack("<BBhi", 0x79, 0x09 << 4, 0, 0) + kept.functions["on_call"][8:]
    bpfcache.write(cache, entries[0].stem, kept)
    capfd.readouterr()
    prog = bpfprog.start("loadtest", **args).wait()  # type: ignore[arg-type]
    try:
        assert prog.cache == "miss"  # compiled, and kept again
        prog["config"].update(u32(1), u64(os.getpid()))
        prog.attach_tracepoint("syscalls:sys_enter_getppid", "on_getppid")
        os.getppid()
        assert prog["counts"].sum(u32(2)) == 1
    finally:
        prog.close()
    said = [line for line in capfd.readouterr().err.splitlines() if "cache" in line]
    assert len(said) == 1 and said[0].startswith("agentsight: bpf/loadtest.bpf.c: the compiled copy in the cache "
                                                 "was not used (loading on_call: ")
    again = bpfprog.start("loadtest", **args).wait()  # type: ignore[arg-type]
    assert again.cache == "hit"
    again.close()



def test_the_wait_fd_turns_readable_when_a_ring_has_records(program: Program, targets: dict[str, Path]) -> None:
    """What a source's actor waits on, with its control socket (Source.wait_fd)."""
    import select

    got: list[int] = []
    program.open_ring_buffer("events", lambda _ctx, _data, size: got.append(size))
    fd = program.wait_fd()
    assert fd is not None
    program.poll(0)
    assert select.select([fd], [], [], 0)[0] == []  # nothing to read: not readable
    program["config"].update(u32(0), u64(3))
    path = targets["pie"]
    target = Target(path)
    try:
        program.attach_uprobe(str(path), symbol(path, "agentsight_probe_me"), "on_call", pid=target.pid)
        target.call(1)
    finally:
        target.close()
    assert select.select([fd], [], [], 5)[0] == [fd]
    assert program.poll(0) == 1 and got == [RECORD.size]
    assert select.select([fd], [], [], 0)[0] == []  # read: quiet again
