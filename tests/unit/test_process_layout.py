"""The Python mirrors of bpf/process.h and bpf/stdio.h match the C structs (offsets and sizes)."""

from __future__ import annotations

import re
import struct

import pytest

from agentsight.actors.sources import process, stdio
from agentsight.kernel.bpfprog import bpf_dir

SIZES = {"u8": 1, "char": 1, "u16": 2, "u32": 4, "s32": 4, "u64": 8, "s64": 8}


def c_layout(header: str, defines: dict[str, int]) -> dict[str, list[tuple[str, int, int]]]:
    """struct name -> [(field, offset, size)] with natural alignment, from a simple C header."""
    text = (bpf_dir() / header).read_text()
    for name, value in re.findall(r"#define (\w+) (\d+)", text):
        defines.setdefault(name, int(value))
    layouts: dict[str, list[tuple[str, int, int]]] = {}
    sizes: dict[str, tuple[int, int]] = {}  # struct -> (size, alignment)
    for name, body in re.findall(r"struct (\w+) \{(.*?)\};", text, re.S):
        fields, off, align = [], 0, 1
        for ctype, fname, count in re.findall(r"^\s*(struct \w+|\w+) (\w+)(?:\[(\w+)\])?;", body, re.M):
            if ctype.startswith("struct "):
                size, falign = sizes[ctype.split()[1]]
            else:
                size = falign = SIZES[ctype]
            n = int(defines.get(count, count or 1)) if count else 1
            off = (off + falign - 1) // falign * falign
            fields.append((fname, off, size * n))
            off += size * n
            align = max(align, falign)
        sizes[name] = ((off + align - 1) // align * align, align)
        layouts[name] = fields
    return layouts


def offsets(fmt: struct.Struct, start: int = 0) -> list[int]:
    """Offset of each field of a little-endian, padding-free struct format."""
    out, off = [], start
    for count, code in re.findall(r"(\d*)([a-zA-Z])", fmt.format.lstrip("<")):
        out.append(off)
        off += struct.calcsize("<" + (count or "") + code)
    return out


@pytest.fixture(scope="module")
def proc_layout() -> dict[str, list[tuple[str, int, int]]]:
    return c_layout("process.h", {"COMM_LEN": 16})


def test_header(proc_layout: dict[str, list[tuple[str, int, int]]]) -> None:
    assert [o for _, o, _ in proc_layout["proc_header"]] == offsets(process.HEADER)
    assert process.HEADER.size == 40


@pytest.mark.parametrize("name, fmt", [
    ("exec_event", process.EXEC), ("fork_event", process.FORK), ("exit_event", process.EXIT),
    ("open_event", process.OPEN), ("connect_event", process.CONNECT),
])
def test_records(proc_layout: dict[str, list[tuple[str, int, int]]], name: str, fmt: struct.Struct) -> None:
    fields = proc_layout[name][1:]  # after the header
    mirrored = offsets(fmt, process.HEADER.size)
    assert [o for _, o, _ in fields][:len(mirrored)] == mirrored
    if name == "exec_event":
        assert fields[-1][0] == "args" and fields[-1][1] == process.EXEC_ARGS_OFFSET
        assert fields[-1][2] == process.ARGS_SIZE
    else:
        assert len(fields) == len(mirrored)


def test_stdio_record() -> None:
    fields = c_layout("stdio.h", {"COMM_LEN": 16})["stdio_event"]
    assert [o for _, o, _ in fields[:-1]] == offsets(stdio.RECORD)
    assert fields[-1][0] == "data" and fields[-1][1] == stdio.RECORD.size
