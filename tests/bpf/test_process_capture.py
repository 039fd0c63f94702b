"""The process source against real processes: lifecycle, parent links, exit causes, files, connects."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentsight.actors.sources.process import ProcessSource
from agentsight.event import Event

pytestmark = pytest.mark.bpf

PYTHON = "/usr/bin/python3"


def collect(src: ProcessSource, done: Callable[[list[Event]], bool], timeout: float = 10.0) -> list[Event]:
    """Poll until ``done(events)`` or the deadline; then drain what is buffered."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(events):
        events.extend(src.poll(0.05))
    events.extend(src.stop())
    return events


def exited(pid: int) -> Callable[[list[Event]], bool]:
    return lambda evs: any(e.topic == "process.exit" and e.pid == pid for e in evs)


def subtree(events: list[Event], root: int) -> list[Event]:
    """Events of ``root`` and the processes it forked (transitively)."""
    pids = {root}
    for e in events:
        if e.topic == "process.fork" and e.data["ppid"] in pids:
            pids.add(e.pid)
    return [e for e in events if e.pid in pids]


@pytest.fixture
def listeners() -> Iterator[tuple[int, int]]:
    """A TCP listener on 127.0.0.1 and one on ::1; yields their ports."""
    v4 = socket.create_server(("127.0.0.1", 0))
    v6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    try:
        yield v4.getsockname()[1], v6.getsockname()[1]
    finally:
        v4.close()
        v6.close()


SOURCE = ProcessSource  # what the source_factory fixture (conftest.py) opens


def test_known_tree_is_reported(tmp_path: Path, listeners: tuple[int, int],
                                source_factory: Callable[..., ProcessSource]) -> None:
    port4, port6 = listeners
    known = tmp_path / "known-file.txt"
    known.write_text("hello\n")
    connect = (
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {port4})).close()\n"
        f"socket.create_connection(('::1', {port6})).close()\n"
    )
    script = (
        f"cat {known} >/dev/null\n"
        "sh -c 'exit 0'\n"
        "sh -c 'exit 3'\n"
        "sh -c 'kill -KILL $$'\n"
        "sh -c 'kill -TERM $$'\n"
        f"{PYTHON} -c \"$CONNECT\"\n"
        "true\n"
    )
    src = source_factory(pid=os.getpid(), tree=True)
    proc = subprocess.Popen(["sh", "-c", script], env={**os.environ, "CONNECT": connect})
    proc.wait()
    events = subtree(collect(src, exited(proc.pid)), proc.pid)

    forks = [e for e in events if e.topic == "process.fork"]
    children = {e.pid for e in forks if e.data["ppid"] == proc.pid}
    assert len(children) == 6, forks
    execs = {e.pid: e for e in events if e.topic == "process.exec"}
    exits = {e.pid: e for e in events if e.topic == "process.exit"}
    assert set(exits) >= children | {proc.pid}
    assert execs[proc.pid].data["ppid"] == os.getpid()
    assert execs[proc.pid].data["argv"] == ["sh", "-c", script]

    by_argv = {tuple(execs[c].data["argv"]): c for c in children}
    assert set(by_argv) == {
        ("cat", str(known)), ("sh", "-c", "exit 0"), ("sh", "-c", "exit 3"),
        ("sh", "-c", "kill -KILL $$"), ("sh", "-c", "kill -TERM $$"), (PYTHON, "-c", connect),
    }
    for child in children:
        assert execs[child].data["ppid"] == proc.pid
        assert exits[child].data["ppid"] == proc.pid
        assert exits[child].data["duration_ms"] is not None and exits[child].data["duration_ms"] >= 0

    def outcome(argv: tuple[str, ...]) -> tuple[int | None, str | None]:
        data = exits[by_argv[argv]].data
        return data["exit_code"], data["signal_name"]

    assert outcome(("sh", "-c", "exit 0")) == (0, None)
    assert outcome(("sh", "-c", "exit 3")) == (3, None)
    assert outcome(("sh", "-c", "kill -KILL $$")) == (None, "SIGKILL")
    assert outcome(("sh", "-c", "kill -TERM $$")) == (None, "SIGTERM")
    assert exits[proc.pid].data["exit_code"] == 0

    cat = by_argv[("cat", str(known))]
    opens = [e for e in events if e.topic == "file.open" and e.pid == cat and e.data["path"] == str(known)]
    assert len(opens) == 1 and opens[0].data["ret"] >= 0 and "O_RDONLY" in opens[0].data["flag_names"]

    py = by_argv[(PYTHON, "-c", connect)]
    conns = {(e.data["family"], e.data["address"], e.data["port"])
             for e in events if e.topic == "net.connect" and e.pid == py}
    assert ("ipv4", "127.0.0.1", port4) in conns
    assert ("ipv6", "::1", port6) in conns


def test_threads_are_not_forks(source_factory: Callable[..., ProcessSource]) -> None:
    code = "import threading\nts=[threading.Thread(target=len, args=('',)) for _ in range(4)]\n" \
           "[t.start() for t in ts]; [t.join() for t in ts]\n"
    src = source_factory(pid=os.getpid(), tree=True, mode=1)
    proc = subprocess.Popen([PYTHON, "-c", code])
    proc.wait()
    events = subtree(collect(src, exited(proc.pid)), proc.pid)
    assert [e.topic for e in events] == ["process.fork", "process.exec", "process.exit"]
    assert events[-1].data["exit_code"] == 0


def test_argv_cut_is_flagged(source_factory: Callable[..., ProcessSource]) -> None:
    src = source_factory(pid=os.getpid(), tree=True, mode=1)
    many = subprocess.Popen(["/bin/true", *[f"a{i}" for i in range(40)]])
    long = subprocess.Popen(["/bin/true", "x" * 300, "short"])
    many.wait()
    long.wait()
    events = collect(src, lambda evs: exited(many.pid)(evs) and exited(long.pid)(evs))
    execs = {e.pid: e.data for e in events if e.topic == "process.exec"}
    assert execs[many.pid]["argv_truncated"] is True
    assert execs[many.pid]["argv"] == ["/bin/true", *[f"a{i}" for i in range(31)]]
    assert execs[long.pid]["argv_truncated"] is True
    assert execs[long.pid]["argv"][0] == "/bin/true" and execs[long.pid]["argv"][1] == "x" * 255


def test_comm_filter_and_mode_1(tmp_path: Path, source_factory: Callable[..., ProcessSource]) -> None:
    probe = tmp_path / "asx-probe"
    probe.symlink_to("/bin/cat")
    target = tmp_path / "read-me"
    target.write_text("x")
    src = source_factory(comm="asx-pro", mode=1)
    other = subprocess.Popen(["/bin/cat", str(target)], stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([str(probe), str(target)], stdout=subprocess.DEVNULL)
    other.wait()
    proc.wait()
    events = collect(src, exited(proc.pid))
    assert {e.comm for e in events} == {"asx-probe"}
    assert {e.topic for e in events} == {"process.exec", "process.exit"}
    assert all(e.pid == proc.pid for e in events)


def test_mode_2_follows_descendants_of_a_comm(tmp_path: Path,
                                              source_factory: Callable[..., ProcessSource]) -> None:
    probe = tmp_path / "asx-root"
    probe.symlink_to("/bin/sh")
    target = tmp_path / "read-me"
    target.write_text("x")
    src = source_factory(comm="asx-root", mode=2)
    unrelated = subprocess.Popen(["/bin/cat", str(target)], stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([str(probe), "-c", f"cat {target}; true"], stdout=subprocess.DEVNULL)
    unrelated.wait()
    proc.wait()
    events = collect(src, exited(proc.pid))
    assert unrelated.pid not in {e.pid for e in events}
    cats = [e for e in events if e.topic == "process.exec" and e.comm == "cat"]
    assert len(cats) == 1 and cats[0].data["ppid"] == proc.pid
    assert any(e.topic == "file.open" and e.pid == cats[0].pid and e.data["path"] == str(target)
               for e in events)


def test_duration_filter(source_factory: Callable[..., ProcessSource]) -> None:
    src = source_factory(pid=os.getpid(), tree=True, mode=1, duration=200)
    short = subprocess.Popen(["/bin/true"])
    slow = subprocess.Popen(["/bin/sleep", "0.3"])
    short.wait()
    slow.wait()
    events = collect(src, exited(slow.pid))
    exits = {e.pid: e.data for e in events if e.topic == "process.exit"}
    assert short.pid not in exits
    assert exits[slow.pid]["duration_ms"] >= 200


def test_repeated_opens_collapse(tmp_path: Path, source_factory: Callable[..., ProcessSource]) -> None:
    target = tmp_path / "again"
    target.write_text("x")
    code = f"for _ in range(500): open({str(target)!r}).close()\n"
    src = source_factory(pid=os.getpid(), tree=True, open_window_ms=60_000)
    proc = subprocess.Popen([PYTHON, "-c", code])
    proc.wait()
    events = collect(src, exited(proc.pid))
    opens = [e for e in events if e.topic == "file.open" and e.pid == proc.pid and e.data["path"] == str(target)]
    assert [e.data["count"] for e in opens] == [1, 499]
    assert opens[1].data["repeat"] is True
    assert src.stats["file_open_collapsed"] >= 499


def test_overload_drops_are_counted(source_factory: Callable[..., ProcessSource]) -> None:
    n = 20_000
    code = f"import os\nfor _ in range({n}): os.close(os.open('/dev/null', os.O_RDONLY))\n"
    # One 4 KiB page of ring and nobody reading during the burst.
    src = source_factory(pid=os.getpid(), tree=True, ring_kib=4, open_window_ms=0, open_rate=10**9)
    subprocess.run([PYTHON, "-c", code], check=True)
    events = collect(src, lambda evs: False, timeout=0.3)
    seen = sum(e.data["count"] for e in events if e.topic == "file.open" and e.data["path"] == "/dev/null")
    lost = src.stats["kernel_lost"]
    assert lost > 0
    assert seen < n
    assert seen + lost >= n
    assert src.stats["file_open_ratelimited"] == 0

