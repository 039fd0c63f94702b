"""`agentsight debug ...` and `agentsight record`: capture pipelines built from flags."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentsight.actors.sources.options import STDIO_MAX_BYTES_LIMIT
from agentsight.commands.common import (
    ServerHostOpt,
    ServerPortOpt,
    ServerTokenOpt,
    app,
    fail,
    need_bpf,
    need_port,
)
from agentsight.commands.flags import changed, source_flags
from agentsight.kernel import procfs
from agentsight.pipeline.presets import Capture, CaptureError, build_spec, needs_bpf, parse_extra
from agentsight.web import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from agentsight.runtime.status import PipelineStatus

# The stdio source's largest capture per call (debug mcp and record keep that much of each call).
STDIO_MAX_BYTES = STDIO_MAX_BYTES_LIMIT

__all__ = ["debug_app", "run_capture"]

debug_app = typer.Typer(
    help="Watch one kind of activity live (ssl, process, stdio, system) or everything (trace).",
    no_args_is_help=True,
)
app.add_typer(debug_app, name="debug")

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}

# The source that options after `--` go to, per subcommand.
PRIMARY = {"ssl": "ssl", "process": "process", "stdio": "stdio", "system": "system", "trace": "ssl", "mcp": "stdio"}


# The OpenTelemetry export flags `debug` and `record` share (the otlp sink: docs/otlp.md).
OtelOpt = Annotated[str, typer.Option("--otel", metavar="ENDPOINT", help="Also export GenAI traces and metrics "
                                      "over OTLP/HTTP to this base URL (http://HOST:4318; /v1/traces and "
                                      "/v1/metrics are appended). The OTEL_EXPORTER_OTLP_* variables apply.")]
OtelContentOpt = Annotated[bool, typer.Option("--otel-content", help="With --otel: also export prompts, answers, "
                                              "tool arguments and results (redacted).")]
OtelAttributesOpt = Annotated[str, typer.Option("--otel-attributes", help="With --otel: attribute sets, comma "
                                                "separated: genai (OpenTelemetry GenAI conventions), "
                                                "openinference (Phoenix, Arize).")]
OtelMetricsOpt = Annotated[bool, typer.Option("--otel-metrics/--no-otel-metrics", help="With --otel: export "
                                              "metrics too (Phoenix takes none).")]


def _otel(cap: Capture, endpoint: str, content: bool, attributes: str, metrics: bool) -> None:
    """Set the OpenTelemetry export of a capture from the --otel flags."""
    cap.otel = endpoint
    cap.otel_content = content
    cap.otel_attributes = [a.strip() for a in attributes.split(",") if a.strip()]
    cap.otel_metrics = metrics


def otel_line(status: PipelineStatus, endpoint: str) -> str | None:
    """What the otlp sink did, one line for the end of `record` and `debug` (None without one)."""
    actor = next(iter(status.actors("sink", "otlp")), None)
    if actor is None:
        return None
    s = actor.stats
    line = f"OpenTelemetry: {s.get('spans_exported', 0):,} span(s) exported to {endpoint}"
    if s.get("spans_lost"):
        why = [(s.get("spans_failed_export", 0), "failed (receiver down, refusing or too slow)"),
               (s.get("spans_dropped_queue_full", 0), "dropped from the full queue"),
               (s.get("spans_unsent_at_stop", 0), "still queued at the stop")]
        line += f"; {s['spans_lost']:,} lost: " + ", ".join(f"{n:,} {what}" for n, what in why if n)
    if s.get("metric_exports_failed"):
        line += f"; {s['metric_exports_failed']} of {s.get('metric_exports', 0)} metric export(s) failed"
    return line


def capture_spec(cap: Capture) -> Any:
    """The pipeline of a capture, checked (one line and exit 2 when it cannot run here)."""
    try:
        spec = build_spec(cap.pipeline())
    except CaptureError as exc:
        fail(str(exc))
    if needs_bpf(spec):
        need_bpf()
    if cap.server:
        need_port(cap.server_host, cap.server_port)
    return spec


def _renamed(taken: str, name: str) -> None:
    typer.echo(f"agentsight: a pipeline named {taken!r} is already running; this one is {name!r}", err=True)


@contextmanager
def _run_errors() -> Iterator[None]:
    """The runtime's refusals to start a run, as one line each."""
    from agentsight.runtime.endpoints import RunDirError
    from agentsight.runtime.supervisor import AlreadyRunning

    try:
        yield
    except AlreadyRunning as exc:
        fail(f"{exc} (pass --name to run another capture beside it)")
    except RunDirError as exc:  # a runtime dir that is not the user's own and private
        fail(str(exc))


def run_capture(cap: Capture) -> int:
    """Run a capture pipeline until it stops, print its summary; returns its exit code.

    Another capture of the same name running (a second `debug` in another terminal) gets this
    one the next free name, said on stderr, unless a runtime dir was given."""
    from agentsight.runtime.session import run_pipeline

    spec = capture_spec(cap)
    with _run_errors():
        outcome = run_pipeline(spec, Path(cap.runtime_dir) if cap.runtime_dir else None, on_renamed=_renamed)
    typer.echo(outcome.summary, err=True)
    if cap.otel and (line := otel_line(outcome.status, cap.otel)):
        typer.echo(line, err=True)
    return outcome.code


_AFTER = " Options after `--` set options of the {} source (`-- --NAME VALUE`, names in docs/pipeline.md)."


@debug_app.command("ssl", context_settings=EXTRA,
                   help="TLS plaintext of every process (or -p/-c), optionally parsed as HTTP and LLM calls."
                   + _AFTER.format("ssl"))
@debug_app.command("process", context_settings=EXTRA,
                   help="Process exec/fork/exit, file opens and connects." + _AFTER.format("process"))
@debug_app.command("stdio", context_settings=EXTRA,
                   help="What a process (-p) or command (-c) reads from stdin and writes to stdout/stderr."
                   + _AFTER.format("stdio"))
@debug_app.command("system", context_settings=EXTRA,
                   help="CPU and memory of a process tree (-p) or the machine, with alert thresholds."
                   + _AFTER.format("system"))
@debug_app.command("mcp", context_settings=EXTRA,
                   help="MCP calls live: JSON-RPC over the stdio of -p PID's tree or -c COMM's processes, and over "
                   "HTTP (TLS) anywhere, each tool call tied to the LLM call that asked for it." + _AFTER.format("stdio"))
@debug_app.command("trace", context_settings=EXTRA,
                   help="Everything at once: TLS parsed into HTTP and LLM calls, processes, files, network, "
                   "agent sessions (stdio and system with --stdio/--system)." + _AFTER.format("ssl"))
@source_flags(after="disable_auth_removal")
def debug(
    ctx: typer.Context,
    comm: Annotated[str, typer.Option("--comm", "-c", help="Only processes with this command name.")] = "",
    pid: Annotated[int, typer.Option("--pid", "-p", help="Only this process (0: all).")] = 0,
    tree: Annotated[bool | None, typer.Option("--tree/--no-tree", help="Follow the descendants of --pid too "
                                              "(default: on for trace).")] = None,
    ssl: Annotated[bool | None, typer.Option("--ssl/--no-ssl", help="TLS plaintext source on/off.")] = None,
    process: Annotated[bool | None, typer.Option("--process/--no-process", help="Process/file/network source.")] = None,
    stdio: Annotated[bool | None, typer.Option("--stdio/--no-stdio", help="stdin/stdout/stderr source.")] = None,
    system: Annotated[bool | None, typer.Option("--system/--no-system", help="CPU/memory sampling.")] = None,
    http_parser: Annotated[bool, typer.Option("--http-parser", help="Parse HTTP requests/responses from TLS "
                                              "(and LLM calls from them).")] = False,
    sse_merge: Annotated[bool, typer.Option("--sse-merge", help="Parse Server-Sent Events live and merge each "
                                            "stream (implies --http-parser).")] = False,
    http_raw_data: Annotated[bool, typer.Option("--http-raw-data", help="Keep the raw ssl.data records beside the "
                                                "HTTP events.")] = False,
    http_filter: Annotated[list[str] | None, typer.Option("--http-filter", help="Drop HTTP events matching this "
                                                          "expression (repeatable; docs/filters.md).")] = None,
    ssl_filter: Annotated[list[str] | None, typer.Option("--ssl-filter", help="Drop TLS events matching this "
                                                         "expression (repeatable).")] = None,
    disable_auth_removal: Annotated[bool, typer.Option("--disable-auth-removal", help="Keep credentials in the "
                                                       "output (they are redacted by default).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No event output on the console.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout (default when piped).")] = False,
    log_file: Annotated[str, typer.Option("--log-file", help="Also write every event to this JSON-lines file "
                                          "(0600).")] = "",
    server: Annotated[bool, typer.Option("--server", help="Serve the web UI while capturing.")] = False,
    server_host: ServerHostOpt = DEFAULT_HOST,
    server_port: ServerPortOpt = DEFAULT_PORT,
    server_token: ServerTokenOpt = "",
    name: Annotated[str, typer.Option("--name", help="Pipeline name (tap/status find it by this).")] = "debug",
    runtime_dir: Annotated[str, typer.Option("--runtime-dir", help="Where the run keeps its sockets.")] = "",
    otel: OtelOpt = "",
    otel_content: OtelContentOpt = False,
    otel_attributes: OtelAttributesOpt = "genai",
    otel_metrics: OtelMetricsOpt = True,
    standalone: Annotated[bool, typer.Option("--standalone", help="Run a capture of its own even when a collector "
                                             "is running.")] = False,
    source_options: dict[str, dict[str, Any]] | None = None,
) -> None:
    assert source_options is not None  # the flags of the sources' options (see source_flags)
    kind = ctx.info_name or "trace"
    trace = kind == "trace"
    mcp = kind == "mcp"
    options = source_options  # what the flags set; `debug mcp` keeps as much of each MCP message as stdio can
    if mcp and source_options["stdio"]["max_bytes"] is None:
        options = {**source_options, "stdio": {**source_options["stdio"], "max_bytes": STDIO_MAX_BYTES}}
    parse_all = trace or mcp or http_parser or sse_merge or bool(http_filter) or bool(otel)  # --otel: LLM calls
    if mcp and stdio is None and not (pid or comm):
        typer.echo("agentsight: no -p/-c: MCP over stdio needs a target, only MCP over HTTP is seen", err=True)
    cap = Capture(
        name=name,
        ssl=ssl if ssl is not None else kind in ("ssl", "trace"),
        process=process if process is not None else kind in ("process", "trace"),
        stdio=stdio if stdio is not None else kind == "stdio" or (mcp and bool(pid or comm)),
        system=system if system is not None else kind == "system",
        pid=pid, tree=tree if tree is not None else trace or mcp, comm=comm,
        source_options=options,
        http=parse_all, http_raw=http_raw_data, sse_live=sse_merge, llm=parse_all, sessions=trace or mcp,
        mcp=trace or mcp,
        http_filter=list(http_filter or []), ssl_filter=list(ssl_filter or []),
        redact=not disable_auth_removal,
        console=not quiet, console_format="json" if as_json else "auto",
        console_topics=["mcp."] if mcp else [] if sse_merge or trace else [
            "ssl.", "http.request", "http.response", "http.exchange", "http.error", "llm.", "process.", "file.",
            "net.", "stdio.", "system.", "session.", "mcp."],
        log_file=log_file, server=server, server_host=server_host, server_port=server_port,
        server_token=server_token, runtime_dir=runtime_dir,
    )
    _otel(cap, otel, otel_content, otel_attributes, otel_metrics)
    try:
        cap.extra = parse_extra(list(ctx.args), PRIMARY[kind])
    except CaptureError as exc:
        fail(str(exc))
    # What a running collector already captures can be read from it (no eBPF of our own, no
    # root for one's own processes), unless a flag changes what is captured or how.
    own = (ssl, process, stdio, system, http_raw_data, disable_auth_removal, log_file, server, otel, http_filter,
           ssl_filter, cap.extra, standalone, changed(source_options, ("ssl", "process", "stdio")),
           kind in ("system", "stdio"), kind == "mcp" and bool(pid or comm))
    if not any(own) and not sse_merge:
        from agentsight.runtime import collector

        if collector.running():
            raise typer.Exit(_debug_from_collector(cap, pid, bool(cap.tree), comm))
    raise typer.Exit(run_capture(cap))


def _debug_from_collector(cap: Capture, pid: int, tree: bool, comm: str) -> int:
    """`debug` reading the running collector's events (what it shows, as a capture of its own would)."""
    import signal

    from agentsight.event import Event
    from agentsight.runtime.collector import CollectorError, Subscription

    topics = cap.console_topics or [""]
    if not cap.http:  # a debug ssl/process shows what those sources give, before any parsing
        topics = [t for t in topics if not t.startswith(("http.", "llm.", "session.", "mcp."))]
    sink = None
    if cap.console:
        from agentsight.actors.sinks.console import ConsoleSink

        sink = ConsoleSink("console", {"format": cap.console_format, "topics": []})
    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    try:
        sub = Subscription(topics, pid=pid, comm=comm, tree=tree)
    except CollectorError as exc:
        fail(str(exc))
    # Said once subscribed: whatever happens from now on is shown (tests and scripts wait for it).
    typer.echo("agentsight: reading the running collector's events (--standalone: a capture of its own)", err=True)
    shown = 0
    try:
        while not stop["flag"]:
            events: list[Event] = sub.recv(0.2)
            shown += len(events)
            if sink is not None and events:
                sink.write(events)
                sink.flush()
    except CollectorError as exc:
        typer.echo(f"agentsight: {exc}", err=True)
        return 1
    finally:
        sub.close()
    typer.echo(f"agentsight: {shown} event(s) shown" + (f", {sub.lost} lost (this reader was too slow)"
                                                        if sub.lost else ""), err=True)
    return 0


@debug_app.command("dump-bpf")
def dump_bpf(
    source: Annotated[str, typer.Argument(help="ssl, process or stdio.")],
    options: Annotated[list[str] | None, typer.Argument(help="Source options as --name value (after --).")] = None,
) -> None:
    """Print the final eBPF C a source would load (no root needed)."""
    from agentsight.pipeline.registry import UnknownType, component_class

    if source not in ("ssl", "process", "stdio"):
        fail(f"{source!r} has no eBPF program (choose ssl, process or stdio)")
    try:
        cls = component_class("source", source)
        opts = parse_extra(list(options or []), source).get(source, {})
        src = cls(source, opts)
    except (CaptureError, UnknownType, ValueError) as exc:
        fail(str(exc))
    from agentsight.kernel import bpfprog

    sys.stdout.write(bpfprog.program_text(source, src.defines()))  # type: ignore[attr-defined]


@debug_app.command("warm-bpf")
def warm_bpf(
    config: Annotated[list[Path] | None, typer.Option("--config", help="Also the programs of this pipeline.toml "
                                                      "(repeatable).")] = None,
) -> None:
    """Compile the eBPF programs `record` loads (and those of each --config) into the compile cache.

    bcc compiles a program in 1-2.5 s; the compiled bytecode is kept per program text, kernel and
    bcc release (/var/cache/agentsight/bpf, AGENTSIGHT_BPF_CACHE), so only the first load of each
    pays it. Run this once after installing or upgrading (scripts/setup.sh does) and the first
    `record` starts as fast as the next ones. Needs root.
    """
    import time

    from agentsight.kernel import bpfcache, bpfprog
    from agentsight.pipeline import config as pipeline_config
    from agentsight.pipeline.registry import component_class

    if bpfcache.cache_dir() is None:
        fail(f"the compile cache is off ({bpfcache.ENV}={os.environ.get(bpfcache.ENV, '')}): nothing to keep")
    need_bpf()
    pipelines = [("record", capture_spec(record_capture(os.getpid())))]
    for path in config or []:
        try:
            pipelines.append((str(path), pipeline_config.load(path)))
        except (OSError, pipeline_config.ConfigError) as exc:
            fail(f"{path}: {exc}")
    seen: set[tuple[str, str]] = set()
    for label, spec in pipelines:
        for comp in spec.components.values():
            if comp.kind != "source" or comp.type not in ("ssl", "process", "stdio"):
                continue
            try:
                source = component_class("source", comp.type)(comp.name, comp.options)
                request = source.bpf_request()  # type: ignore[attr-defined]
            except ValueError as exc:
                fail(f"{label}: sources.{comp.name}: {exc}")
            text = bpfprog.program_text(request.name, request.defines)
            if (request.name, text) in seen:
                continue
            seen.add((request.name, text))
            started = time.monotonic()
            try:
                how = bpfprog.warm(request)
            except bpfprog.BpfUnavailable as exc:
                fail(f"{label}: sources.{comp.name}: {exc}")
            said = {"hit": "kept already", "miss": "compiled and kept"}.get(how, "compiled, not kept (cache off)")
            typer.echo(f"{label}: sources.{comp.name} (bpf/{request.name}.bpf.c): {said} "
                       f"in {time.monotonic() - started:.1f} s")
    typer.echo(f"compile cache: {bpfcache.cache_dir()}")


@debug_app.command("find-tls")
def find_tls(
    paths: Annotated[list[Path], typer.Argument(help="Executables or libraries, or directories to search for them.")],
) -> None:
    """Say which TLS functions the ssl source would probe in each file, and how it found them.

    A stripped static build (Claude Code's Bun, Codex's rustls on aws-lc) is searched once
    per build and the result cached: running this on an agent's install directory after
    installing or updating it spares its first recorded run the search (~1 s), during
    which its first calls could not be seen. A directory is searched for ELF files.
    """
    from agentsight.kernel import tlslibs

    files: list[tuple[Path, bool]] = []  # (file, named on the command line)
    for path in paths:
        if path.is_dir():
            files.extend((p, False) for p in sorted(path.rglob("*"))
                         if p.is_file() and not p.is_symlink() and _is_elf(p))
        elif path.is_file():
            files.append((path, True))
        else:
            fail(f"{path} is not a file or a directory")
    quiet = 0
    for path, named in files:
        lib = tlslibs.inspect_elf(str(path))
        if lib is None and not named:
            quiet += 1
        elif lib is None:
            print(f"{path}: no TLS library agentsight can probe")
        elif lib.problem:
            print(f"{path}: {lib.found_by} compiled in, but its TLS functions were not found: {lib.problem}")
        else:
            how = "exported" if lib.found_by == "exports" else f"{lib.found_by}, found in the code"
            took = f" in {lib.search_s:.2f} s" if lib.search_s else " (cached)" if lib.found_by != "exports" else ""
            sites = ", ".join(f"{site.func} at {site.symbol:#x}" for site in lib.sites)
            print(f"{path}: {how}{took}: {sites}")
    if quiet:
        print(f"({quiet} more ELF file(s) in the directories have no TLS library agentsight can probe)")


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _record_through_collector(cmd: list[str], db: Path | None) -> int:
    """``record -- CMD`` as a client of the running collector; returns the command's exit code."""
    import time

    from agentsight.recording.record import CollectorRecordRun, RecordError
    from agentsight.runtime.held import invoking_user

    path = db or Path(time.strftime("agentsight-%Y%m%d-%H%M%S.db"))
    rec = CollectorRecordRun(path, cmd, invoking_user())

    def started(late: list[str]) -> None:
        typer.echo(f"agentsight: recording {rec.described} into {path} (through the collector"
                   + (f"; not confirmed in time by {', '.join(late)}" if late else "") + ")", err=True)

    try:
        result = rec.run(on_started=started)
    except RecordError as exc:
        fail(str(exc))
    typer.echo(result.summary, err=True)
    if result.unconfirmed is not None:
        typer.echo(f"agentsight: the collector did not confirm the end of the recording "
                   f"({result.unconfirmed}): its last events may be missing", err=True)
    elif result.collector_lost:
        typer.echo(f"agentsight: the collector lost {result.collector_lost} event(s) while recording "
                   "(of any process: some may be this command's)", err=True)
    return result.exit_code


def record_capture(target: int, comm: str = "", *, name: str = "record", stdio: bool = True, system: bool = True,
                   raw: bool = False, source_options: dict[str, dict[str, Any]] | None = None, redact: bool = True,
                   events: bool = False, db: str = "", described: str = "", server: bool = False,
                   server_host: str = DEFAULT_HOST, server_port: int = DEFAULT_PORT, server_token: str = "",
                   runtime_dir: str = "") -> Capture:
    """What a standalone ``record`` captures: the tree of ``target`` (or the processes named ``comm``)."""
    return Capture(
        name=name, ssl=True, process=True, stdio=stdio and bool(target), system=system and bool(target),
        pid=target, tree=bool(target), comm="" if target else comm,
        http=True, http_raw=raw, llm=True, sessions=True, root_pids=[target] if target else [], mcp=True,
        # MCP messages over stdio: as much of each as the source keeps
        source_options={**(source_options or {}), "stdio": {"max_bytes": STDIO_MAX_BYTES}},
        redact=redact, console=events, console_format="auto",
        db=db, db_meta={"command": described, "recorder": "agentsight record"},
        server=server, server_host=server_host, server_port=server_port, server_token=server_token,
        runtime_dir=runtime_dir,
    )


@app.command(context_settings={"allow_interspersed_args": False})
@source_flags(only=["--binary-path"], after="server_token")
def record(
    command: Annotated[list[str] | None, typer.Argument(help="The command to run and record (after --).")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="Recording file (default: "
                                            "./agentsight-<date>-<time>.db).")] = None,
    server: Annotated[bool, typer.Option("--server/--no-server", help="Serve the web UI while recording.")] = False,
    server_host: ServerHostOpt = DEFAULT_HOST,
    server_port: ServerPortOpt = DEFAULT_PORT,
    server_token: ServerTokenOpt = "",
    comm: Annotated[str, typer.Option("--comm", "-c", help="Record running processes with this name instead "
                                      "of starting a command.")] = "",
    pid: Annotated[int, typer.Option("--pid", "-p", help="Record this running process and its descendants.")] = 0,
    stdio: Annotated[bool, typer.Option("--stdio/--no-stdio", help="Capture the stdio of the command's "
                                        "processes.")] = True,
    system: Annotated[bool, typer.Option("--system/--no-system", help="Sample CPU and memory.")] = True,
    disable_auth_removal: Annotated[bool, typer.Option("--disable-auth-removal", help="Keep credentials in the "
                                                       "recording.")] = False,
    events: Annotated[bool, typer.Option("--events", help="Also print events live (mixed with the "
                                         "command's own output).")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Also keep every TLS record (ssl.data, redacted) in the "
                                      "recording, not only the parsed HTTP exchanges.")] = False,
    name: Annotated[str, typer.Option("--name", help="Pipeline name (tap/status/top find it by this).")] = "record",
    runtime_dir: Annotated[str, typer.Option("--runtime-dir", help="Where the run keeps its sockets.")] = "",
    otel: OtelOpt = "",
    otel_content: OtelContentOpt = False,
    otel_attributes: OtelAttributesOpt = "genai",
    otel_metrics: OtelMetricsOpt = True,
    standalone: Annotated[bool, typer.Option("--standalone", help="Run a private capture even when a collector "
                                             "is running.")] = False,
    source_options: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Run a command (an agent) and record everything it and its children do; print a summary.

    agentsight record -- claude -p "fix the tests"      (as root: sudo agentsight record -- ...)
    """
    import shutil
    import time

    from agentsight.recording.record import RecordRun
    from agentsight.runtime.held import invoking_user

    cmd = list(command or [])
    if not cmd and not comm and not pid:
        fail("nothing to record: give a command after --, or -c COMM / -p PID")
    if cmd and (comm or pid):
        fail("give either a command or -c/-p, not both")
    if cmd and shutil.which(cmd[0]) is None:
        fail(f"command not found: {cmd[0]}", 127)
    if pid and not procfs.alive(pid):
        fail(f"no process {pid}")
    # A running collector records for us (no eBPF to load, no root needed for one's own
    # processes), unless the flags ask for what only a private pipeline gives.
    assert source_options is not None  # --binary-path (see source_flags)
    private = [flag for flag, on in (("--server", server), ("--binary-path", changed(source_options, ["ssl"])),
                                     ("--raw", raw),
                                     ("--disable-auth-removal", disable_auth_removal), ("--events", events),
                                     ("--otel", bool(otel)), ("--standalone", standalone)) if on]
    if cmd and not private:
        from agentsight.runtime import collector

        if collector.running():
            raise typer.Exit(_record_through_collector(cmd, db))
    need_bpf()
    if server:
        need_port(server_host, server_port)
    path = db or Path(time.strftime("agentsight-%Y%m%d-%H%M%S.db"))
    # The command starts held (runs as, and the recording goes to, the user behind sudo): the
    # sources follow its pid before it runs. A problem from here exits; the held command with it, unrun.
    rec = RecordRun(path, cmd, pid=pid, comm=comm, owner=invoking_user()).start()
    target = rec.target
    described = rec.described
    cap = record_capture(
        target, comm, name=name, stdio=stdio, system=system, raw=raw, source_options=source_options,
        redact=not disable_auth_removal, events=events, db=str(path), described=described,
        server=server, server_host=server_host, server_port=server_port, server_token=server_token,
        runtime_dir=runtime_dir,
    )
    _otel(cap, otel, otel_content, otel_attributes, otel_metrics)
    spec = capture_spec(cap)

    def started() -> None:
        where = "; web UI at the URL above" if server else ""
        typer.echo(f"agentsight: recording {described} into {path}{where}", err=True)

    with _run_errors():
        result = rec.run(spec, Path(runtime_dir) if runtime_dir else None, on_started=started,
                         on_renamed=_renamed)
    if not result.started:
        typer.echo("agentsight: the capture could not start (see above)", err=True)
        raise typer.Exit(2)
    assert result.pipeline is not None
    typer.echo(result.summary, err=True)
    if otel and (line := otel_line(result.pipeline.status, otel)):
        typer.echo(line, err=True)
    if server:
        typer.echo(f"agentsight: the web UI stopped with the recording; browse it again with: "
                   f"agentsight serve --db {path}", err=True)
    if result.pipeline.code != 0:
        typer.echo("agentsight: an actor failed during the recording; see the messages above", err=True)
    raise typer.Exit(result.exit_code)
