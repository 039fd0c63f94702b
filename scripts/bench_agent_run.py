#!/usr/bin/env python3
"""What agentsight costs an agent-like run: wall time of the demo agent without and with a real pipeline.

Run as root from the repository: ``.venv/bin/python scripts/bench_agent_run.py``.

The demo agent (agentsight.demo.agent, real openai/anthropic SDKs) makes ``--calls``
streamed LLM calls against the demo LLM server (agentsight.demo.llm_server) with a
realistic pace (time to first token ``--ttft-ms``, ``--chunk-ms`` between deltas of
``--chunk-words`` words, ``--reply-words`` words an answer, so a few hundred tokens), and
runs a tool subprocess after every other call. Each run is timed from the moment the
agent is released (it waits on a gate, so interpreter start-up is included but the
pipeline's own start is not) until it exits.

Runs alternate: without agentsight, then with ``agentsight run --config <tmp toml>``
(sources ``ssl`` and ``process`` filtered to the agent's process tree, unless
``--system-wide``; analyzers ``http`` -> ``sse`` -> ``llm`` when the registry has them;
a ``jsonl`` sink), started and ready before the agent is released and stopped after.
It prints each run, the medians, the overhead in percent, the pipeline's CPU time during
the runs and how many ``llm.call`` records it wrote. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
AGENTSIGHT = [sys.executable, "-m", "agentsight"]


def start_server(tmp: Path, a: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int, Path]:
    ready, ca = tmp / "server.port", tmp / "ca.pem"
    proc = subprocess.Popen([sys.executable, "-m", "agentsight.demo.llm_server", "--port", "0", "--ca-out", str(ca),
                             "--ready-file", str(ready), "--ttft-ms", str(a.ttft_ms), "--chunk-ms", str(a.chunk_ms),
                             "--reply-words", str(a.reply_words), "--chunk-words", str(a.chunk_words)],
                            stdout=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bench: the demo LLM server did not start (is the demo extra installed?)")
        time.sleep(0.05)
    return proc, int(ready.read_text()), ca


def gated_agent(port: int, ca: Path, workdir: Path, a: argparse.Namespace) -> subprocess.Popen[bytes]:
    """The agent behind a shell gate: it starts when a line arrives on the gate's stdin."""
    argv = [sys.executable, "-m", "agentsight.demo.agent", "--base-url", f"https://127.0.0.1:{port}", "--ca", str(ca),
            "--calls", str(a.calls), "--apis", "chat-stream,responses-stream,messages-stream", "--workdir",
            str(workdir), "--quiet"]
    return subprocess.Popen(["/bin/sh", "-c", 'read go && "$@"', "sh", *argv], stdin=subprocess.PIPE, cwd=ROOT)


def release(gate: subprocess.Popen[bytes]) -> float:
    """Let the agent go; the wall time until it exited."""
    assert gate.stdin is not None
    start = time.perf_counter()
    gate.stdin.write(b"go\n")
    gate.stdin.close()
    rc = gate.wait()
    elapsed = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"bench: the agent failed with exit status {rc}")
    return elapsed


def pipeline_config(tmp: Path, gate_pid: int, out: Path, a: argparse.Namespace) -> Path:
    from agentsight.pipeline.registry import known_types

    scope = "" if a.system_wide else f"pid = {gate_pid}\ntree = true\n"
    lines = ['name = "bench-agent-run"', "[supervisor]", f'runtime_dir = "{tmp / "run"}"', "watch = false",
             "[sources.ssl]", 'type = "ssl"', scope, "[sources.proc]", 'type = "process"', scope]
    last = ["ssl", "proc"]
    analyzers = [t for t in ("http", "sse", "llm") if t in known_types("analyzer")]
    for name in analyzers:
        lines += [f"[analyzers.{name}]", f'type = "{name}"', f"inputs = {json.dumps(last)}"]
        last = [name]
    lines += ["[sinks.out]", 'type = "jsonl"', f"inputs = {json.dumps(last)}", f'path = "{out}"']
    path = tmp / "pipeline.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def pipeline_status(tmp: Path) -> dict[str, Any] | None:
    done = subprocess.run([*AGENTSIGHT, "status", "--runtime-dir", str(tmp / "run"), "--json"], capture_output=True,
                          text=True, cwd=ROOT)
    return json.loads(done.stdout) if done.returncode == 0 else None


def wait_ready(proc: subprocess.Popen[bytes], tmp: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: agentsight run exited with status {proc.returncode} before it was ready")
        report = pipeline_status(tmp)
        if report and report["instances"] and all(i["state"] == "running" for i in report["instances"]):
            return
        time.sleep(0.2)
    raise SystemExit(f"bench: the pipeline was not running after {timeout:.0f} s")


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its descendants."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_once(traced: bool, port: int, ca: Path, a: argparse.Namespace, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="as-bench-run-") as d:
        tmp = Path(d)
        gate = gated_agent(port, ca, tmp / "work", a)
        if not traced:
            return {"wall": release(gate)}
        out = tmp / "events.jsonl"
        config = pipeline_config(tmp, gate.pid, out, a)
        log = open(tmp / "agentsight.log", "wb")  # noqa: SIM115
        pipe = subprocess.Popen([*AGENTSIGHT, "run", "--config", str(config), "--no-watch"], stdout=log,
                                stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            wait_ready(pipe, tmp)
            cpu0 = tree_cpu(pipe.pid)
            wall = release(gate)
            cpu = tree_cpu(pipe.pid) - cpu0
            time.sleep(a.settle)  # let the http stage close the agent's connections after its exit
        finally:
            pipe.send_signal(signal.SIGINT)
            try:
                pipe.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(pipe.pid, signal.SIGKILL)
                pipe.wait()
            log.close()
        calls = 0
        if out.exists():
            for line in out.read_text().splitlines():
                try:
                    calls += json.loads(line).get("topic") == "llm.call"
                except ValueError:
                    pass  # a line cut by the stop
        summary = (tmp / "agentsight.log").read_text(errors="replace")
        lost = "no events lost" not in summary
        if a.keep_logs:
            keep = Path(a.keep_logs) / f"run{n}"
            keep.mkdir(parents=True, exist_ok=True)
            for f in (config, tmp / "agentsight.log", out):
                if f.exists():
                    (keep / f.name).write_bytes(f.read_bytes())
        return {"wall": wall, "cpu": cpu, "llm_calls": calls, "lost": lost}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=30, help="streamed LLM calls per agent run")
    p.add_argument("--rounds", type=int, default=3, help="runs each way (alternating)")
    p.add_argument("--ttft-ms", type=float, default=300)
    p.add_argument("--chunk-ms", type=float, default=20)
    p.add_argument("--reply-words", type=int, default=200)
    p.add_argument("--chunk-words", type=int, default=3)
    p.add_argument("--system-wide", action="store_true", help="trace every process, not just the agent's tree")
    p.add_argument("--settle", type=float, default=2.0, help="seconds the pipeline runs on after the agent exits")
    p.add_argument("--keep-logs", help="copy each traced run's config, log and events here")
    a = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (the ssl and process sources load eBPF programs)")
    with tempfile.TemporaryDirectory(prefix="as-bench-") as d:
        server, port, ca = start_server(Path(d), a)
        try:
            print(f"agent: {a.calls} streamed calls (ttft {a.ttft_ms:.0f} ms, {a.chunk_ms:.0f} ms per "
                  f"{a.chunk_words}-word delta, {a.reply_words}-word answers), tools after every other call; "
                  f"{'system-wide' if a.system_wide else 'agent tree'} capture", flush=True)
            run_once(False, port, ca, a, -1)  # warm the page cache and the server
            without: list[float] = []
            traced: list[dict[str, Any]] = []
            for n in range(a.rounds):
                w = run_once(False, port, ca, a, n)["wall"]
                without.append(w)
                print(f"round {n + 1}: without {w:7.2f} s", flush=True)
                t = run_once(True, port, ca, a, n)
                traced.append(t)
                print(f"round {n + 1}: with    {t['wall']:7.2f} s  (pipeline CPU {t['cpu']:.2f} s, "
                      f"{t['llm_calls']} llm.call written{', EVENTS LOST' if t['lost'] else ''})", flush=True)
        finally:
            server.terminate()
            server.wait()
    base = statistics.median(without)
    with_ = statistics.median(t["wall"] for t in traced)
    print(f"median wall time without agentsight: {base:.2f} s")
    print(f"median wall time with agentsight:    {with_:.2f} s")
    print(f"overhead: {100 * (with_ - base) / base:+.1f}%")
    print(f"pipeline CPU during a run (median): {statistics.median(t['cpu'] for t in traced):.2f} s")


if __name__ == "__main__":
    main()
