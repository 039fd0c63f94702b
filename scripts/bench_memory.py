#!/usr/bin/env python3
"""Memory of agentsight's processes: PSS per actor (from /proc/PID/smaps_rollup).

PSS, not RSS: actors share the Python interpreter and libraries (and, for bcc sources, LLVM),
and PSS divides every shared page among the processes that map it, so the per-actor figures
add up to what the pipeline really costs the machine.

    sudo .venv/bin/python scripts/bench_memory.py --pipeline agents        # a running pipeline
    sudo .venv/bin/python scripts/bench_memory.py --runtime-dir /run/agentsight/agents
    sudo .venv/bin/python scripts/bench_memory.py --run config/agents.toml # start it, measure, stop it
    sudo .venv/bin/python scripts/bench_memory.py --run config/collector.toml --service  # as the collector runs
    sudo .venv/bin/python scripts/bench_memory.py --sources                # each eBPF source alone
    sudo .venv/bin/python scripts/bench_memory.py --run config/agents.toml --trim  # what malloc_trim frees

``--run`` starts the pipeline from the config with every sqlite sink's path moved to a
temporary file, web sinks on a free port and a private runtime dir, waits until every actor runs and ``--settle``
seconds more, prints the table and stops it. ``--sources`` opens each eBPF source with
its default options in a fresh process, ``--repeat`` times, and prints the median time
``open()`` took and the process's PSS after it (and after ``--settle`` seconds of polling).
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
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AGENTSIGHT = [sys.executable, "-m", "agentsight.commands.app"]


def memory_kib(pid: int) -> dict[str, int]:
    """Pss, Rss, Private (clean + dirty) and Swap of one process, in KiB; {} when it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    fields: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0])
    return {"pss": fields.get("Pss", 0), "rss": fields.get("Rss", 0),
            "private": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
            "swap": fields.get("Swap", 0)}


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (an actor that runs helpers counts them as its own)."""
    from agentsight.kernel import procfs

    return procfs.tree([pid])[1:]


def status(run_dir: Path, timeout_s: float = 3.0) -> dict[str, Any]:
    """The supervisor's status report (what `agentsight status --json` prints)."""
    import zmq

    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{run_dir / 'status'}")
    try:
        sock.send(b"status")
        if not sock.poll(int(timeout_s * 1000)):
            raise SystemExit(f"the pipeline at {run_dir} did not answer within {timeout_s} s")
        report: dict[str, Any] = json.loads(sock.recv())
        return report
    finally:
        sock.close()


def actor_rows(report: dict[str, Any]) -> list[tuple[str, int, dict[str, int]]]:
    """(actor id, pid, memory in KiB) for the supervisor and every actor with a process."""
    rows = [("supervisor", int(report["pid"]), memory_kib(int(report["pid"])))]
    for inst in report["instances"]:
        pid = inst.get("pid")
        if not pid:
            continue
        mem = memory_kib(pid)
        for child in children(pid):
            for key, value in memory_kib(child).items():
                mem[key] = mem.get(key, 0) + value
        rows.append((inst["id"], pid, mem))
    # The supervisor's other children: the zygote the actors are forked from (its pages are
    # theirs too, so it counts), anything else it runs.
    actors = {pid for _, pid, _ in rows}
    for child in _direct_children(int(report["pid"])):
        if child in actors:
            continue
        try:
            title = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        rows.append((title.removeprefix("agentsight: ") or "?", child, memory_kib(child)))
    return rows


def _direct_children(pid: int) -> list[int]:
    from agentsight.kernel import procfs

    return procfs.children(pid)


def print_rows(rows: list[tuple[str, int, dict[str, int]]], title: str) -> None:
    print(title)
    print(f"  {'actor':<28} {'pid':>7} {'PSS MB':>8} {'RSS MB':>8} {'private MB':>10}")
    total: dict[str, int] = {}
    for actor, pid, mem in rows:
        for key, value in mem.items():
            total[key] = total.get(key, 0) + value
        print(f"  {actor:<28} {pid:>7} {mem.get('pss', 0) / 1024:>8.1f} {mem.get('rss', 0) / 1024:>8.1f} "
              f"{mem.get('private', 0) / 1024:>10.1f}")
    print(f"  {'total':<28} {'':>7} {total.get('pss', 0) / 1024:>8.1f} {total.get('rss', 0) / 1024:>8.1f} "
          f"{total.get('private', 0) / 1024:>10.1f}")


def measure_running(run_dir: Path, trim: bool = False) -> None:
    report = status(run_dir)
    rows = actor_rows(report)
    print_rows(rows, f"pipeline {report['pipeline']} at {run_dir} (up {report['uptime_s']} s)")
    if trim:
        trim_test(rows)


def trim_test(rows: list[tuple[str, int, dict[str, int]]]) -> None:
    """What malloc_trim(0) would give back in each actor: called in it through gdb, PSS before/after."""
    print("malloc_trim(0) called in each process (gdb)")
    print(f"  {'actor':<28} {'PSS MB before':>13} {'after':>8} {'freed':>8}")
    for actor, pid, mem in rows:
        subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (int)malloc_trim(0)"], capture_output=True,
                       timeout=60)
        after = memory_kib(pid)
        print(f"  {actor:<28} {mem.get('pss', 0) / 1024:>13.1f} {after.get('pss', 0) / 1024:>8.1f} "
              f"{(mem.get('pss', 0) - after.get('pss', 0)) / 1024:>8.1f}")


def run_and_measure(config: Path, settle_s: float, ready_timeout_s: float, trim: bool = False,
                    root: Path = ROOT, service: bool = False) -> None:
    """Start ``config`` on temporary files, wait until it runs, measure, stop it (``service``: as
    `agentsight service run`, the always-on collector, runs it; else as `agentsight run`)."""
    spec = tomllib.loads(config.read_text())
    tmp = Path(tempfile.mkdtemp(prefix="agentsight-bench-memory-"))
    os.chmod(tmp, 0o700)
    moved: dict[str, str] = {}  # a store's path -> its temporary file (a web sink serving it follows)
    for name, sink in spec.get("sinks", {}).items():
        if sink.get("type") == "sqlite":
            moved[sink.get("path", "")] = sink["path"] = str(tmp / f"{name}.db")
    for name, sink in spec.get("sinks", {}).items():
        if sink.get("type") == "web":
            sink["port"] = _free_port()  # another pipeline may hold the default one
            sink["token"] = os.urandom(16).hex()  # not the user's stored one
            if sink.get("db"):
                sink["db"] = moved.get(sink["db"], str(tmp / f"{name}.db"))
        elif sink.get("type") == "clients":
            sink["socket"] = str(tmp / f"{name}.sock")  # a running collector holds the default one
    name = f"benchmem{os.getpid()}"
    spec["name"] = name
    run_dir = tmp / "run"
    spec.setdefault("supervisor", {})["runtime_dir"] = str(run_dir)
    cfg = tmp / "pipeline.toml"
    cfg.write_text(_toml(spec))
    command = ["service", "run", "--runtime-dir", str(run_dir)] if service else ["run"]
    env = dict(os.environ, AGENTSIGHT_TOKEN=os.urandom(16).hex())  # not the machine's stored web token
    proc = subprocess.Popen([*AGENTSIGHT, *command, "--config", str(cfg)], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    started = time.monotonic()
    try:
        report: dict[str, Any] = {}
        while time.monotonic() - started < ready_timeout_s:
            if proc.poll() is not None:
                raise SystemExit(f"the pipeline exited ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
            if (run_dir / "status").exists():
                try:
                    report = status(run_dir, 1.0)
                except SystemExit:
                    report = {}
                states = [i["state"] for i in report.get("instances", [])]
                if states and all(s == "running" for s in states):
                    break
            time.sleep(0.2)
        else:
            raise SystemExit(f"the pipeline was not running after {ready_timeout_s} s: {report}")
        ready_s = time.monotonic() - started
        time.sleep(settle_s)
        report = status(run_dir)
        rows = actor_rows(report)
        print_rows(rows, f"{config} (every actor running after {ready_s:.1f} s, measured {settle_s:.0f} s later)")
        if trim:
            trim_test(rows)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _toml(spec: dict[str, Any]) -> str:
    """Just enough TOML for a pipeline spec (tables of scalars and lists)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r}")

    def table(prefix: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in body.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", spec)
    return "\n".join(lines) + "\n"


# ---- each eBPF source alone ---------------------------------------------------------------

SOURCE_OPTIONS: dict[str, dict[str, Any]] = {
    "ssl": {},
    "process": {},
    "stdio": {"uid": 0},
}


def source_worker(kind: str, settle_s: float) -> None:
    """Open one source with its default options; print open time and PSS (this process and children)."""
    from agentsight.pipeline.registry import component_class

    cls = component_class("source", kind)
    src = cls("bench", SOURCE_OPTIONS[kind])
    started = time.perf_counter()
    src.open()
    open_s = time.perf_counter() - started
    after_open = memory_kib(os.getpid())
    helpers = children(os.getpid())
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        src.poll(0.1)
    after_settle = memory_kib(os.getpid())
    bcc = any("libbcc" in line for line in Path(f"/proc/{os.getpid()}/maps").read_text().splitlines())
    print(json.dumps({"open_s": open_s, "pss_open": after_open["pss"], "rss_open": after_open["rss"],
                      "pss": after_settle["pss"], "rss": after_settle["rss"], "helpers": helpers,
                      "bcc_mapped": bcc}), flush=True)
    src.stop()
    src.close()


def measure_sources(kinds: list[str], repeat: int, settle_s: float) -> None:
    print(f"each eBPF source alone, default options, median of {repeat}")
    print(f"  {'source':<8} {'open s':>7} {'PSS MB after open':>18} {'PSS MB after settle':>20} "
          f"{'RSS MB':>7} {'libbcc mapped':>14}")
    for kind in kinds:
        runs = []
        for _ in range(repeat):
            out = subprocess.run([sys.executable, __file__, "source-worker", kind, str(settle_s)], cwd=ROOT,
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{kind}: {out.stderr.strip().splitlines()[-1:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {k: statistics.median(r[k] for r in runs) for k in ("open_s", "pss_open", "pss", "rss")}
        print(f"  {kind:<8} {med['open_s']:>7.2f} {med['pss_open'] / 1024:>18.1f} {med['pss'] / 1024:>20.1f} "
              f"{med['rss'] / 1024:>7.1f} {str(any(r['bcc_mapped'] for r in runs)):>14}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "source-worker":
        source_worker(sys.argv[2], float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--pipeline", help="name of a running local pipeline")
    what.add_argument("--runtime-dir", type=Path, help="runtime dir of a running pipeline")
    what.add_argument("--run", type=Path, metavar="CONFIG", help="start this pipeline config, measure, stop it")
    what.add_argument("--sources", nargs="*", metavar="KIND", help="each eBPF source alone (default: all)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait before measuring")
    parser.add_argument("--repeat", type=int, default=3, help="runs per source with --sources")
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds --run waits for the actors")
    parser.add_argument("--root", type=Path, default=ROOT, help="the agentsight source tree --run runs (another "
                        "checkout, to compare)")
    parser.add_argument("--service", action="store_true", help="with --run: start it as `agentsight service "
                        "run` does (the collector: config checked in a child), not as `agentsight run`")
    parser.add_argument("--trim", action="store_true", help="then call malloc_trim(0) in every process (gdb) and "
                        "say what it gave back")
    args = parser.parse_args()
    if args.pipeline or args.runtime_dir:
        from agentsight.runtime.endpoints import default_runtime_dir

        measure_running(args.runtime_dir or default_runtime_dir(args.pipeline), args.trim)
    elif args.run:
        if os.geteuid() != 0:
            raise SystemExit("--run starts eBPF sources: run as root")
        run_and_measure(args.run.resolve(), args.settle, args.ready_timeout, args.trim, args.root, args.service)
    else:
        if os.geteuid() != 0:
            raise SystemExit("--sources loads eBPF programs: run as root")
        measure_sources(args.sources or list(SOURCE_OPTIONS), args.repeat, args.settle)


if __name__ == "__main__":
    main()
