"""`agentsight top`: the live table of agent sessions (model and rendering in agentsight.commands.topmodel)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from agentsight.commands.common import app, bus_endpoint, fail, need_bpf
from agentsight.commands.topmodel import COLUMNS, LAST, LEFT, SORT_KEYS, TOPICS, TopModel, cells, format_plain

__all__ = ["top"]

START_TIMEOUT_S = 120  # eBPF compiling for every source, on a slow machine


def _start_capture(pid: int, comm: str) -> tuple[subprocess.Popen[bytes], str]:
    """Run `debug trace` quietly in a child; returns it and its bus endpoint once its status
    socket says the pipeline is running (its messages go to a log file beside its runtime dir,
    read only to say why it did not start)."""
    from agentsight.runtime.endpoints import RunDir
    from agentsight.runtime.status import StatusError, wait_running

    need_bpf(hint=" (or attach to a running pipeline with --pipeline/--connect)")
    run_dir = Path(tempfile.mkdtemp(prefix="agentsight-top-"))
    log = run_dir.with_suffix(".log")
    args = [sys.executable, "-m", "agentsight", "debug", "trace", "--quiet", "--name", f"top-{os.getpid()}",
            "--runtime-dir", str(run_dir / "run")]
    if pid:
        args += ["--pid", str(pid)]
    if comm:
        args += ["--comm", comm]
    with open(log, "wb") as err:
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)
    run = RunDir(run_dir / "run")
    try:
        wait_running(run.status, START_TIMEOUT_S, alive=lambda: child.poll() is None)
    except StatusError as exc:
        _stop_capture(child)
        said = log.read_text(errors="replace").strip().splitlines()  # why it exited, when it did
        why = str(exc) if exc.status is not None or not said else said[-1]
        fail(f"the capture for top did not start: {why}")
    except BaseException:  # Ctrl-C while it starts: not left running in its own session
        _stop_capture(child)
        raise
    return child, run.bus_out


def _stop_capture(child: subprocess.Popen[bytes] | None) -> None:
    if child is None or child.poll() is not None:
        return
    child.send_signal(signal.SIGINT)
    try:
        child.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _rich_table(model: TopModel, sort: str, sub: Any) -> Any:
    from rich.table import Table

    now = time.time_ns()
    t = Table(title=f"agentsight top: {len(model.rows)} session(s), sorted by {sort} "
                    f"(s: sort, q: quit) - {model.events:,} events, {sub.stats.lost} lost",
              title_justify="left", expand=True, header_style="bold cyan")
    for i, c in enumerate(COLUMNS):
        t.add_column(c, justify="left" if i in LEFT else "right", no_wrap=i != LAST, overflow="ellipsis")
    for row in model.visible(sort):
        style = "dim" if row.state != "running" else None
        t.add_row(*cells(row, now), style=style)
    return t


@app.command()
def top(
    pipeline: Annotated[str, typer.Option("--pipeline", help="Attach to this running local pipeline's bus "
                                          "(default: start a capture of its own).")] = "",
    connect: Annotated[str, typer.Option("--connect", help="Attach to a bus endpoint (ipc://... or "
                                         "tcp://HOST:PORT).")] = "",
    runtime_dir: Annotated[Path | None, typer.Option("--runtime-dir", help="Runtime dir of the pipeline to "
                                                     "attach to.")] = None,
    pid: Annotated[int, typer.Option("--pid", "-p", help="Only the session holding this pid.")] = 0,
    comm: Annotated[str, typer.Option("--comm", "-c", help="Only sessions whose agent or command name "
                                      "contains this.")] = "",
    sort: Annotated[str, typer.Option("--sort", help=f"Order by {', '.join(SORT_KEYS)}.")] = "cost",
    once: Annotated[bool, typer.Option("--once", help="Watch for --interval seconds, print one table, exit.")]
    = False,
    plain: Annotated[bool, typer.Option("--plain", help="Print plain tables (no screen control).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes.")] = 2.0,
) -> None:
    """Live table of agent sessions: model, LLM calls, tokens, cost, processes, files, network, CPU, RSS."""
    from agentsight.runtime.subscriber import Subscriber

    if sort not in SORT_KEYS:
        fail(f"--sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
    from agentsight.runtime import collector

    child = None
    sub: Any
    if connect or pipeline or runtime_dir:
        sub = Subscriber(bus_endpoint(connect or None, pipeline or "default", runtime_dir), TOPICS)
    elif collector.running():
        # The always-on collector: no capture of our own, no root needed (a user sees their own processes).
        sub = collector.Subscription(TOPICS)
    else:
        child, endpoint = _start_capture(pid, comm)
        sub = Subscriber(endpoint, TOPICS)
    from agentsight.commands.topprocs import TreeUsage, running_processes

    model = TopModel(pid, comm)
    model.seed(running_processes())
    usage = TreeUsage()  # the model reads nothing: CPU and memory of the session trees come from here
    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    interactive = not (once or plain) and sys.stdout.isatty() and sys.stdin.isatty()
    try:
        if interactive:
            _interactive(model, usage, sub, sort, interval, stop)
        else:
            end = time.monotonic() + interval
            while not stop["flag"]:
                for e in sub.recv(0.2):
                    model.feed(e)
                if time.monotonic() >= end:
                    model.sample(usage)
                    typer.echo(format_plain(model.visible(sort)))
                    if once:
                        break
                    typer.echo("")
                    end = time.monotonic() + interval
    except BrokenPipeError:
        pass
    finally:
        sub.close()
        _stop_capture(child)


def _interactive(model: TopModel, usage: Callable[[int], tuple[float, int] | None], sub: Any, sort: str,
                 interval: float, stop: dict[str, bool]) -> None:
    import termios
    import tty

    from rich.live import Live

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        model.sample(usage)
        with Live(_rich_table(model, sort, sub), refresh_per_second=4, screen=True) as live:
            next_sample = time.monotonic() + interval
            while not stop["flag"]:
                for e in sub.recv(0.2):
                    model.feed(e)
                if select.select([fd], [], [], 0)[0]:
                    key = os.read(fd, 1)
                    if key in (b"q", b"Q"):
                        break
                    if key in (b"s", b"S"):
                        sort = SORT_KEYS[(SORT_KEYS.index(sort) + 1) % len(SORT_KEYS)]
                if time.monotonic() >= next_sample:
                    model.sample(usage)
                    next_sample = time.monotonic() + interval
                live.update(_rich_table(model, sort, sub))
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
