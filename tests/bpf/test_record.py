"""`agentsight record -- CMD`: the command's whole tree captured from its first instruction,
its exit code returned, and a summary that matches the recording."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from agentsight.recording.report import summary
from agentsight.recording.store import Store
from tests.bpf.test_ssl_capture import Server, cert, server  # noqa: F401  (fixtures)
from tests.conftest import AGENTSIGHT, every_actor_running, wait_for

pytestmark = pytest.mark.bpf

AGENT = Path(__file__).parent / "agents" / "tool_agent.py"
KEY = "sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp"


def test_record_a_tool_running_agent_with_a_node_child(workdir, server, cert):  # noqa: F811
    db = workdir / "rec.db"
    r = subprocess.run([*AGENTSIGHT, "record", "--db", str(db), "--runtime-dir", str(workdir / "run"), "--",
                        "/usr/bin/python3", str(AGENT), str(server.port), str(cert[0]), str(workdir), "7"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 7, r.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with Store(db, readonly=True) as s:
        procs = s.processes()
        root = next(p for p in procs if p["argv"][:1] == ["/usr/bin/python3"])
        assert root["exit_code"] == 7 and root["agent"] == "recorded"
        children = {p["comm"]: p for p in procs if p["ppid"] == root["pid"]}
        assert children["sh"]["exit_code"] == 3 and children["ls"]["exit_code"] == 0
        assert "node" in children and all(p["session"] == root["session"] for p in procs)
        exchanges = s.events(topics=["http.exchange"])
        by_comm: dict[str, list[str]] = {}
        for x in exchanges:
            by_comm.setdefault(x["comm"], []).append(x["data"]["request"]["path"])
        assert by_comm["python3"] == ["/size/100", "/size/101", "/size/102"]
        assert by_comm["node"] == ["/size/10", "/size/300000", "/size/50", "/size/5"]  # no flag needed
        assert all(x["data"]["response"]["status_code"] == 200 for x in exchanges)
        assert any(f["path"] == f"{workdir}/notes.txt" for f in s.files(children["sh"]["pid"]))
        assert s.samples(), "resource samples of the tree"
        expect = summary(s)
    text = db.read_bytes() + b"".join(Path(f"{db}{x}").read_bytes() for x in ("-wal",) if Path(f"{db}{x}").exists())
    assert KEY.encode() not in text
    # The printed summary is the recording's.
    assert f"exit code 7, {expect['events']:,} events" in r.stderr
    assert f"processes: {expect['processes']}, " in r.stderr and f"{workdir}/notes.txt" in r.stderr
    assert f"127.0.0.1:{server.port}" in r.stderr and "no events lost" in r.stderr
    assert f"recording: {db}" in r.stderr


def test_record_command_not_found_and_nothing_to_record(workdir):
    r = subprocess.run([*AGENTSIGHT, "record", "--db", str(workdir / "x.db"), "--", "no-such-agent-xyz"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 127 and r.stderr.strip() == "agentsight: command not found: no-such-agent-xyz"
    r = subprocess.run([*AGENTSIGHT, "record"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "nothing to record" in r.stderr


def test_record_runs_the_command_as_the_sudo_user(workdir):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    out = workdir / "id.txt"
    os.chmod(workdir, 0o777)
    env = {**os.environ, "SUDO_UID": "65534", "SUDO_GID": "65534", "SUDO_USER": "nobody"}
    r = subprocess.run([*AGENTSIGHT, "record", "--db", str(workdir / "u.db"), "--no-stdio", "--no-system",
                        "--runtime-dir", str(workdir / "run"), "--", "sh", "-c", f"id -u > {out}; exit 0"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert out.read_text().strip() == "65534"
    assert (workdir / "u.db").stat().st_uid == 65534  # the recording belongs to the user too


def test_record_attaches_to_a_running_process_by_pid(workdir, server, cert):  # noqa: F811
    # Already running (libssl loaded), it makes its request once told record is attached (SIGUSR1).
    script = ("import http.client, signal, ssl, subprocess, sys\n"
              "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
              "print('waiting', flush=True)\n"
              "signal.sigwait({signal.SIGUSR1})\n"
              "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
              "c = http.client.HTTPSConnection('127.0.0.1', int(sys.argv[1]), context=ctx)\n"
              "c.request('GET', '/size/33'); c.getresponse().read()\n"
              "subprocess.run(['ls', '/'], stdout=subprocess.DEVNULL)\n")
    running = subprocess.Popen(["/usr/bin/python3", "-c", script, str(server.port), str(cert[0])],
                               stdout=subprocess.PIPE, text=True)
    db, run = workdir / "attached.db", workdir / "run"
    try:
        assert running.stdout is not None and running.stdout.readline() == "waiting\n"
        record = subprocess.Popen([*AGENTSIGHT, "record", "--db", str(db), "--runtime-dir", str(run), "--raw",
                                   "-p", str(running.pid)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: every_actor_running(run) or record.poll() is not None, 120, what="record attached")
            running.send_signal(signal.SIGUSR1)
            _, err = record.communicate(timeout=120)
        finally:
            record.kill()
            record.wait()
    finally:
        running.kill()
        running.wait()
    assert record.returncode == 0, err  # ended by itself when the process exited
    with Store(db, readonly=True) as s:
        (x,) = s.events(topics=["http.exchange"])
        assert x["pid"] == running.pid and x["data"]["response"]["body_size"] == 33
        procs = s.processes()
        assert any(p["ppid"] == running.pid and p["comm"] == "ls" for p in procs)
        assert s.sessions()[0]["pid"] == running.pid
        raw = s.events(topics=["ssl.data"], raw=True)  # --raw keeps the TLS records too
        assert b"GET /size/33 HTTP/1.1" in b"".join(e["data"]["bytes"] for e in raw)


def test_warm_bpf_compiles_what_record_loads_so_record_compiles_nothing(workdir):
    cache = workdir / "bpf-cache"
    env = {**os.environ, "AGENTSIGHT_BPF_CACHE": str(cache)}
    first = subprocess.run([*AGENTSIGHT, "debug", "warm-bpf"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines[:3]] == ["record: sources.ssl", "record: sources.process",
                                                         "record: sources.stdio"]
    assert all("compiled and kept in" in line for line in lines[:3]) and lines[3] == f"compile cache: {cache}"
    entries = sorted(p.name for p in cache.glob("*.json"))
    assert len(entries) == 3
    again = subprocess.run([*AGENTSIGHT, "debug", "warm-bpf"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and all("kept already in" in line for line in again.stdout.splitlines()[:3])
    # record loads exactly those programs: from the cache, writing no entry of its own.
    db = workdir / "rec.db"
    r = subprocess.run([*AGENTSIGHT, "record", "--db", str(db), "--runtime-dir", str(workdir / "run"), "--",
                        "/bin/sh", "-c", "exit 3"], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 3, r.stderr
    assert sorted(p.name for p in cache.glob("*.json")) == entries
    assert "not used" not in r.stderr and "no events lost" in r.stderr
    off = subprocess.run([*AGENTSIGHT, "debug", "warm-bpf"], env={**env, "AGENTSIGHT_BPF_CACHE": "off"},
                         capture_output=True, text=True, timeout=60)
    assert off.returncode == 2 and off.stderr.strip() == ("agentsight: the compile cache is off "
                                                          "(AGENTSIGHT_BPF_CACHE=off): nothing to keep")
