"""The one /proc helper: live pids, a process's stat, trees."""

from __future__ import annotations

import os
import subprocess
import sys

from agentsight.kernel import procfs


def test_descendants() -> None:
    parents = {2: 1, 3: 2, 4: 3, 5: 1, 6: 99}
    assert procfs.descendants([2], parents) == {2, 3, 4}
    assert procfs.descendants([1], parents) == {1, 2, 3, 4, 5}
    assert procfs.descendants([6, 7], parents) == {6, 7}


def test_scan_proc_sees_this_process() -> None:
    procs = procfs.scan_proc()
    me = procs[os.getpid()]
    assert me.ppid == os.getppid()
    assert me.start_boot_ns > 0
    assert os.getpid() in procfs.pids()
    assert procfs.read_stat(os.getpid()) == me


def test_alive() -> None:
    assert procfs.alive(os.getpid())
    assert not procfs.alive(0) and not procfs.alive(-1)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not procfs.alive(child.pid) and procfs.read_stat(child.pid) is None


def test_tree_lists_parents_before_children() -> None:
    # this process -> a shell -> a sleep: the tree of this process has all three, in that order.
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    try:
        assert shell.stdout is not None
        grandchild = int(shell.stdout.readline())
        tree = procfs.tree([os.getpid()])
        assert tree[0] == os.getpid()
        assert tree.index(shell.pid) < tree.index(grandchild)
        assert len(tree) == len(set(tree))
        assert procfs.tree([shell.pid]) == [shell.pid, grandchild]
        assert procfs.children(shell.pid) == [grandchild] and shell.pid in procfs.children(os.getpid())
    finally:
        subprocess.run(["kill", str(grandchild)], check=False)
        shell.wait()
