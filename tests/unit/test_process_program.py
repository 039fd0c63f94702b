"""Options -> the C the kernel runs (program_text), without loading anything."""

from __future__ import annotations

import re

import pytest

from agentsight.actors.sources.process import ProcessSource, process_defines
from agentsight.actors.sources.stdio import StdioSource, stdio_defines
from agentsight.kernel.bpfprog import program_text
from agentsight.pipeline.component import OptionError


def defines(**options: object) -> dict[str, object]:
    return process_defines(ProcessSource("p", options).options)


def test_default_traces_everything() -> None:
    d = defines()
    assert d["FILTER_TREE"] == 0 and d["FILTER_PID"] == 0 and d["FILTER_COMM_LEN"] == 0
    assert d["TRACE_FILES"] == 1 and d["MIN_DURATION_NS"] == 0


def test_pid_tree_comm_duration() -> None:
    assert defines(pid=1234)["FILTER_PID"] == 1234
    tree = defines(pid=1234, tree=True)
    assert tree["FILTER_TREE"] == 1 and tree["FILTER_PID"] == 0
    assert defines(pids=[5, 6])["FILTER_TREE"] == 1
    comm = defines(comm="python", duration=250)
    assert comm["FILTER_COMM"] == '"python"' and comm["FILTER_COMM_LEN"] == 6
    assert comm["SEED_BY_COMM"] == 0 and comm["MIN_DURATION_NS"] == 250_000_000


def test_modes() -> None:
    assert defines(mode=1)["TRACE_FILES"] == 0
    m2 = defines(mode=2, comm="node")
    assert m2["SEED_BY_COMM"] == 1 and m2["FILTER_TREE"] == 1 and m2["TRACE_FILES"] == 1
    assert defines(mode=2, pid=10)["FILTER_TREE"] == 1


def test_program_text_carries_the_defines_and_headers() -> None:
    text = program_text("process", defines(pid=1234, tree=True, comm="py", mode=1))
    assert "#define FILTER_TREE 1\n" in text
    assert '#define FILTER_COMM "py"\n' in text
    assert "#define TRACE_FILES 0\n" in text
    assert "struct exec_event {" in text and "BPF_HASH(traced" in text
    assert '#include "' not in text  # local headers are inlined


def test_stdio_program_text() -> None:
    d = stdio_defines(StdioSource("s", {"pid": 77, "all_fds": True, "max_bytes": 100, "uid": 1000}).options)
    text = program_text("stdio", d)
    for line in ("#define FILTER_PID 77", "#define ALL_FDS 1", "#define MAX_BYTES 100", "#define FILTER_UID 1000"):
        assert line + "\n" in text
    assert "struct stdio_event {" in text


@pytest.mark.parametrize("cls, options, message", [
    (ProcessSource, {"mode": 2}, "mode 2 (filter) needs pid, pids or comm"),
    (ProcessSource, {"comm": "x" * 16}, "at most 15 characters"),
    (ProcessSource, {"comm": 'a"b\n'}, "printable ASCII"),
    (ProcessSource, {"ring_kib": 12}, "power of two"),
    (ProcessSource, {"pids": [1, -2]}, "positive process ids"),
    (ProcessSource, {"mode": 3}, "must be one of"),
    (StdioSource, {}, "needs pid, pids, comm, uid or follow"),
    (StdioSource, {"pid": 1, "max_bytes": 20000}, "between 1 and 16384"),
])
def test_bad_options_are_one_line(cls: type, options: dict[str, object], message: str) -> None:
    with pytest.raises(OptionError, match=re.escape(message)) as info:
        cls("x", options)
    assert "\n" not in str(info.value)


def test_missing_pid_is_reported_before_loading() -> None:
    with pytest.raises(OptionError, match="no process with pid") as info:
        ProcessSource("p", {"pid": 2**22 + 1}).open()
    assert "\n" not in str(info.value)
