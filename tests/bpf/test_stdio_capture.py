"""The stdio source against real children: JSON-RPC-like lines, readv/writev, cuts, filters, drops."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

import pytest

from agentsight.actors.sources.stdio import StdioSource
from agentsight.event import Event

pytestmark = pytest.mark.bpf

PYTHON = "/usr/bin/python3"


SOURCE = StdioSource  # what the source_factory fixture (conftest.py) opens


def drain(src: StdioSource, pid: int, want: int, timeout: float = 5.0) -> list[Event]:
    """Poll until ``want`` events of ``pid`` arrived (or the deadline); return that pid's events."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sum(e.pid == pid for e in events) < want:
        events.extend(src.poll(0.05))
    events.extend(src.stop())
    return [e for e in events if e.pid == pid]


CHILD = """
import os, sys
os.write(1, b'{"jsonrpc":"2.0","id":1,"result":{}}\\n')
line = sys.stdin.buffer.readline()
os.write(1, b'echo:' + line)
os.write(2, b'log line\\n')
"""


def test_child_stdio_is_captured(source_factory: Callable[..., StdioSource]) -> None:
    # Follow this test process's tree, so the child is traced from its first write.
    src = source_factory(pids=[os.getpid()])
    proc = subprocess.Popen([PYTHON, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.communicate(b'{"jsonrpc":"2.0","method":"ping"}\n')
    events = drain(src, proc.pid, 4)
    seen = [(e.data["fd"], e.data["dir"], e.data["bytes"]) for e in events]
    assert seen == [
        (1, "write", b'{"jsonrpc":"2.0","id":1,"result":{}}\n'),
        (0, "read", b'{"jsonrpc":"2.0","method":"ping"}\n'),
        (1, "write", b'echo:{"jsonrpc":"2.0","method":"ping"}\n'),
        (2, "write", b"log line\n"),
    ]
    assert out == seen[0][2] + seen[2][2] and err == seen[3][2]
    assert all(e.data["len"] == len(e.data["bytes"]) and not e.data["truncated"] for e in events)
    assert src.stats["kernel_lost"] == 0


VECTORED = """
import os
os.writev(1, [b"a" * 10, b"b" * 20, b"c"])
bufs = [bytearray(5), bytearray(100)]
n = os.readv(0, bufs)
os.writev(2, [bytes(bufs[0]), bytes(bufs[1][:n - 5])])
os.writev(1, [b"x" * 600, b"", b"y" * 600, b"z" * 10])
os.writev(1, [str(i).encode() for i in range(10)])
"""


def test_readv_writev_are_captured(source_factory: Callable[..., StdioSource]) -> None:
    src = source_factory(pids=[os.getpid()], max_bytes=1000)
    proc = subprocess.Popen([PYTHON, "-c", VECTORED], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.communicate(b"hello world\n")
    assert proc.returncode == 0, err
    events = drain(src, proc.pid, 5)
    seen = [tuple(e.data[k] for k in ("fd", "dir", "bytes", "len", "truncated")) for e in events]
    assert seen == [
        (1, "write", b"a" * 10 + b"b" * 20 + b"c", 31, False),
        # 12 bytes read across the two buffers: 5 in the first, 7 in the second.
        (0, "read", b"hello world\n", 12, False),
        (2, "write", b"hello world\n", 12, False),
        # Over max_bytes: the second 600 are cut at 400, the empty iovec is skipped.
        (1, "write", b"x" * 600 + b"y" * 400, 1210, True),
        # Ten iovecs: the first eight are captured, len counts all ten.
        (1, "write", b"01234567", 10, True),
    ]
    assert out == b"a" * 10 + b"b" * 20 + b"c" + b"x" * 600 + b"y" * 600 + b"z" * 10 + b"0123456789"
    assert err == b"hello world\n"
    assert src.stats["truncated"] == 2 and src.stats["kernel_lost"] == 0


@pytest.mark.parametrize("max_bytes", [1, 16384])
def test_writev_at_the_max_bytes_bounds(source_factory: Callable[..., StdioSource], max_bytes: int) -> None:
    # The verifier's bounds and the scratch size depend on max_bytes: load both ends.
    src = source_factory(pids=[os.getpid()], max_bytes=max_bytes)
    code = "import os; os.writev(1, [b'', b'q' * 20000, b'r'])"
    proc = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE)
    out, _ = proc.communicate()
    events = drain(src, proc.pid, 1)
    assert out == b"q" * 20000 + b"r"
    assert [(e.data["bytes"], e.data["len"], e.data["truncated"]) for e in events] == [
        (b"q" * max_bytes, 20001, True)]


def test_pid_filter_cut_and_all_fds(source_factory: Callable[..., StdioSource]) -> None:
    code = (
        "import os, sys\n"
        "sys.stdin.buffer.read(1)\n"  # wait until the source is open
        "os.write(1, b'a' * 10000)\n"
        "r, w = os.pipe()\n"
        "os.write(w, b'on a pipe')\n"
    )
    proc = subprocess.Popen([PYTHON, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    narrow = source_factory(pid=proc.pid, max_bytes=1000)
    wide = source_factory(pid=proc.pid, all_fds=True)
    proc.communicate(b"g")
    cut = [e for e in drain(narrow, proc.pid, 2) if e.data["dir"] == "write"]
    assert len(cut) == 1
    assert cut[0].data["bytes"] == b"a" * 1000
    assert cut[0].data["len"] == 10000 and cut[0].data["truncated"] is True
    assert narrow.stats["truncated"] == 1
    writes = [e.data for e in drain(wide, proc.pid, 3) if e.data["dir"] == "write"]
    assert [w["bytes"] for w in writes] == [b"a" * 8192, b"on a pipe"]
    assert writes[1]["fd"] > 2


def test_uid_filter(source_factory: Callable[..., StdioSource]) -> None:
    nobody = 65534
    src = source_factory(pids=[os.getpid()], uid=nobody)
    mine = subprocess.run([PYTHON, "-c", "import os; os.write(1, b'root')"], capture_output=True)
    theirs = subprocess.Popen([PYTHON, "-c", "import os; os.write(1, b'nobody')"], stdout=subprocess.PIPE,
                              user=nobody, group=nobody)
    theirs.communicate()
    assert mine.stdout == b"root"
    events = drain(src, theirs.pid, 1)
    assert [e.data["bytes"] for e in events] == [b"nobody"]
    # Nothing from root's child: every event is of the nobody process.
    assert all(e.pid == theirs.pid for e in events + src.poll(0.05))


def test_overload_drops_are_counted(source_factory: Callable[..., StdioSource]) -> None:
    n = 20_000
    code = f"import os\nfor _ in range({n}): os.write(2, b'x' * 200)\n"
    src = source_factory(pids=[os.getpid()], ring_kib=4)
    proc = subprocess.Popen([PYTHON, "-c", code], stderr=subprocess.DEVNULL)
    proc.wait()
    events = drain(src, proc.pid, n, timeout=0.3)
    lost = src.stats["kernel_lost"]
    assert lost > 0
    assert len(events) < n
    assert len(events) + lost >= n

