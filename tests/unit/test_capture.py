"""Pipelines built from flags: the graph each command asks the supervisor for."""

from __future__ import annotations

import pytest

from agentsight.pipeline.presets import Capture, CaptureError, build_spec, parse_extra


def graph(cap: Capture) -> dict[str, list[str]]:
    spec = build_spec(cap.pipeline())
    return {name: c.inputs for name, c in spec.components.items()}


def test_trace_chain_with_filters_sessions_and_sinks():
    cap = Capture(ssl=True, process=True, system=True, pid=42, tree=True, http=True, llm=True, sessions=True,
                  http_filter=["GET /health"], ssl_filter=["data.type=binary"], log_file="/tmp/x.jsonl",
                  db="/tmp/x.db")
    g = graph(cap)
    assert g["ssl_filter"] == ["ssl"]
    assert g["http"] == ["ssl_filter", "process"]  # exits reach the HTTP stage
    assert g["http_filter"] == ["http"] and g["sse"] == ["http_filter"] and g["llm"] == ["sse"]
    assert g["sessions"] == ["llm", "system"] and g["redact"] == ["sessions"]
    assert g["console"] == g["log"] == g["db"] == ["redact"]
    doc = cap.pipeline()
    assert doc["sources"]["ssl"]["pid"] == 42 and doc["sources"]["ssl"]["tree"] is True
    # Only the redacted end of the chain publishes to the bus.
    assert [n for n, c in build_spec(doc).components.items() if c.publish] == ["redact"]


def test_plain_sources_go_straight_to_redaction_and_quiet_has_a_null_sink():
    g = graph(Capture(process=True, console=False))
    assert g == {"process": [], "redact": ["process"], "discard": ["redact"]}


def test_flag_combinations_that_cannot_work_are_one_line_errors():
    with pytest.raises(CaptureError, match="every source is off"):
        Capture().pipeline()
    with pytest.raises(CaptureError, match="needs a target"):
        Capture(stdio=True).pipeline()
    with pytest.raises(CaptureError, match="needs the HTTP parser"):
        Capture(ssl=True, http_filter=["GET /"]).pipeline()
    with pytest.raises(CaptureError, match="source, which is off"):
        Capture(process=True, extra={"ssl": {"max_bytes": 1}}).pipeline()


def test_options_after_dashdash():
    assert parse_extra(["--max-bytes", "4096", "--comm", "python", "--handshake"], "ssl") == {
        "ssl": {"max_bytes": 4096, "comm": "python", "handshake": True}}
    assert parse_extra(["--binary-path=/opt/a"], "ssl") == {"ssl": {"binary_path": ["/opt/a"]}}
    with pytest.raises(CaptureError, match="no option --port"):
        parse_extra(["--port", "443"], "ssl")
    with pytest.raises(CaptureError, match="needs a value"):
        parse_extra(["--max-bytes"], "ssl")
    assert parse_extra([], "ssl") == {}


def test_the_commands_know_the_stdio_sources_largest_capture() -> None:
    from agentsight.actors.sources.stdio import MAX_BYTES_LIMIT
    from agentsight.commands.capture import STDIO_MAX_BYTES

    assert STDIO_MAX_BYTES == MAX_BYTES_LIMIT
