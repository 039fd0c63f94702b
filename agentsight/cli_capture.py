"""`agentsight debug ...` and `agentsight record`: capture pipelines built from flags."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agentsight.capture import Capture, CaptureError, build_spec, needs_bpf, parse_extra
from agentsight.cli import app, fail

__all__ = ["debug_app", "run_capture"]

debug_app = typer.Typer(
    help="Watch one kind of activity live (ssl, process, stdio, system) or everything (trace).",
    no_args_is_help=True,
)
app.add_typer(debug_app, name="debug")

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}

# The source that options after `--` go to, per subcommand.
PRIMARY = {"ssl": "ssl", "process": "process", "stdio": "stdio", "system": "system", "trace": "ssl"}


def run_capture(cap: Capture, *, on_running: Any = None, should_stop: Any = None, summary: bool = True) -> int:
    """Validate and run a capture pipeline under the supervisor; returns its exit code."""
    from agentsight.bpfprog import BpfUnavailable, require_bpf
    from agentsight.supervisor import AlreadyRunning, Supervisor

    try:
        spec = build_spec(cap.pipeline())
    except CaptureError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits
    if needs_bpf(spec):
        try:
            require_bpf()
        except BpfUnavailable as exc:
            fail(str(exc))
    sup = Supervisor(spec, None, Path(cap.runtime_dir) if cap.runtime_dir else None)
    sup.on_running = on_running
    sup.should_stop = should_stop
    try:
        code = sup.run_forever()
    except AlreadyRunning as exc:
        fail(f"{exc} (pass --name to run another capture beside it)")
        raise
    if summary:
        typer.echo(sup.summary(), err=True)
    run_capture.last_supervisor = sup  # type: ignore[attr-defined]
    return code


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
@debug_app.command("trace", context_settings=EXTRA,
                   help="Everything at once: TLS parsed into HTTP and LLM calls, processes, files, network, "
                   "agent sessions (stdio and system with --stdio/--system)." + _AFTER.format("ssl"))
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
    ssl_uid: Annotated[int, typer.Option("--ssl-uid", help="TLS: only this user id (-1: any).")] = -1,
    ssl_handshake: Annotated[bool, typer.Option("--ssl-handshake", help="TLS: also report handshakes.")] = False,
    binary_path: Annotated[list[str] | None, typer.Option("--binary-path", help="TLS: another binary or library "
                                                          "to probe (repeatable).")] = None,
    stdio_uid: Annotated[int, typer.Option("--stdio-uid", help="stdio: only this user id (-1: any).")] = -1,
    stdio_all_fds: Annotated[bool, typer.Option("--stdio-all-fds", help="stdio: every fd, not only 0-2.")] = False,
    stdio_max_bytes: Annotated[int, typer.Option("--stdio-max-bytes", help="stdio: bytes kept per call.")] = 8192,
    duration: Annotated[int, typer.Option("--duration", help="process: report exits of processes that lived at "
                                          "least this many ms.")] = 0,
    mode: Annotated[int, typer.Option("--mode", help="process: 0 all events, 1 lifecycle only, 2 only matching "
                                      "processes and their descendants.")] = 0,
    interval: Annotated[float, typer.Option("--interval", help="system: seconds between samples.")] = 1.0,
    cpu_threshold: Annotated[float, typer.Option("--cpu-threshold", help="system: alert above this CPU %.")] = 0.0,
    memory_threshold: Annotated[float, typer.Option("--memory-threshold", help="system: alert above this RSS "
                                                    "in MiB.")] = 0.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No event output on the console.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout (default when piped).")] = False,
    log_file: Annotated[str, typer.Option("--log-file", help="Also write every event to this JSON-lines file "
                                          "(0600).")] = "",
    server: Annotated[bool, typer.Option("--server", help="Serve the web UI while capturing.")] = False,
    server_host: Annotated[str, typer.Option("--server-host", help="Web UI address.")] = "127.0.0.1",
    server_port: Annotated[int, typer.Option("--server-port", help="Web UI port.")] = 7395,
    server_token: Annotated[str, typer.Option("--server-token", help="Token the web UI requires (needed off "
                                              "loopback).")] = "",
    name: Annotated[str, typer.Option("--name", help="Pipeline name (tap/status find it by this).")] = "debug",
    runtime_dir: Annotated[str, typer.Option("--runtime-dir", help="Where the run keeps its sockets.")] = "",
) -> None:
    kind = ctx.info_name or "trace"
    trace = kind == "trace"
    parse_all = trace or http_parser or sse_merge or bool(http_filter)
    cap = Capture(
        name=name,
        ssl=ssl if ssl is not None else kind in ("ssl", "trace"),
        process=process if process is not None else kind in ("process", "trace"),
        stdio=stdio if stdio is not None else kind == "stdio",
        system=system if system is not None else kind == "system",
        pid=pid, tree=tree if tree is not None else trace, comm=comm,
        ssl_uid=ssl_uid, ssl_handshake=ssl_handshake, binary_path=list(binary_path or []),
        duration_ms=duration, mode=mode,
        stdio_uid=stdio_uid, stdio_all_fds=stdio_all_fds, stdio_max_bytes=stdio_max_bytes,
        interval=interval, cpu_threshold=cpu_threshold, rss_threshold_mb=memory_threshold,
        http=parse_all, http_raw=http_raw_data, sse_live=sse_merge, llm=parse_all, sessions=trace,
        http_filter=list(http_filter or []), ssl_filter=list(ssl_filter or []),
        redact=not disable_auth_removal,
        console=not quiet, console_format="json" if as_json else "auto",
        console_topics=[] if sse_merge or trace else ["ssl.", "http.request", "http.response", "http.exchange",
                                                      "http.error", "llm.", "process.", "file.", "net.",
                                                      "stdio.", "system.", "session."],
        log_file=log_file, server=server, server_host=server_host, server_port=server_port,
        server_token=server_token, runtime_dir=runtime_dir,
    )
    try:
        cap.extra = parse_extra(list(ctx.args), PRIMARY[kind])
    except CaptureError as exc:
        fail(str(exc))
    raise typer.Exit(run_capture(cap))


@debug_app.command("dump-bpf")
def dump_bpf(
    source: Annotated[str, typer.Argument(help="ssl, process or stdio.")],
    options: Annotated[list[str] | None, typer.Argument(help="Source options as --name value (after --).")] = None,
) -> None:
    """Print the final eBPF C a source would load (no root needed)."""
    from agentsight.registry import UnknownType, component_class

    if source not in ("ssl", "process", "stdio"):
        fail(f"{source!r} has no eBPF program (choose ssl, process or stdio)")
    try:
        cls = component_class("source", source)
        opts = parse_extra(list(options or []), source).get(source, {})
        src = cls(source, opts)
    except (CaptureError, UnknownType, ValueError) as exc:
        fail(str(exc))
        return
    from agentsight import bpfprog

    sys.stdout.write(bpfprog.program_text(source, src.defines()))  # type: ignore[attr-defined]


