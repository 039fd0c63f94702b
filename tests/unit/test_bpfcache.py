"""The compile cache's pure parts: map-fd relocation, entries on disk, keys (no kernel needed);
tests/bpf/test_bpfload.py loads programs from real entries."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from agentsight.kernel import bpfcache
from agentsight.kernel.bpfcache import CacheError, Entry, MapSpec

INSN = struct.Struct("<BBhi")


def insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return INSN.pack(op, (src << 4) | dst, off, imm)


def ld_map(dst: int, fd: int) -> bytes:
    """ld_imm64 dst, map fd (two slots; the second holds the upper half: 0)."""
    return insn(0x18, dst, 1, 0, fd) + insn(0, 0, 0, 0, 0)


def ld_imm64(dst: int, value: int) -> bytes:
    return insn(0x18, dst, 0, 0, value & 0xFFFFFFFF) + insn(0, 0, 0, 0, value >> 32)


MOV_R0_0 = insn(0xB7, 0, 0, 0, 0)
EXIT = insn(0x95)


def imms(code: bytes) -> list[tuple[int, int, int]]:
    return [(op, regs >> 4, imm) for op, regs, _, imm in INSN.iter_unpack(code)]


def test_map_references_move_to_the_new_fds_and_nothing_else_changes() -> None:
    # A second slot whose low bits look like a map reference must not be read as one.
    tricky_second = insn(0x18, 1, 1, 0, 7)  # the 64-bit constant's second slot, by position
    code = (ld_map(1, 7) + MOV_R0_0 + ld_imm64(2, 7) + ld_map(3, 9) + insn(0x18, 4, 0, 0, 5) + tricky_second
            + EXIT)
    out = bpfcache.relocate(code, {7: 31, 9: 40})
    assert len(out) == len(code)
    got = imms(out)
    assert got[0] == (0x18, 1, 31)        # map fd 7 -> 31
    assert got[3] == (0x18, 0, 7)         # a plain 64-bit constant 7 stays 7
    assert got[5] == (0x18, 1, 40)        # map fd 9 -> 40
    assert got[8] == (0x18, 1, 7)         # the second slot of ld_imm64 r4: untouched
    assert out[8:24] == code[8:24] and out[-8:] == EXIT


def test_a_reference_to_an_unlisted_map_or_another_kind_of_ld_imm64_is_refused() -> None:
    with pytest.raises(CacheError, match="map fd 8"):
        bpfcache.relocate(ld_map(1, 8) + EXIT, {7: 31})
    map_value = insn(0x18, 1, 2, 0, 7) + insn(0, 0, 0, 0, 16)  # BPF_PSEUDO_MAP_VALUE: data the entry lacks
    with pytest.raises(CacheError, match="kind 2"):
        bpfcache.relocate(map_value + EXIT, {7: 31})


def entry() -> Entry:
    return Entry([MapSpec("events", 4, 27, 0, 0, 1 << 16), MapSpec("traced", 5, 1, 4, 1, 65536, flags=1)],
                 {"enter_write": ld_map(1, 4) + MOV_R0_0 + EXIT,
                  "tracepoint__sched__sched_process_exec": ld_map(1, 5) + EXIT},
                 "GPL", ["sched:sched_process_exec"])


def test_an_entry_survives_the_disk_and_is_private(tmp_path: Path) -> None:
    d = tmp_path / "cache"
    path = bpfcache.write(d, "k1", entry())
    assert (os.stat(d).st_mode & 0o777, os.stat(path).st_mode & 0o777) == (0o700, 0o600)
    back = bpfcache.read(d, "k1")
    assert back == entry()
    assert bpfcache.read(d, "absent") is None


def test_an_entry_others_could_have_written_is_not_used(tmp_path: Path) -> None:
    d = tmp_path / "cache"
    path = bpfcache.write(d, "k1", entry())
    os.chmod(path, 0o644)
    with pytest.raises(CacheError, match="mode 644"):
        bpfcache.read(d, "k1")
    os.chmod(path, 0o600)
    os.chmod(d, 0o777)
    with pytest.raises(CacheError, match="mode 777"):
        bpfcache.read(d, "k1")
    with pytest.raises(CacheError):
        bpfcache.write(d, "k2", entry())  # nor written into such a directory
    os.chmod(d, 0o700)
    path.unlink()
    (d / "k1.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text(json.dumps(entry().to_json()))
    with pytest.raises(CacheError, match="cannot read"):
        bpfcache.read(d, "k1")


@pytest.mark.parametrize("damage, message", [
    (lambda doc: doc.update(format=bpfcache.FORMAT + 1), "format"),
    (lambda doc: doc["functions"].update(enter_write="AAAA"), "whole instructions"),
    (lambda doc: doc["functions"].update(enter_write="not base64!"), "malformed"),
    (lambda doc: doc["maps"][0].pop("type"), "malformed"),
    (lambda doc: doc.update(tracepoints=["sched_process_exec"]), "category:event"),
    (lambda doc: doc.update(maps=None), "malformed"),
])
def test_a_damaged_entry_is_one_line_of_why(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "cache"
    path = bpfcache.write(d, "k1", entry())
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(CacheError, match=message) as err:
        bpfcache.read(d, "k1")
    assert "\n" not in str(err.value)
    path.write_bytes(b"\x00\xff garbage")
    with pytest.raises(CacheError, match="not JSON"):
        bpfcache.read(d, "k1")


def test_only_the_newest_entries_are_kept(tmp_path: Path) -> None:
    d = tmp_path / "cache"
    for i in range(5):
        path = bpfcache.write(d, f"k{i}", entry(), keep=3)
        os.utime(path, ns=(i * 10**9, i * 10**9))
    bpfcache.write(d, "k5", entry(), keep=3)
    assert sorted(p.stem for p in d.glob("*.json")) == ["k3", "k4", "k5"]
    assert not list(d.glob(".tmp-*"))


def test_the_key_follows_the_text_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    key = bpfcache.entry_key("int x;", ["-O2"])
    assert key == bpfcache.entry_key("int x;", ["-O2"])
    assert len({key, bpfcache.entry_key("int y;", ["-O2"]), bpfcache.entry_key("int x;", ["-O1"])}) == 3
    real = os.uname()
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(
        (real.sysname, real.nodename, real.release + "-other", real.version, real.machine)))
    assert bpfcache.entry_key("int x;", ["-O2"]) != key  # another kernel: another entry


@pytest.mark.parametrize("value, where", [("off", None), ("", None), ("OFF", None), ("/x/y", Path("/x/y"))])
def test_the_cache_directory_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch, value: str,
                                                           where: Path | None) -> None:
    monkeypatch.setenv(bpfcache.ENV, value)
    assert bpfcache.cache_dir() == where
    monkeypatch.delenv(bpfcache.ENV)
    assert bpfcache.cache_dir() == Path(bpfcache.DEFAULT_DIR)
