"""Finding TLS entry points in the real agents' stripped static binaries (agentsight.kernel.tlsfind).

The binaries are the pinned npm releases (scripts/setup.sh installs them for the tests);
nothing here knows their addresses: each found function is checked for what it must be
(distinct, inside .text, starting a function), and the real capture of their traffic is
tests/bpf/test_agents.py's job.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from agentsight.demo.clis import cache_dir
from agentsight.kernel import tlsfind, tlslibs

CLAUDE = cache_dir() / "node_modules/@anthropic-ai/claude-code/bin/claude.exe"
CODEX = cache_dir() / "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"


def installed(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is not installed (python -m agentsight.demo.clis install)")
    return path


def text_range(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".text")
        return sec["sh_addr"], sec["sh_addr"] + sec["sh_size"]


def assert_functions(path: Path, found: tlsfind.Found, names: set[str]) -> None:
    assert found.problem is None and set(found.functions) >= names
    lo, hi = text_range(path)
    addrs = [found.functions[n] for n in names]
    assert len(set(addrs)) == len(addrs) and all(lo <= a < hi for a in addrs)
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for a in addrs:  # each starts like a function (a push or an endbr64)
            seg = next(s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_vaddr"] <= a < s["p_vaddr"] + s["p_filesz"])
            f.seek(a - seg["p_vaddr"] + seg["p_offset"])
            head = f.read(4)
            assert head[:1] in (b"\x55", b"\x53", b"\x50") or head[:2] in (b"\x41\x57", b"\x41\x56", b"\x41\x55", b"\x41\x54") \
                or head == b"\xf3\x0f\x1e\xfa", (hex(a), head.hex())


def test_claude_code_boringssl_read_and_write_are_found() -> None:
    path = installed(CLAUDE)
    found = tlsfind.find_uncached(str(path))
    assert found.stack == "boringssl" and found.anchor.endswith("ssl/ssl_lib.cc")
    assert_functions(path, found, {"SSL_write", "SSL_read", "SSL_do_handshake"})


def test_codex_aws_lc_aead_functions_are_found() -> None:
    path = installed(CODEX)
    found = tlsfind.find_uncached(str(path))
    assert found.stack == "aws-lc" and found.anchor.endswith("cipher/aead.c")
    assert_functions(path, found, {"EVP_AEAD_CTX_seal_scatter", "EVP_AEAD_CTX_open_gather", "EVP_AEAD_CTX_open"})


def test_the_result_is_cached_per_build_privately(tmp_path: Path) -> None:
    path = installed(CLAUDE)
    cache = tmp_path / "cache"
    first = tlsfind.find(str(path), str(cache))
    started = time.perf_counter()
    second = tlsfind.find(str(path), str(cache))
    assert time.perf_counter() - started < 0.2
    assert not first.cached and second.cached and second.functions == first.functions
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    entries = list(cache.iterdir())
    assert len(entries) == 1 and stat.S_IMODE(entries[0].stat().st_mode) == 0o600
    key = tlsfind.cache_key(str(path))
    assert key is not None and entries[0].name == f"{key}.json"


def test_the_library_finder_probes_what_was_found() -> None:
    lib = tlslibs.inspect_elf(str(installed(CLAUDE)))
    assert lib is not None and lib.found_by == "boringssl" and lib.problem is None
    assert {s.func for s in lib.sites} == {"SSL_write", "SSL_read"}
    assert all(s.entry == s.symbol == s.ret for s in lib.sites)


def test_files_without_a_known_stack(tmp_path: Path) -> None:
    assert tlsfind.find_uncached("/bin/sh").stack is None
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(4096))
    found = tlsfind.find(str(junk), str(tmp_path / "c"))
    assert found.stack is None and found.problem and "ELF" in found.problem
    assert tlslibs.inspect_elf(str(junk)) is None
