"""What a user without root, or with a bad flag, sees: one clear line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import AGENTSIGHT, ROOT

NOBODY = 65534


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENTSIGHT, *args], capture_output=True, text=True, timeout=60, user=NOBODY,
                          group=NOBODY, extra_groups=[], cwd="/tmp", env={**os.environ, "HOME": "/tmp",
                                                                          "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def nobody_can_run() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    probe = as_nobody("--version")
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot run this checkout's interpreter: {probe.stderr.strip()[:200]}")


@pytest.mark.parametrize("cmd", [["debug", "ssl"], ["debug", "process"], ["debug", "trace"],
                                 ["debug", "stdio", "-p", "1"]])
def test_capture_without_root_is_one_line(nobody_can_run, cmd):
    r = as_nobody(*cmd)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "needs root" in lines[0] and "sudo" in lines[0]


def test_dump_bpf_needs_no_root(nobody_can_run):
    r = as_nobody("debug", "dump-bpf", "process", "--", "--comm", "python", "--mode", "1")
    assert r.returncode == 0, r.stderr
    assert "TRACE_FILES 0" in r.stdout and '"python"' in r.stdout and "SEC(" not in r.stderr


def test_flag_problems_are_one_line():
    for args, text in [(["debug", "stdio"], "needs a target"),
                       (["debug", "ssl", "--no-ssl"], "every source is off"),
                       (["debug", "ssl", "--", "--max-bytes", "x"], "max_bytes"),
                       (["debug", "dump-bpf", "system"], "no eBPF program")]:
        r = subprocess.run([*AGENTSIGHT, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and text in r.stderr, (args, r.stderr)


def test_run_of_a_bpf_pipeline_without_root_is_one_line(nobody_can_run, workdir):
    cfg = workdir / "p.toml"
    cfg.write_text('[sources.tls]\ntype = "ssl"\n[sinks.out]\ntype = "null"\ninputs = ["tls"]\n')
    os.chmod(workdir, 0o755)
    os.chmod(cfg, 0o644)
    r = as_nobody("run", "--config", str(cfg))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "needs root" in r.stderr


def test_a_taken_web_ui_port_is_one_line_before_anything_starts(workdir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = workdir / "p.toml"
        cfg.write_text('[sources.gen]\ntype = "generator"\n[sinks.out]\ntype = "null"\ninputs = ["gen"]\n')
        for args in (["run", "--config", str(cfg), "--server", "--server-port", str(port)],
                     ["debug", "system", "--server", "--server-port", str(port)]):
            r = subprocess.run([*AGENTSIGHT, *args], capture_output=True, text=True, timeout=60)
            assert r.returncode == 2, r.stderr
            assert r.stderr.strip().splitlines() == [
                f"agentsight: the web UI cannot listen on 127.0.0.1:{port}: Address already in use "
                "(pass --server-port to choose another)"]


def test_a_second_capture_of_the_same_name_takes_the_next_free_name(workdir):
    import signal

    from tests.conftest import wait_for

    name = f"dup{os.getpid()}"
    errs = [workdir / "first.err", workdir / "second.err"]
    procs = []
    try:
        for err in errs:
            procs.append(subprocess.Popen([*AGENTSIGHT, "debug", "system", "--quiet", "--name", name],
                                          stdout=subprocess.DEVNULL, stderr=open(err, "w")))
            wait_for(lambda e=err: "running:" in e.read_text(), 30, what=f"{err.stem} capture running")
        assert f"a pipeline named {name!r} is already running; this one is '{name}-2'" in errs[1].read_text()
        assert f"/run/agentsight/{name}-2" in errs[1].read_text()
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        assert [p.wait(30) for p in procs] == [0] * len(procs)


def test_ctrl_c_while_a_capture_starts_stops_it_at_once(workdir):
    import signal
    import time

    from tests.conftest import status_now, wait_for

    err = workdir / "err"
    run = workdir / "run"
    # The sink and the redact stage start first; the ssl source takes seconds to compile.
    p = subprocess.Popen([*AGENTSIGHT, "debug", "ssl", "--quiet", "--runtime-dir", str(run)],
                         stdout=subprocess.DEVNULL, stderr=open(err, "w"))
    wait_for(lambda: (run / "status").exists(), 30, what="the supervisor up")

    def source_starting() -> bool:
        rows = status_now(run)["instances"]
        return any(r["kind"] == "source" and r["pid"] and r["state"] == "starting" for r in rows)
    wait_for(source_starting, 30, what="the ssl source starting")
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    p.wait(30)
    assert time.monotonic() - t0 < 5, err.read_text()
    assert "killing" not in err.read_text()


def _as_nobody() -> list[str]:
    import shutil

    return ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 and shutil.which("runuser") else []


def test_a_runtime_dir_that_is_not_yours_or_not_private_is_refused_by_run_tap_and_status(workdir):
    """In /tmp another user can make the directory first and plant a bus there: refuse it, in one line."""
    from agentsight.runtime.endpoints import RunDirError, private_dir

    planted = workdir / "planted"
    planted.mkdir(mode=0o777)
    os.chmod(planted, 0o777)
    (planted / "bus").touch()
    (planted / "status").touch()
    cfg = workdir / "p.toml"
    cfg.write_text(f'name = "p"\n[sources.g]\ntype = "generator"\ncount = 1\n[sinks.n]\ntype = "null"\n'
                   f'inputs = ["g"]\n[supervisor]\nruntime_dir = "{planted}"\n')
    for args in (["tap", "--runtime-dir", str(planted), "--duration", "1"],
                 ["status", "--runtime-dir", str(planted)], ["run", "--config", str(cfg)]):
        r = subprocess.run([*AGENTSIGHT, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        assert "lets others in" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (planted / "bus").exists()  # refused, never emptied
    made = private_dir(workdir / "fresh", create=True)
    assert oct(os.stat(made).st_mode & 0o777) == "0o700"
    link = workdir / "link"
    link.symlink_to(made)
    with pytest.raises(RunDirError, match="symlink"):
        private_dir(link)
    if os.geteuid() == 0:
        os.chown(made, 65534, 65534)  # made by someone else (nobody)
        with pytest.raises(RunDirError, match="belongs to uid 65534"):
            private_dir(made)


@pytest.mark.skipif(not _as_nobody(), reason="needs root to run a command as another user")
def test_status_of_another_users_pipeline_is_one_line_not_a_traceback(workdir):
    run_dir = workdir / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / "status").touch()
    r = subprocess.run([*_as_nobody(), *AGENTSIGHT, "status", "--runtime-dir", str(run_dir)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "permission denied" in r.stderr and len(r.stderr.strip().splitlines()) == 1
