"""Actors forked from the zygote behave as actors started with Popen did.

They are the supervisor's children (adopted: it reads their exit codes), each in its own
session, with the supervisor's environment and directory; they share the zygote's pages;
kill -9 of one restarts it; kill -9 of the zygote leaves the actors running and later
restarts still work; a kill -9 of the supervisor takes every actor and the zygote with it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.conftest import alive_titled, read_jsonl, status_now, wait_for
from tests.integration.test_pipeline import chain


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def zygotes(supervisor: int) -> list[int]:
    kids = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(k) for k in kids if title(int(k)) == "agentsight: zygote"]


def stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2:].split()


def shared_dirty_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Shared_Dirty:"):
            return int(line.split()[1])
    return 0


def actors(run_dir: Path) -> dict[str, dict]:
    return {r["id"]: r for r in status_now(run_dir)["instances"]}


def running_again(run_dir: Path, iid: str, old_pid: int) -> dict:
    return wait_for(lambda: (r := actors(run_dir)[iid])["state"] == "running" and r["pid"] != old_pid and r,
                    10, interval=0.02, what=f"{iid} restarted")


def test_actors_forked_from_the_zygote_run_restart_and_die_as_before(pipeline, workdir, monkeypatch):
    monkeypatch.setenv("AGENTSIGHT_LOG", "INFO")  # the actors' environment is the supervisor's
    out = workdir / "out.jsonl"
    p = pipeline(chain(out, 0, rate=5_000)).start()
    sup = p.proc.pid
    wait_for(lambda: len(read_jsonl(out)) > 2_000, 20, what="events flowing")
    [zygote] = zygotes(sup)
    rows = actors(p.run_dir)
    for iid, r in rows.items():
        pid = r["pid"]
        state, ppid, _pgrp, sid = stat(pid)[:4]
        assert int(ppid) == sup, iid                    # adopted: the supervisor waits for it
        assert int(sid) == pid, iid                     # its own session, as start_new_session gave
        assert os.readlink(f"/proc/{pid}/cwd") == os.readlink(f"/proc/{sup}/cwd"), iid
        assert title(pid).startswith("agentsight: "), iid
        assert shared_dirty_kib(pid) > 1024, iid        # pages of the zygote's, shared copy-on-write

    # kill -9 of an actor: restarted (from the zygote), its exit read as a signal.
    victim = rows["analyzers/fwd"]["pid"]
    os.kill(victim, signal.SIGKILL)
    back = running_again(p.run_dir, "analyzers/fwd", victim)
    assert shared_dirty_kib(back["pid"]) > 1024
    assert f"analyzers/fwd (pid {victim}) crashed: killed by signal 9" in p.stderr()

    # kill -9 of the zygote: the actors go on; a restart still works, and a new zygote comes.
    before = {iid: r["pid"] for iid, r in actors(p.run_dir).items()}
    os.kill(zygote, signal.SIGKILL)
    time.sleep(0.3)
    assert {iid: r["pid"] for iid, r in actors(p.run_dir).items()} == before
    assert all(r["state"] == "running" for r in actors(p.run_dir).values())
    victim = before["analyzers/tag#1"]
    os.kill(victim, signal.SIGKILL)
    running_again(p.run_dir, "analyzers/tag#1", victim)
    [new_zygote] = wait_for(lambda: zygotes(sup), 10, what="a new zygote")
    assert new_zygote != zygote
    victim = actors(p.run_dir)["analyzers/tag#0"]["pid"]
    os.kill(victim, signal.SIGKILL)
    back = running_again(p.run_dir, "analyzers/tag#0", victim)
    assert shared_dirty_kib(back["pid"]) > 1024  # forked by the new zygote
    count = len(read_jsonl(out))
    wait_for(lambda: len(read_jsonl(out)) > count + 1_000, 20, what="events flowing after the restarts")

    # A graceful stop: every actor and the zygote gone, none left a zombie.
    pids = [r["pid"] for r in actors(p.run_dir).values()] + [new_zygote]
    assert p.stop(30) == 0, p.stderr()
    assert alive_titled(pids) == []
    # Their stderr is the supervisor's, and they logged at the level its environment says.
    assert "agentsight[analyzer/fwd]: analyzers/fwd: stop requested" in p.stderr()


def test_a_kill_9_of_the_supervisor_takes_the_forked_actors_and_the_zygote_with_it(pipeline, workdir):
    out = workdir / "out.jsonl"
    p = pipeline(chain(out, 0, rate=2_000)).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 0, 20, what="events flowing")
    pids = [r["pid"] for r in actors(p.run_dir).values()] + zygotes(p.proc.pid)
    os.kill(p.proc.pid, signal.SIGKILL)
    p.wait(10)
    wait_for(lambda: alive_titled(pids) == [], 10, what="the actors dying with the supervisor (PDEATHSIG)")
