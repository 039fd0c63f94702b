"""Finding TLS entry points in stripped, statically linked binaries by what their code does.

Claude Code's native build is Bun, with BoringSSL compiled in and none of its symbols
exported; Codex is Rust with rustls on aws-lc, stripped. No symbol table names their TLS
functions, and addresses change with every release, so they are found from the code:

1. **Anchor.** BoringSSL and aws-lc report errors with ``OPENSSL_PUT_ERROR(lib, reason)``,
   which passes the source file's path: every error site of ``ssl/ssl_lib.cc`` calls
   ``ERR_put_error(lib, [unused,] reason, file, line)`` with the address of one string
   ending in that path as ``file``: in ``rcx`` (reason in ``edx``, line in ``r8d``) or, in
   builds without the unused argument, in ``rdx`` (reason in ``esi``, line in ``ecx``).
2. **Sites.** Every instruction putting that address in ``rcx`` or ``rdx`` (``mov
   $imm32,%ecx`` in a position-dependent binary, ``lea disp(%rip),%rcx`` in a PIE) is
   found with one vectorised pass over ``.text`` (numpy), then decoded with capstone.
3. **Functions.** A site's enclosing function starts at the FDE that covers it (when
   ``.eh_frame_hdr`` has one) or at the nearest 16-byte-aligned prologue after padding from
   which a linear decode reaches the site. Each function is decoded whole; its error
   sites (reason, line) are read from the argument registers set before each call.
4. **Identification** by the reasons each function reports and their order in the file
   (see :func:`_find_boringssl`, :func:`_find_aws_lc_aead`), then a **shape check** of
   each candidate (a prologue, its arguments read before they are overwritten) before
   it may be probed.

The result is cached per build (GNU build id, else size and a hash of the file's head)
under :data:`CACHE_DIR` (``/var/cache/agentsight/tlsfind`` for root, else under
``~/.cache``; ``AGENTSIGHT_TLSFIND_CACHE`` overrides), negative results included, so a
second start costs one read of the ELF notes. x86-64 only; elsewhere nothing is found (and the caller says so).
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Found", "find", "find_uncached", "cache_key", "CACHE_DIR", "ANCHORS"]

log = logging.getLogger(__name__)

CACHE_DIR = os.environ.get("AGENTSIGHT_TLSFIND_CACHE") or (
    "/var/cache/agentsight/tlsfind" if os.geteuid() == 0
    else os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "agentsight", "tlsfind"))
_CACHE_VERSION = 1

# Source files whose error-report call sites anchor the search, and what they find.
ANCHORS = {
    "boringssl": (b"ssl/ssl_lib.cc", b"ssl/ssl_lib.c"),
    "aws-lc": (b"crypto/fipsmodule/cipher/aead.c",),
}

# BoringSSL / aws-lc error codes (include/openssl/err.h, ssl.h, cipher.h): stable ABI.
ERR_LIB_SSL = 16
ERR_LIB_CIPHER = 30
ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED = 66
SSL_R_BAD_LENGTH = 111
SSL_R_CONNECTION_TYPE_NOT_SET = 134
SSL_R_PROTOCOL_IS_SHUTDOWN = 194
SSL_R_SSL_HANDSHAKE_FAILURE = 215
SSL_R_UNINITIALIZED = 226
SSL_R_APPLICATION_DATA_ON_SHUTDOWN = 291
CIPHER_R_BAD_DECRYPT = 101
CIPHER_R_BUFFER_TOO_SMALL = 103
CIPHER_R_CTRL_NOT_IMPLEMENTED = 104
CIPHER_R_INVALID_OPERATION = 112
CIPHER_R_OUTPUT_ALIASES_INPUT = 115
CIPHER_R_TOO_LARGE = 117

_NOT_USED = "no error reports in the code from"
_MAX_FUNCTION = 1 << 16      # bytes decoded at most per function
_MAX_BACKTRACK = 1 << 16     # how far before a site its function may start
_PADDING = (0xCC, 0x90)


@dataclass
class Found:
    """What was found in one file: the stack, its functions (name -> address), or why not."""

    stack: str | None = None          # "boringssl", "aws-lc" or None (no known TLS stack inside)
    functions: dict[str, int] = field(default_factory=dict)
    problem: str | None = None        # the stack is there but its entry points could not be told apart
    anchor: str = ""                  # the source path string the search started from
    seconds: float = 0.0              # time the search took (0 when read from the cache)
    cached: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"version": _CACHE_VERSION, "stack": self.stack, "functions": self.functions,
                "problem": self.problem, "anchor": self.anchor, "seconds": round(self.seconds, 3)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Found:
        return cls(doc.get("stack"), {k: int(v) for k, v in doc.get("functions", {}).items()},
                   doc.get("problem"), doc.get("anchor", ""), float(doc.get("seconds", 0.0)), cached=True)


# --------------------------------------------------------------------------- the ELF file


class _Binary:
    """One ELF file, memory-mapped: its sections, executable code and FDE table."""

    def __init__(self, path: str) -> None:
        from elftools.elf.elffile import ELFFile

        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self.elf = ELFFile(self._file)
        self.x86_64 = self.elf["e_machine"] == "EM_X86_64"
        self.pie = self.elf["e_type"] == "ET_DYN"
        self.text = self._section(".text")
        self.ro = [s for s in (self._section(".rodata"), self._section(".rodata.str1.1")) if s]
        self._fdes: Any = None

    def _section(self, name: str) -> tuple[int, int, int] | None:
        sec = self.elf.get_section_by_name(name)
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            return None
        return (sec["sh_addr"], sec["sh_offset"], sec["sh_size"])

    def close(self) -> None:
        self.map.close()
        self._file.close()

    def code(self, addr: int, size: int) -> bytes:
        """``size`` bytes of .text at ``addr`` (cut at the section's end)."""
        assert self.text is not None
        base, off, total = self.text
        if not base <= addr < base + total:
            return b""
        start = off + addr - base
        return self.map[start:min(start + size, off + total)]

    def strings_ending(self, suffix: bytes) -> list[tuple[int, bytes]]:
        """(address, text) of every NUL-terminated string in read-only data ending with suffix."""
        found = []
        for base, off, size in self.ro:
            pos = off
            while True:
                i = self.map.find(suffix + b"\0", pos, off + size)
                if i < 0:
                    break
                start = self.map.rfind(b"\0", off, i) + 1
                found.append((base + start - off, self.map[start:i + len(suffix)]))
                pos = i + 1
        return found

    def fde_start(self, addr: int) -> int | None:
        """Start of the function whose FDE covers ``addr`` (from .eh_frame_hdr), or None."""
        found = self._fde(addr)
        return found[0] if found else None

    def fde_end(self, start: int) -> int | None:
        """End of the function an FDE says starts at ``start``, or None."""
        found = self._fde(start)
        return found[1] if found and found[0] == start else None

    def _fde(self, addr: int) -> tuple[int, int] | None:
        if self._fdes is None:
            self._fdes = _fde_table(self)
        starts, ends = self._fdes
        if starts is None or not len(starts):
            return None
        import numpy as np

        i = int(np.searchsorted(starts, addr, side="right")) - 1
        if i >= 0 and starts[i] <= addr < ends[i]:
            return int(starts[i]), int(ends[i])
        return None


def _fde_table(binary: _Binary) -> tuple[Any, Any]:
    """Sorted function starts and ends from .eh_frame_hdr's binary search table."""
    import numpy as np

    hdr = binary.elf.get_section_by_name(".eh_frame_hdr")
    eh = binary.elf.get_section_by_name(".eh_frame")
    if hdr is None or eh is None:
        return None, None
    data = hdr.data()
    # version 1, eh_frame_ptr enc, fde_count enc, table enc = datarel|sdata4 (0x3b)
    if len(data) < 12 or data[0] != 1 or data[2] != 0x03 or data[3] != 0x3B:
        return None, None
    count = int.from_bytes(data[8:12], "little")
    table = np.frombuffer(data, dtype="<i4", count=count * 2, offset=12).reshape(count, 2)
    base = hdr["sh_addr"]
    starts = table[:, 0].astype(np.int64) + base
    fdes = table[:, 1].astype(np.int64) + base
    # The FDE's pc_range follows its length, CIE pointer and pc_begin (pcrel|sdata4: 4 bytes each).
    eh_base, eh_off = eh["sh_addr"], eh["sh_offset"]
    raw = np.frombuffer(binary.map, dtype=np.uint8)
    ranges = np.empty(count, dtype=np.int64)
    offs = fdes - eh_base + eh_off + 12
    valid = (offs >= 0) & (offs + 4 <= len(raw))
    b = [raw[np.where(valid, offs + k, 0)].astype(np.int64) for k in range(4)]
    ranges[:] = np.where(valid, b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24), 0)
    order = np.argsort(starts)
    return starts[order], (starts + ranges)[order]


# --------------------------------------------------------------------------- code scanning


def _text_array(binary: _Binary) -> Any:
    import numpy as np

    assert binary.text is not None
    _, off, size = binary.text
    return np.frombuffer(binary.map, dtype=np.uint8, count=size, offset=off)


def _rel32(arr: Any, idx: Any) -> Any:
    import numpy as np

    v = (arr[idx].astype(np.int64) | (arr[idx + 1].astype(np.int64) << 8)
         | (arr[idx + 2].astype(np.int64) << 16) | (arr[idx + 3].astype(np.int64) << 24))
    return np.where(v >= 1 << 31, v - (1 << 32), v)


def _chunks(n: int, step: int = 1 << 24, overlap: int = 16) -> Iterator[tuple[int, int]]:
    for start in range(0, n, step):
        yield start, min(n, start + step + overlap)


def _loads_of(binary: _Binary, target: int) -> list[int]:
    """Addresses of instructions putting ``target`` in rcx or rdx (``mov $imm32``, ``lea (%rip)``)."""
    import numpy as np

    assert binary.text is not None
    base, off, size = binary.text
    found: list[int] = []
    if not binary.pie and target < 1 << 32:  # position-dependent code loads addresses as immediates
        for opcode in (b"\xb9", b"\xba"):  # mov $imm32,%ecx / %edx
            needle = opcode + target.to_bytes(4, "little")
            pos = off
            while True:
                i = binary.map.find(needle, pos, off + size)
                if i < 0:
                    break
                found.append(base + i - off)
                pos = i + 1
        return sorted(set(found))
    arr = _text_array(binary)
    for start, end in _chunks(size):
        view = arr[start:end]
        # 48 8d 0d/15 disp32: lea disp(%rip),%rcx / %rdx (one full-size comparison, then filter)
        idx = np.flatnonzero(view[1:-5] == 0x8D)
        idx = idx[(view[idx] == 0x48) & ((view[idx + 2] == 0x0D) | (view[idx + 2] == 0x15))]
        if len(idx):
            dest = base + start + idx + 7 + _rel32(view, idx + 3)
            found.extend(int(base + start + i) for i in idx[dest == target])
    return sorted(set(found))


def _callers_of(binary: _Binary, target: int) -> list[int]:
    """Addresses of direct ``call``/``jmp rel32`` instructions to ``target``."""
    import numpy as np

    assert binary.text is not None
    base, _, size = binary.text
    arr = _text_array(binary)
    found: list[int] = []
    for start, end in _chunks(size):
        view = arr[start:end]
        idx = np.flatnonzero((view[:-5] | 1) == 0xE9)  # e8 call, e9 jmp
        if len(idx):
            dest = base + start + idx + 5 + _rel32(view, idx + 1)
            found.extend(int(base + start + i) for i in idx[dest == target])
    return sorted(set(found))


_PROLOGUES = (b"\x55\x48\x89\xe5", b"\xf3\x0f\x1e\xfa", b"\x41\x57", b"\x41\x56", b"\x41\x55", b"\x41\x54",
              b"\x55", b"\x53", b"\x48\x83\xec", b"\x48\x81\xec", b"\x50")


def _disassembler() -> Any:
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return md


@dataclass
class _Function:
    """One decoded function: its instructions, error sites and direct calls."""

    start: int
    end: int
    sites: list[tuple[int, int, int]]      # (library, reason, line) of each error report
    calls: list[int]                        # targets of direct calls, in order
    insns: list[Any]


class _Decoder:
    def __init__(self, binary: _Binary) -> None:
        _base_reg(0)  # fills the register tables
        self.binary = binary
        self.md = _disassembler()
        self._cache: dict[int, _Function] = {}

    def function_at(self, addr: int) -> int | None:
        """Start of the function containing ``addr``."""
        start = self.binary.fde_start(addr)
        if start is not None:
            return start
        lo = max(addr - _MAX_BACKTRACK, self.binary.text[0] if self.binary.text else 0)
        window = self.binary.code(lo, addr - lo)
        # Candidates: 16-byte aligned, after padding (or a ret/jmp), starting like a function.
        cand = addr - addr % 16
        while cand >= lo:
            i = cand - lo
            before = window[i - 1] if i > 0 else 0xCC
            if (before in _PADDING or before == 0xC3) and window[i:i + 4].startswith(_PROLOGUES) \
                    and self._reaches(cand, addr):
                return cand
            cand -= 16
        return None

    def _reaches(self, start: int, addr: int) -> bool:
        """Whether a linear decode from ``start`` lands on ``addr`` without crossing padding."""
        code = self.binary.code(start, addr - start + 16)
        for ins in self.md.disasm_lite(code, start):
            if ins[0] == addr:
                return True
            if ins[0] > addr or ins[2] == "int3":
                return False
        return False

    def decode(self, start: int, anchor: int | None = None) -> _Function:
        """Decode the function at ``start``, with the error sites loading ``anchor``.

        The function ends where its FDE says, else at padding (``int3``), else after an
        unconditional jump or return that no jump seen so far goes past (the usual
        linear-sweep rule for code without padding between functions).
        """
        cached = self._cache.get(start)
        if cached is not None:
            return cached
        import capstone
        import capstone.x86 as x86

        insns: list[Any] = []
        sites: list[tuple[int, int, int]] = []
        calls: list[int] = []
        regs: dict[int, int] = {}
        anchored: int | None = None  # the argument register holding the anchor
        end = start
        limit = self.binary.fde_end(start) or start + _MAX_FUNCTION
        reach = start  # the furthest address a jump inside the function goes to
        for ins in self.md.disasm(self.binary.code(start, limit - start), start):
            if ins.mnemonic == "int3" or (ins.address > reach and insns and insns[-1].mnemonic in ("ret", "jmp")):
                break
            insns.append(ins)
            end = ins.address + ins.size
            ops = ins.operands
            if ins.mnemonic == "mov" and len(ops) == 2 and ops[0].type == x86.X86_OP_REG \
                    and ops[1].type == x86.X86_OP_IMM:
                regs[_base_reg(ops[0].reg)] = ops[1].imm
                if anchor is not None and ops[1].imm == anchor and _base_reg(ops[0].reg) in _FILE_ARGS:
                    anchored = _base_reg(ops[0].reg)
            elif ins.mnemonic == "lea" and len(ops) == 2 and ops[1].type == x86.X86_OP_MEM \
                    and ops[1].mem.base == x86.X86_REG_RIP:
                dest = ins.address + ins.size + ops[1].mem.disp
                if anchor is not None and dest == anchor and _base_reg(ops[0].reg) in _FILE_ARGS:
                    anchored = _base_reg(ops[0].reg)
            elif ins.mnemonic == "xor" and len(ops) == 2 and ops[0].type == x86.X86_OP_REG \
                    and ops[1].type == x86.X86_OP_REG and ops[0].reg == ops[1].reg:
                regs[_base_reg(ops[0].reg)] = 0
            if ins.group(capstone.CS_GRP_CALL) or ins.group(capstone.CS_GRP_JUMP) \
                    or ins.group(capstone.CS_GRP_RET):
                if anchored is not None:
                    # ERR_put_error(lib, [unused,] reason, file, line): the reason is the
                    # argument before the file's, the line the one after.
                    reason_reg, line_reg = _FILE_ARGS[anchored]
                    sites.append((regs.get(x86.X86_REG_RDI, -1), regs.get(reason_reg, -1), regs.get(line_reg, -1)))
                if ins.mnemonic == "call" and ops and ops[0].type == x86.X86_OP_IMM:
                    calls.append(ops[0].imm)
                elif ins.group(capstone.CS_GRP_JUMP) and ops and ops[0].type == x86.X86_OP_IMM \
                        and start < ops[0].imm < limit:
                    reach = max(reach, ops[0].imm)
                regs = {}
                anchored = None
        fn = _Function(start, end, sites, calls, insns)
        self._cache[start] = fn
        return fn


_REG_BASE: dict[int, int] = {}
_FILE_ARGS: dict[int, tuple[int, int]] = {}  # file's register -> (reason's, line's)


def _base_reg(reg: int) -> int:
    """The 64-bit register a register operand is part of (edx -> rdx, r8d -> r8)."""
    if not _REG_BASE:
        import capstone.x86 as x86

        for names, full in (
            (("AL", "AX", "EAX", "RAX"), "RAX"), (("BL", "BX", "EBX", "RBX"), "RBX"),
            (("CL", "CX", "ECX", "RCX"), "RCX"), (("DL", "DX", "EDX", "RDX"), "RDX"),
            (("SIL", "SI", "ESI", "RSI"), "RSI"), (("DIL", "DI", "EDI", "RDI"), "RDI"),
            *(((f"R{n}B", f"R{n}W", f"R{n}D", f"R{n}"), f"R{n}") for n in range(8, 16)),
        ):
            for name in names:
                _REG_BASE[getattr(x86, f"X86_REG_{name}")] = getattr(x86, f"X86_REG_{full}")
        _FILE_ARGS[x86.X86_REG_RCX] = (x86.X86_REG_RDX, x86.X86_REG_R8)
        _FILE_ARGS[x86.X86_REG_RDX] = (x86.X86_REG_RSI, x86.X86_REG_RCX)
    return _REG_BASE.get(reg, reg)


# --------------------------------------------------------------------------- shape checks


def _args_read_first(fn: _Function, regs: tuple[str, ...]) -> bool:
    """Whether the function takes each of ``regs`` as an argument: on some path from its
    entry, the register is read before it is written (following jumps, up to a call)."""
    import capstone
    import capstone.x86 as x86

    want = {getattr(x86, f"X86_REG_{r.upper()}") for r in regs}
    index = {ins.address: i for i, ins in enumerate(fn.insns)}
    live: set[int] = set()
    seen: set[tuple[int, frozenset[int]]] = set()
    todo: list[tuple[int, frozenset[int]]] = [(0, frozenset())]
    while todo and live != want:
        i, written = todo.pop()
        while i < len(fn.insns) and (i, written) not in seen:
            seen.add((i, written))
            ins = fn.insns[i]
            read, wrote = ins.regs_access()
            if not (ins.mnemonic == "xor" and len(ins.operands) == 2 and ins.operands[0].type == x86.X86_OP_REG
                    and ins.operands[0].reg == ins.operands[1].reg):  # xor %r,%r reads nothing
                live |= {_base_reg(r) for r in read if _base_reg(r) in want and _base_reg(r) not in written}
            written = written | {_base_reg(r) for r in wrote if _base_reg(r) in want}
            if ins.group(capstone.CS_GRP_CALL) or ins.group(capstone.CS_GRP_RET) or ins.group(capstone.CS_GRP_INT):
                break
            if ins.group(capstone.CS_GRP_JUMP):
                op = ins.operands[0] if ins.operands else None
                if op is not None and op.type == x86.X86_OP_IMM and op.imm in index:
                    todo.append((index[op.imm], written))
                if ins.mnemonic == "jmp":
                    break
            i += 1
    return live == want


def _has_prologue(binary: _Binary, addr: int) -> bool:
    return binary.code(addr, 4).startswith(_PROLOGUES)


def _stores_after(fn: _Function, call_target: int) -> bool:
    """Whether the function writes memory (not its stack frame) after calling ``call_target``."""
    import capstone.x86 as x86

    after = False
    for ins in fn.insns:
        if ins.mnemonic == "call" and ins.operands and ins.operands[0].type == x86.X86_OP_IMM \
                and ins.operands[0].imm == call_target:
            after = True
            continue
        if not after or ins.mnemonic not in ("mov", "add", "sub", "movq", "movups"):
            continue
        ops = ins.operands
        if ops and ops[0].type == x86.X86_OP_MEM and ops[0].mem.base not in (x86.X86_REG_RSP, x86.X86_REG_RBP):
            return True
    return False


# --------------------------------------------------------------------------- BoringSSL


def _functions_by_site(dec: _Decoder, anchor: int, lib: int) -> dict[int, _Function]:
    """The functions reporting errors from the anchor's file, with library code ``lib``."""
    out: dict[int, _Function] = {}
    for load in _loads_of(dec.binary, anchor):
        start = dec.function_at(load)
        if start is None or start in out:
            continue
        fn = dec.decode(start, anchor)
        if any(site[0] == lib for site in fn.sites):
            out[start] = fn
    return out


def _reasons(fn: _Function, lib: int) -> set[int]:
    return {reason for site_lib, reason, _ in fn.sites if site_lib == lib}


def _lines(fn: _Function, lib: int) -> list[int]:
    return [line for site_lib, _, line in fn.sites if site_lib == lib]


def _find_boringssl(dec: _Decoder, anchor: int) -> dict[str, int] | str:
    """SSL_write, SSL_read (and SSL_do_handshake) of a BoringSSL build, or why not.

    In ``ssl/ssl_lib.cc`` (source order: ssl_read_impl, SSL_read, SSL_peek, SSL_write):
    - SSL_write reports UNINITIALIZED and BAD_LENGTH (and no other function does both);
    - ssl_read_impl reports UNINITIALIZED and SSL_HANDSHAKE_FAILURE, above SSL_write;
    - SSL_peek calls ssl_read_impl and reports only SHOULD_NOT_HAVE_BEEN_CALLED; SSL_read
      is SSL_peek plus consuming what was read: either SSL_peek inlined into it (the
      candidate writes memory after calling ssl_read_impl), or a function calling SSL_peek
      and then writing memory;
    - SSL_do_handshake reports CONNECTION_TYPE_NOT_SET only.
    """
    fns = _functions_by_site(dec, anchor, ERR_LIB_SSL)
    if not fns:
        return f"{_NOT_USED} ssl_lib.cc"
    writes = [f for f in fns.values() if {SSL_R_UNINITIALIZED, SSL_R_BAD_LENGTH} <= _reasons(f, ERR_LIB_SSL)]
    impls = [f for f in fns.values() if {SSL_R_UNINITIALIZED, SSL_R_SSL_HANDSHAKE_FAILURE} <= _reasons(f, ERR_LIB_SSL)
             and not _reasons(f, ERR_LIB_SSL) & {SSL_R_BAD_LENGTH, SSL_R_APPLICATION_DATA_ON_SHUTDOWN,
                                                 SSL_R_CONNECTION_TYPE_NOT_SET, SSL_R_PROTOCOL_IS_SHUTDOWN}]
    if len(writes) != 1:
        return f"{len(writes)} candidates for SSL_write (want 1)"
    if len(impls) != 1:
        return f"{len(impls)} candidates for ssl_read_impl (want 1)"
    write, impl = writes[0], impls[0]
    if not max(_lines(impl, ERR_LIB_SSL)) < min(_lines(write, ERR_LIB_SSL)):
        return "ssl_read_impl's reports do not come before SSL_write's in ssl_lib.cc"
    read = _find_ssl_read(dec, impl.start, fns)
    if isinstance(read, str):
        return read
    found = {"SSL_write": write.start, "SSL_read": read}
    for name in ("SSL_write", "SSL_read"):
        fn = dec.decode(found[name])
        if not _has_prologue(dec.binary, fn.start) or not _args_read_first(fn, ("rdi", "rsi", "rdx")):
            return f"the candidate for {name} at {fn.start:#x} does not take (SSL *, buf, num)"
    handshakes = [f for f in fns.values() if _reasons(f, ERR_LIB_SSL) == {SSL_R_CONNECTION_TYPE_NOT_SET}]
    if len(handshakes) == 1:
        found["SSL_do_handshake"] = handshakes[0].start
    return found


def _find_ssl_read(dec: _Decoder, impl: int, fns: dict[int, _Function]) -> int | str:
    callers = {s for s in (dec.function_at(c) for c in _callers_of(dec.binary, impl)) if s is not None}
    # SSL_peek (or SSL_read with SSL_peek inlined): no report of its own but "should not have been called".
    peeks = [s for s in callers if _reasons(fns[s], ERR_LIB_SSL) <= {ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED}] \
        if all(s in fns for s in callers) else \
        [s for s in callers if s not in fns or _reasons(fns[s], ERR_LIB_SSL) <= {ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED}]
    reads = [s for s in peeks if _stores_after(dec.decode(s), impl)]
    if len(reads) == 1:
        return reads[0]
    if len(peeks) != 1:
        return f"{len(peeks)} candidates for SSL_peek (want 1)"
    peek = peeks[0]
    outer = {s for s in (dec.function_at(c) for c in _callers_of(dec.binary, peek)) if s is not None}
    reads = [s for s in outer if s not in fns and _stores_after(dec.decode(s), peek)
             and dec.decode(s).calls[:1] == [peek]]
    if len(reads) != 1:
        return f"{len(reads)} candidates for SSL_read around SSL_peek at {peek:#x} (want 1)"
    return reads[0]


# --------------------------------------------------------------------------- aws-lc AEAD


def _find_aws_lc_aead(dec: _Decoder, anchor: int) -> dict[str, int] | str:
    """The AEAD seal/open entry points of an aws-lc (or BoringSSL) build, or why not.

    In ``crypto/fipsmodule/cipher/aead.c`` (source order: seal, seal_scatter, open,
    open_gather), each function first checks buffer aliasing (OUTPUT_ALIASES_INPUT), then:
    - EVP_AEAD_CTX_seal: TOO_LARGE / BUFFER_TOO_SMALL;
    - EVP_AEAD_CTX_seal_scatter: INVALID_OPERATION (extra_in not supported);
    - EVP_AEAD_CTX_open: BAD_DECRYPT / BUFFER_TOO_SMALL (and no TOO_LARGE);
    - EVP_AEAD_CTX_open_gather: CTRL_NOT_IMPLEMENTED.
    seal_scatter and open_gather are required (rustls on aws-lc-rs seals through the former
    and opens through EVP_AEAD_CTX_open, which calls the latter).
    """
    fns = _functions_by_site(dec, anchor, ERR_LIB_CIPHER)
    aliasing = [f for f in fns.values() if CIPHER_R_OUTPUT_ALIASES_INPUT in _reasons(f, ERR_LIB_CIPHER)]
    if not aliasing:
        return f"{_NOT_USED} aead.c"

    def pick(want: int, without: set[int]) -> list[_Function]:
        return [f for f in aliasing if want in _reasons(f, ERR_LIB_CIPHER) and not _reasons(f, ERR_LIB_CIPHER) & without]

    roles = {
        "EVP_AEAD_CTX_seal": pick(CIPHER_R_TOO_LARGE, {CIPHER_R_INVALID_OPERATION, CIPHER_R_BAD_DECRYPT}),
        "EVP_AEAD_CTX_seal_scatter": pick(CIPHER_R_INVALID_OPERATION, {CIPHER_R_BAD_DECRYPT, CIPHER_R_CTRL_NOT_IMPLEMENTED}),
        "EVP_AEAD_CTX_open": pick(CIPHER_R_BAD_DECRYPT, {CIPHER_R_TOO_LARGE, CIPHER_R_INVALID_OPERATION}),
        "EVP_AEAD_CTX_open_gather": pick(CIPHER_R_CTRL_NOT_IMPLEMENTED, {CIPHER_R_BAD_DECRYPT, CIPHER_R_INVALID_OPERATION}),
    }
    found: dict[str, int] = {}
    for name, cands in roles.items():
        if len(cands) == 1:
            found[name] = cands[0].start
        elif len(cands) > 1:
            return f"{len(cands)} candidates for {name} (want 1)"
    for required in ("EVP_AEAD_CTX_seal_scatter", "EVP_AEAD_CTX_open_gather"):
        if required not in found:
            return f"{required} not found among aead.c's functions"
    order = [found[n] for n in ("EVP_AEAD_CTX_seal", "EVP_AEAD_CTX_seal_scatter", "EVP_AEAD_CTX_open",
                                "EVP_AEAD_CTX_open_gather") if n in found]
    lines = [min(_lines(dec.decode(a), ERR_LIB_CIPHER)) for a in order]
    if lines != sorted(lines):
        return "aead.c's functions report in an unexpected order"
    for name, addr in found.items():
        if not _has_prologue(dec.binary, addr) or not _args_read_first(dec.decode(addr), ("rdi", "rsi")):
            return f"the candidate for {name} at {addr:#x} does not take (ctx, out, ...)"
    return found


_FINDERS = {"boringssl": _find_boringssl, "aws-lc": _find_aws_lc_aead}


# --------------------------------------------------------------------------- entry points


def find_uncached(path: str) -> Found:
    """Search ``path`` (no cache): which TLS stack is compiled in, and its entry points."""
    started = time.perf_counter()
    try:
        binary = _Binary(path)
    except (OSError, ValueError) as exc:
        return Found(problem=f"cannot read the file: {exc}")
    except Exception as exc:  # pyelftools raises its own ELFError for non-ELF files
        return Found(problem=f"not an ELF file: {exc}")
    try:
        if not binary.x86_64 or binary.text is None:
            return Found(seconds=time.perf_counter() - started)
        # Stacks in order of preference (the TLS layer over the cipher layer); a stack whose
        # anchor string is there but reports no errors from it was left out by the linker.
        failed: Found | None = None
        dec = _Decoder(binary)
        for stack, suffixes in ANCHORS.items():
            strings = [s for suffix in suffixes for s in binary.strings_ending(suffix)]
            problems = []
            for addr, text in strings:
                result = _FINDERS[stack](dec, addr)
                if isinstance(result, dict):
                    return Found(stack, result, None, text.decode("utf-8", "replace"),
                                 time.perf_counter() - started)
                if not result.startswith(_NOT_USED):
                    problems.append(result)
            if problems and failed is None:
                failed = Found(stack, {}, "; ".join(problems), strings[0][1].decode("utf-8", "replace"))
        if failed is not None:
            failed.seconds = time.perf_counter() - started
            return failed
        return Found(seconds=time.perf_counter() - started)
    finally:
        binary.close()


def cache_key(path: str) -> str | None:
    """The build's identity: its GNU build id, else its size and a hash of its first MiB."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import NoteSection

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            try:
                elf = ELFFile(f)
                for sec in elf.iter_sections():
                    if not isinstance(sec, NoteSection):
                        continue
                    for note in sec.iter_notes():
                        if note["n_type"] == "NT_GNU_BUILD_ID":
                            return f"{note['n_desc']}-{size}"
            except Exception:  # not an ELF file, or odd notes: fall back to the hash
                pass
            f.seek(0)
            return f"h{hashlib.sha256(f.read(1 << 20)).hexdigest()[:32]}-{size}"
    except OSError:
        return None


def find(path: str, cache_dir: str | None = None) -> Found:
    """Like :func:`find_uncached`, remembered per build in ``cache_dir`` (0700, files 0600)."""
    directory = cache_dir or CACHE_DIR
    key = cache_key(path)
    if key is None:
        return Found(problem="cannot read the file")
    entry = os.path.join(directory, f"{key}.json")
    try:
        with open(entry) as f:
            doc = json.load(f)
        if doc.get("version") == _CACHE_VERSION:
            return Found.from_json(doc)
    except (OSError, ValueError):
        pass
    found = find_uncached(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        tmp = f"{entry}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**found.as_json(), "path": path}, f)
        os.replace(tmp, entry)
    except OSError as exc:
        log.debug("tlsfind: cannot cache %s: %s", entry, exc)
    return found
