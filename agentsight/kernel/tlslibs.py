"""Finding the TLS libraries to probe and where exactly to put each probe.

A file is worth probing when its dynamic symbol table exports ``SSL_write``,
``SSL_read``, ``SSL_write_ex`` or ``SSL_read_ex``: the system libssl, binaries with
OpenSSL/BoringSSL linked in that export them (Node), or any ELF a traced process maps.
A file that exports none of them but has BoringSSL compiled in (Bun, so Claude Code's
native build) is searched by :mod:`agentsight.kernel.tlsfind`, which finds ``SSL_write`` and
``SSL_read`` from what the code does; what it finds is cached per build. Files are
remembered by (device, inode), so each is read and attached once however many
processes map it.

Probe placement (x86-64). A uprobe on an instruction the kernel cannot emulate is
single-stepped out of line, which costs ~9x more per hit in this kind of VM than an
emulated one (calls, jumps, pushes). libssl's ``SSL_write_ex`` / ``SSL_read_ex`` are
``sub $8,%rsp; call <internal>; xor %edx,%edx; test %eax,%eax; cmovs %edx,%eax; ...``:
they pass their arguments through untouched and only clamp the result at 0. When those
bytes are verified, the entry probe goes on the call (+4) and the return probe on the
internal function (which starts with emulated pushes and has the same arguments);
anything else keeps both probes at the symbol.
"""

from __future__ import annotations

import glob
import mmap
import os
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

__all__ = [
    "TLS_FUNCS",
    "HANDSHAKE_FUNC",
    "ProbeSite",
    "TlsLibrary",
    "inspect_elf",
    "system_library_paths",
    "exec_mappings",
    "parse_maps",
    "LibraryFinder",
]

TLS_FUNCS = ("SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex")
HANDSHAKE_FUNC = "SSL_do_handshake"
# The AEAD layer (aws-lc/BoringSSL), probed where no SSL_* function can be (rustls).
AEAD_FUNCS = ("EVP_AEAD_CTX_seal", "EVP_AEAD_CTX_seal_scatter", "EVP_AEAD_CTX_open", "EVP_AEAD_CTX_open_gather")

_SUB_RSP_IMM8 = b"\x48\x83\xec"  # sub $imm8,%rsp
_CALL_REL32 = 0xE8
# xor %edx,%edx; test %eax,%eax; cmovs %edx,%eax: "return ret < 0 ? 0 : ret"
_CLAMP_AT_ZERO = b"\x31\xd2\x85\xc0\x0f\x48\xc2"
_WRAPPER_MAX_SIZE = 64

_LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
             "/lib", "/usr/lib", "/usr/local/lib", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")


@dataclass(frozen=True)
class ProbeSite:
    """Where one function's entry and return probes go (virtual addresses in the file)."""

    func: str
    symbol: int
    entry: int
    ret: int
    # The return probe is on the internal function the wrapper calls (see module doc).
    via_callee: bool = False

    def describe(self) -> str:
        if not self.via_callee:
            return self.func
        return f"{self.func}+{self.entry - self.symbol:#x} (return on {self.ret:#x})"


@dataclass(frozen=True)
class TlsLibrary:
    """A file with TLS functions to probe, and the probe sites found in it.

    ``found_by`` says how: ``"exports"`` (the dynamic symbol table) or the stack whose
    code :mod:`agentsight.kernel.tlsfind` recognised (``"boringssl"``). A file with a TLS stack
    whose entry points could not be found has no sites and a ``problem``.
    """

    path: str
    dev: int
    inode: int
    sites: tuple[ProbeSite, ...]
    handshake: int | None = None
    found_by: str = "exports"
    problem: str | None = None
    search_s: float = 0.0

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.inode)


class _Elf:
    """The few things read from one ELF file: exported function symbols and code bytes."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.elf = ELFFile(stream)
        self.x86_64 = self.elf["e_machine"] == "EM_X86_64"
        self._hash = self.elf.get_section_by_name(".gnu.hash")
        self._dynsym = self.elf.get_section_by_name(".dynsym")
        self._exec = [seg for seg in self.elf.iter_segments()
                      if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 1]

    def function(self, name: str) -> tuple[int, int] | None:
        """(address, size) of an exported, defined function, or None."""
        sym = None
        if self._hash is not None and hasattr(self._hash, "get_symbol"):
            sym = self._hash.get_symbol(name)
        elif isinstance(self._dynsym, SymbolTableSection):
            found = self._dynsym.get_symbol_by_name(name)
            sym = found[0] if found else None
        if sym is None or sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC"):
            return None
        if sym["st_shndx"] == "SHN_UNDEF" or not sym["st_value"]:
            return None
        return int(sym["st_value"]), int(sym["st_size"])

    def code(self, addr: int, size: int) -> bytes:
        """``size`` bytes of executable code at virtual address ``addr`` (b"" if outside)."""
        for seg in self._exec:
            start = seg["p_vaddr"]
            if start <= addr and addr + size <= start + seg["p_filesz"]:
                self.stream.seek(addr - start + seg["p_offset"])
                return self.stream.read(size)
        return b""


def _is_emulated_push(code: bytes) -> bool:
    """``push %reg`` (50-57, or 41 50-57 for r8-r15): x86 uprobes emulate it."""
    if code[:1] and 0x50 <= code[0] <= 0x57:
        return True
    return len(code) >= 2 and code[0] == 0x41 and 0x50 <= code[1] <= 0x57


def _plan(elf: _Elf, func: str, addr: int, size: int) -> ProbeSite:
    """The cheapest verified probe placement for one exported function."""
    plain = ProbeSite(func, addr, addr, addr)
    if not elf.x86_64 or not func.endswith("_ex") or not 9 + len(_CLAMP_AT_ZERO) <= size <= _WRAPPER_MAX_SIZE:
        return plain
    code = elf.code(addr, size)
    if (len(code) < 9 + len(_CLAMP_AT_ZERO) or code[:3] != _SUB_RSP_IMM8 or code[4] != _CALL_REL32
            or code[9:9 + len(_CLAMP_AT_ZERO)] != _CLAMP_AT_ZERO):
        return plain
    callee = addr + 9 + int.from_bytes(code[5:9], "little", signed=True)
    if not _is_emulated_push(elf.code(callee, 2)):
        return plain
    return ProbeSite(func, addr, addr + 4, callee, via_callee=True)


@dataclass(frozen=True)
class DisplacedSite:
    """Probes for a function whose own entry another tracer holds (see :func:`displaced_site`):
    the entry one instruction in, the return at each of its ``ret`` instructions."""

    entry: int
    rets: tuple[int, ...]


# Argument registers the entry programs read (System V x86-64: the first four arguments).
_ARG_REGS = ("rdi", "rsi", "rdx", "rcx", "edi", "esi", "edx", "ecx", "di", "si", "dx", "cx", "dil", "sil", "dl", "cl")


def displaced_site(path: str, func: str, stack_args: bool = False) -> DisplacedSite | str:
    """Where to probe ``func`` of ``path`` when the kernel refuses its entry address.

    The kernel allows one probe per address, with one reference-counter offset: a probe left
    there by another tracer with another offset (bcc 0.26's Python ``attach_uprobe`` passes an
    uninitialised one; a tracer killed while unregistering leaks its probe until reboot) makes
    every later attach there fail. The function's first instruction moves no argument register
    and is no branch, so a probe after it sees the same arguments; a probe on each ``ret`` sees
    the return value, as a return probe would, provided the function leaves only through its
    ``ret``s (no tail call). ``stack_args``: the entry program reads arguments on the stack, so
    the first instruction may not move the stack pointer either. Returns the site or why not."""
    import capstone
    import capstone.x86 as x86

    try:
        with open(path, "rb") as f:
            elf = _Elf(f)
            if not elf.x86_64:
                return "not x86-64"
            found = elf.function(func)
            if found is None or found[1] <= 0:
                return f"{func} has no symbol with a size"
            addr, size = found
            code = elf.code(addr, size)
    except (OSError, ELFError) as exc:
        return f"cannot read {path}: {exc}"
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    insns = list(md.disasm(code, addr))
    if not insns or insns[-1].address + insns[-1].size != addr + size:
        return "its code does not decode whole"
    first = insns[0]
    if any(first.group(g) for g in (capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET)):
        return "it starts with a branch"
    _, written = first.regs_access()
    names = {first.reg_name(r) for r in written}
    if names & set(_ARG_REGS) or (stack_args and "rsp" in names):
        return f"its first instruction ({first.mnemonic} {first.op_str}) moves an argument"
    rets = []
    for ins in insns:
        if ins.group(capstone.CS_GRP_RET):
            rets.append(ins.address)
        elif ins.group(capstone.CS_GRP_JUMP):
            op = ins.operands[0] if ins.operands else None
            if op is None or op.type != x86.X86_OP_IMM or not addr <= op.imm < addr + size:
                return f"it jumps out at {ins.address:#x} (a tail call: its returns are not all visible)"
    if not rets:
        return "it has no ret"
    return DisplacedSite(first.address + first.size, tuple(rets))


# A static build with a TLS stack compiled in is large (BoringSSL or aws-lc alone is several MB).
_STATIC_MIN_BYTES = 4 << 20


def _dynstr(f: BinaryIO) -> bytes:
    """The string table of an ELF64 file's dynamic symbols (b"" when it has none), read with
    struct from the section headers: far cheaper than a full parse for the files every
    process maps (libc, libm, ...)."""
    head = f.read(64)
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return b""
    shoff, = struct.unpack_from("<Q", head, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
    if not shoff or shentsize < 64 or not 0 < shnum < 1 << 16:
        return b""
    f.seek(shoff)
    table = f.read(shentsize * shnum)
    for i in range(len(table) // shentsize):
        sh_type, = struct.unpack_from("<I", table, i * shentsize + 4)
        if sh_type != 11:  # SHT_DYNSYM
            continue
        link, = struct.unpack_from("<I", table, i * shentsize + 40)
        if link >= shnum:
            return b""
        off, size = struct.unpack_from("<QQ", table, link * shentsize + 24)
        f.seek(off)
        return f.read(min(size, 64 << 20))
    return b""


def _worth_parsing(path: str, search_code: bool) -> bool:
    """Whether ``path`` can hold what we look for at all: the TLS functions' names among its
    dynamic symbols (an export), or, in a large file, a TLS stack's source path (a static
    build). Reading a few headers is far cheaper than parsing the ELF."""
    try:
        with open(path, "rb") as f:
            names = _dynstr(f)
            if b"SSL_read" in names or b"SSL_write" in names:
                return True
            if not search_code or os.fstat(f.fileno()).st_size < _STATIC_MIN_BYTES:
                return False
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return m[:4] == b"\x7fELF" and any(m.find(a) >= 0 for anchors in _static_anchors() for a in anchors)
    except (OSError, ValueError, struct.error):
        return False


def _static_anchors() -> Iterable[tuple[bytes, ...]]:
    from agentsight.kernel import tlsfind

    return tlsfind.ANCHORS.values()


def inspect_elf(path: str, search_code: bool = True) -> TlsLibrary | None:
    """The probe sites of ``path``: its exported TLS functions, else (``search_code``)
    the BoringSSL entry points found in its code. None when it has no TLS stack we know."""
    if not _worth_parsing(path, search_code):
        return None
    try:
        st = os.stat(path)
        with open(path, "rb") as stream:
            elf = _Elf(stream)
            sites = []
            for func in TLS_FUNCS:
                found = elf.function(func)
                if found is not None:
                    sites.append(_plan(elf, func, *found))
            handshake = elf.function(HANDSHAKE_FUNC)
            x86_64 = elf.x86_64
    except (OSError, ELFError, ValueError):
        return None
    if sites:
        return TlsLibrary(path, st.st_dev, st.st_ino, tuple(sites), handshake[0] if handshake else None)
    if not search_code or not x86_64:
        return None
    return _from_code(path, st)


def _from_code(path: str, st: os.stat_result) -> TlsLibrary | None:
    """A library made of what :mod:`agentsight.kernel.tlsfind` found in ``path``'s code."""
    from agentsight.kernel import tlsfind

    found = tlsfind.find(path)
    if found.stack is None:
        return None
    spent = 0.0 if found.cached else found.seconds  # what looking cost this time
    wanted = ("SSL_write", "SSL_read") if found.stack == "boringssl" else AEAD_FUNCS
    sites = tuple(ProbeSite(func, addr, addr, addr) for func, addr in found.functions.items() if func in wanted)
    if not sites:
        return TlsLibrary(path, st.st_dev, st.st_ino, (), None, found.stack,
                          found.problem or "its entry points were not found", spent)
    return TlsLibrary(path, st.st_dev, st.st_ino, sites, found.functions.get("SSL_do_handshake"), found.stack,
                      None, spent)


def system_library_paths() -> list[str]:
    """Shared libraries in the standard directories that may be OpenSSL's libssl."""
    found: dict[str, None] = {}
    for directory in _LIB_DIRS:
        for path in sorted(glob.glob(os.path.join(directory, "libssl.so*"))):
            found[os.path.realpath(path)] = None
    return list(found)


def node_path() -> str | None:
    """The ``node`` on PATH (it links OpenSSL in and exports the SSL functions)."""
    return shutil.which("node")


def exec_mappings(pid: int) -> list[tuple[tuple[bytes, bytes], str]] | None:
    """Files ``pid`` maps executable: ((device, inode) as its maps spell them, path).

    None when the process is gone. Read straight from /proc/PID/maps without a stat, so
    a caller can skip files it already knows for the cost of a set lookup.
    """
    try:
        with open(f"/proc/{pid}/maps", "rb", buffering=0) as maps:
            return parse_maps(maps.readall())
    except OSError:
        return None


def parse_maps(text: bytes) -> list[tuple[tuple[bytes, bytes], str]]:
    """The executable file mappings of a /proc/PID/maps text, once per file (see exec_mappings)."""
    found: dict[tuple[bytes, bytes], str] = {}
    for line in text.splitlines():
        # "start-end perms offset dev inode   path": the execute bit is perms[2].
        perms = line.find(b" ") + 1
        if line[perms + 2:perms + 3] != b"x":
            continue
        parts = line.split(None, 5)
        if len(parts) < 6 or parts[4] == b"0" or not parts[5].startswith(b"/") or parts[5].endswith(b" (deleted)"):
            continue
        found.setdefault((parts[3], parts[4]), os.fsdecode(parts[5]))
    return list(found.items())


def _reachable_path(pid: int, path: str, inode: int) -> str:
    """``path`` if it names the mapped file here, else the same path under /proc/PID/root
    (the process is in another mount namespace, or the file was replaced)."""
    try:
        same = os.stat(path).st_ino == inode
    except OSError:
        same = False
    return path if same else f"/proc/{pid}/root{path}"


class LibraryFinder:
    """Remembers every file looked at by (device, inode), so each is read once.

    Two caches: files by stat (device, inode), and mappings by the (device, inode) text
    of /proc/PID/maps (which may differ from stat's on overlayfs or btrfs), so that
    looking at a process again costs one read of its maps and no stat per file. What
    each file turned out to be is kept too, so :meth:`libraries_of` can tell which TLS
    stacks a process has without reading any file again.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], TlsLibrary | None] = {}
        self._mapped: dict[tuple[bytes, bytes], tuple[int, int] | None] = {}
        # What each process mapped when last looked at (oldest forgotten first): a process
        # that is gone by the time its connection is checked is judged on that.
        self.last_maps: dict[int, tuple[str, list[tuple[tuple[bytes, bytes], str]]]] = {}

    def check(self, path: str) -> TlsLibrary | None:
        """The library at ``path`` if it is new and has TLS functions (or a TLS stack we know)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_dev, st.st_ino)
        if key in self._seen:
            return None
        lib = self._seen[key] = inspect_elf(path)
        return lib

    def check_all(self, paths: Iterable[str]) -> list[TlsLibrary]:
        return [lib for lib in map(self.check, paths) if lib is not None]

    def _stat_key(self, pid: int, key: tuple[bytes, bytes], path: str) -> tuple[tuple[int, int] | None, TlsLibrary | None]:
        """(stat key, library if new) of one mapping, reading the file only the first time."""
        if key in self._mapped:
            return self._mapped[key], None
        reachable = _reachable_path(pid, path, int(key[1]))
        lib = self.check(reachable)
        try:
            st = os.stat(reachable)
            self._mapped[key] = (st.st_dev, st.st_ino)
        except OSError:
            self._mapped[key] = None
        return self._mapped[key], lib

    def scan_pid(self, pid: int) -> list[TlsLibrary] | None:
        """New TLS libraries among the files ``pid`` maps; None when the process is gone."""
        mappings = exec_mappings(pid)
        if mappings is None:
            return None
        self.remember(pid, mappings)
        found = []
        for key, path in mappings:
            _, lib = self._stat_key(pid, key, path)
            if lib is not None:
                found.append(lib)
        return found

    def remember(self, pid: int, mappings: list[tuple[tuple[bytes, bytes], str]], complete: bool = True) -> None:
        """Keep what ``pid`` maps; an incomplete picture (read at exec, before a dynamically
        linked program's loader mapped its libraries) never replaces a complete one, and is
        not kept at all."""
        if not complete:
            return
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = "?"
        self.last_maps.pop(pid, None)
        self.last_maps[pid] = (exe, mappings)
        if len(self.last_maps) > 4096:
            del self.last_maps[next(iter(self.last_maps))]

    def libraries_of(self, pid: int, mappings: list[tuple[tuple[bytes, bytes], str]] | None = None
                     ) -> list[TlsLibrary] | None:
        """Every TLS library (probed or not) among the files ``pid`` maps (or ``mappings``, read
        from its maps earlier); None when it is gone."""
        if mappings is None:
            mappings = exec_mappings(pid)
        if mappings is None:
            return None
        out = []
        for key, path in mappings:
            stat_key, _ = self._stat_key(pid, key, path)
            lib = self._seen.get(stat_key) if stat_key else None
            if lib is not None:
                out.append(lib)
        return out


def describe_unprobed(exe: str, mapped: Iterable[str]) -> str:
    """Why a process's TLS is not visible, from its executable and the files it maps."""
    names = [os.path.basename(p) for p in mapped]
    for prefix, what in (("libgnutls", "GnuTLS"), ("libnss3", "NSS"), ("libwolfssl", "wolfSSL"),
                         ("libmbedtls", "mbed TLS"), ("libboringssl", "BoringSSL (shared, no exports)")):
        if any(n.startswith(prefix) for n in names):
            return f"it uses {what}, which agentsight does not probe"
    try:
        with open(exe, "rb") as f:
            head = f.read(64 << 20)
    except OSError:
        return "its executable cannot be read"
    if b"crypto/tls.(*Conn)" in head or b"\xff Go buildinf:" in head:
        return "it is a Go program (crypto/tls is compiled in; agentsight does not probe it)"
    if b"rustls" in head:
        return "it is a Rust program with rustls on a crypto library agentsight cannot probe"
    return "no TLS library agentsight can probe is loaded in it"
