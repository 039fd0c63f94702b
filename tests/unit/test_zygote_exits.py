"""The supervisor's side of the zygote, without a zygote: exit codes of adopted actors, orphan reaping."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agentsight.runtime.zygote import PR_SET_CHILD_SUBREAPER, STATUS_LOST, ForkedActor, Zygote, _prctl


def _child(code: int, sleep: float = 0.0) -> int:
    pid = os.fork()
    if pid == 0:
        time.sleep(sleep)
        os._exit(code)
    return pid


def test_a_forked_actor_reads_its_exit_as_popen_does():
    z = Zygote()
    done = ForkedActor(_child(3), z)
    assert done.wait(5) == 3 and done.returncode == 3 and done.poll() == 3
    slow = ForkedActor(_child(0, sleep=30), z)
    assert slow.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        slow.wait(0.05)
    os.kill(slow.pid, signal.SIGKILL)
    assert slow.wait(5) == -signal.SIGKILL


def test_an_actor_whose_status_someone_else_collected_counts_as_a_crash_not_a_clean_end():
    pid = _child(0)
    os.waitpid(pid, 0)  # collected here, before the supervisor's side asks
    gone = ForkedActor(pid, Zygote())
    assert gone.poll() == STATUS_LOST != 0 and gone.status_lost


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return text[text.rfind(")") + 2:].split()[0]


def test_orphans_adopted_from_an_actor_session_are_reaped_and_our_own_children_are_not():
    z = Zygote()
    if not _prctl(PR_SET_CHILD_SUBREAPER, 1):
        pytest.skip("no PR_SET_CHILD_SUBREAPER here")
    z.subreaper = True
    try:
        r, w = os.pipe()
        actor = os.fork()
        if actor == 0:  # an actor in its own session, with a helper that outlives it
            os.setsid()
            helper = _child(0, sleep=0.2)
            os.write(w, str(helper).encode())
            os._exit(0)
        os.close(w)
        helper = int(os.read(r, 32))
        os.close(r)
        os.waitpid(actor, 0)
        ours = _child(5)  # a child of our own, in our session: its status is its waiter's
        deadline = time.monotonic() + 10
        while (_state(helper) != "Z" or _state(ours) != "Z") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _state(helper) == "Z" and _state(ours) == "Z"
        z.reap_orphans(force=True)
        assert _state(helper) == ""
        assert os.waitstatus_to_exitcode(os.waitpid(ours, 0)[1]) == 5
    finally:
        z.shutdown()
