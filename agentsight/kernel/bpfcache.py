"""Compiled eBPF programs kept between runs, so a source loads in a fraction of a second.

bcc compiles a program's C with clang every time it is loaded: 1-2.5 s per program on this
machine, three programs at once for ``record``. What the compile produces is plain eBPF
bytecode whose only run-specific parts are the map file descriptors in its ``ld_imm64``
instructions (``src_reg == BPF_PSEUDO_MAP_FD``). The loader (:mod:`agentsight.kernel.bpfload`)
therefore keeps, after a successful compile, an *entry* per compiled text:

- every map's attributes (type, key and value size, max entries, flags, name) with the fd
  it had in the compiling process;
- every function's instructions and the program license;
- the tracepoints bcc attached (its ``TRACEPOINT_PROBE`` autoload).

The next load of the same text creates the maps afresh, rewrites each map reference from the
old fd to the new one and hands the instructions to the kernel (``bpf_map_create``,
``bpf_prog_load`` from libbpf1): the kernel's verifier still checks every program, only
clang is skipped. LLVM and bcc are not even imported then.

An entry is found by a SHA-256 of everything the bytecode depends on: the final C and its
compiler flags, the running kernel (release and build string, the headers bcc compiled
against) and the bcc release. Any other text, kernel or bcc is another entry; entries past the
newest :data:`KEEP` are removed.

Entries are root's: the directory is made 0700 and the files 0600, and one whose directory or
file is writable by anybody else, or is not owned by this user, is ignored (loading bytecode
someone else could have written is refused). ``AGENTSIGHT_BPF_CACHE`` names another
directory; ``off`` turns the cache off. Anything unreadable, malformed or refused by the
kernel makes the loader compile as if there were no entry, and say why in one line.

This module uses only the standard library and libbpf1 (through
:mod:`agentsight.kernel.libbpf`), so the loader can use it without importing bcc.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import importlib.util
import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentsight.kernel import libbpf

__all__ = ["CacheError", "Entry", "MapSpec", "cache_dir", "entry_key", "read", "write", "relocate",
           "create_map", "load_program", "KEEP", "FORMAT"]

FORMAT = 1
KEEP = 32
DEFAULT_DIR = "/var/cache/agentsight/bpf"
ENV = "AGENTSIGHT_BPF_CACHE"

_LD_IMM64 = 0x18
_PSEUDO_MAP_FD = 1
_INSN = struct.Struct("<BBhi")


class CacheError(Exception):
    """Why an entry cannot be used, in one line (the loader compiles instead)."""


@dataclass
class MapSpec:
    """A map as the compile made it: enough to make the same map again."""

    name: str
    fd: int  # its fd in the compiling process: what the instructions refer to
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0


@dataclass
class Entry:
    """One compiled text: its maps, every function's bytecode, the tracepoints bcc attached."""

    maps: list[MapSpec]
    functions: dict[str, bytes]
    license: str = "GPL"
    tracepoints: list[str] = field(default_factory=list)  # "category:event", program tracepoint__category__event

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "license": self.license, "tracepoints": self.tracepoints,
                "maps": [vars(m) for m in self.maps],
                "functions": {name: base64.b64encode(code).decode() for name, code in self.functions.items()}}

    @classmethod
    def from_json(cls, doc: Any) -> Entry:
        """The entry in ``doc``; CacheError when it is not one this version wrote."""
        try:
            if doc["format"] != FORMAT:
                raise CacheError(f"entry format {doc['format']}, this version reads {FORMAT}")
            maps = [MapSpec(str(m["name"]), int(m["fd"]), int(m["type"]), int(m["key_size"]),
                            int(m["value_size"]), int(m["max_entries"]), int(m.get("flags", 0)))
                    for m in doc["maps"]]
            functions = {str(k): base64.b64decode(v, validate=True) for k, v in doc["functions"].items()}
            entry = cls(maps, functions, str(doc["license"]), [str(t) for t in doc["tracepoints"]])
        except CacheError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CacheError(f"malformed entry ({type(exc).__name__}: {exc})") from None
        for name, code in entry.functions.items():
            if not code or len(code) % _INSN.size:
                raise CacheError(f"function {name}: {len(code)} bytes is not whole instructions")
        for tp in entry.tracepoints:
            if tp.count(":") != 1:
                raise CacheError(f"tracepoint {tp!r} is not category:event")
        return entry


def cache_dir() -> Path | None:
    """Where entries are kept (None: the cache is off)."""
    value = os.environ.get(ENV, DEFAULT_DIR)
    if value.strip().lower() in ("", "off", "0", "no"):
        return None
    return Path(value)


def _bcc_identity() -> str:
    """The bcc release the bytecode came from, without importing bcc (that maps LLVM)."""
    spec = importlib.util.find_spec("bcc")
    if spec is None or spec.origin is None:
        return "no-bcc"
    here = Path(spec.origin).parent
    try:
        version = (here / "version.py").read_text()
    except OSError:
        version = ""
    st = os.stat(spec.origin)
    return f"{version.strip()}|{spec.origin}|{st.st_size}|{st.st_mtime_ns}"


def _headers_identity() -> str:
    """The kernel headers bcc compiles against (the tracepoint and struct layouts come from them)."""
    build = Path("/lib/modules") / os.uname().release / "build"
    try:
        real = build.resolve()
        st = os.stat(real / "Makefile") if (real / "Makefile").exists() else os.stat(real)
    except OSError:
        return "no-headers"
    return f"{real}|{st.st_mtime_ns}"


def entry_key(text: str, cflags: list[str]) -> str:
    """The name of the entry for this C text and flags on this kernel with this bcc."""
    uname = os.uname()
    parts = [f"format {FORMAT}", uname.release, uname.version, uname.machine, _headers_identity(),
             _bcc_identity(), json.dumps(cflags), text]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _safe_dir(directory: Path) -> None:
    st = os.stat(directory)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise CacheError(f"{directory} is not {os.geteuid()}'s alone (owner {st.st_uid}, mode "
                         f"{st.st_mode & 0o777:o}): not used")


def read(directory: Path, key: str) -> Entry | None:
    """The entry ``key`` (None if there is none); CacheError when it is there but unusable."""
    path = directory / f"{key}.json"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        _safe_dir(directory)
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise CacheError(f"{path} is not {os.geteuid()}'s alone (owner {st.st_uid}, mode "
                             f"{st.st_mode & 0o777:o}): not used")
        data = f.read()
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise CacheError(f"{path} is not JSON ({exc})") from None
    entry = Entry.from_json(doc)
    try:
        os.utime(path)  # recently used: kept longest
    except OSError:
        pass
    return entry


def write(directory: Path, key: str, entry: Entry, keep: int = KEEP) -> Path:
    """Store ``entry`` as ``key`` (atomically, 0600, in a 0700 directory); drop all but the newest
    ``keep`` entries. OSError / CacheError when it cannot."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _safe_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(entry.to_json(), f)
        path = directory / f"{key}.json"
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[keep:]:
        try:
            old.unlink()
        except OSError:
            pass
    return path


def relocate(code: bytes, fds: dict[int, int]) -> bytes:
    """``code`` with each map reference (``ld_imm64`` with ``src_reg == BPF_PSEUDO_MAP_FD``) moved
    from its compile-time fd to ``fds[old]``; CacheError for a reference to no known map, or an
    ``ld_imm64`` of a kind this cache does not rewrite (map values, BTF ids...)."""
    out = bytearray(code)
    i, end = 0, len(code)
    while i < end:
        op, regs, off, imm = _INSN.unpack_from(code, i)
        if op == _LD_IMM64:
            src = regs >> 4
            if src == _PSEUDO_MAP_FD:
                if imm not in fds:
                    raise CacheError(f"instruction {i // 8} refers to map fd {imm}, which the entry does not list")
                _INSN.pack_into(out, i, op, regs, off, fds[imm])
            elif src != 0:
                raise CacheError(f"instruction {i // 8} is an ld_imm64 of kind {src}, which is not cached")
            i += 16  # ld_imm64 takes two slots
        else:
            i += 8
    return bytes(out)


class _MapCreateOpts(ctypes.Structure):
    # struct bpf_map_create_opts of libbpf 1.x, up to map_ifindex (libbpf reads .sz of it).
    _fields_ = [("sz", ctypes.c_size_t), ("btf_fd", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32), ("btf_vmlinux_value_type_id", ctypes.c_uint32),
                ("inner_map_fd", ctypes.c_uint32), ("map_flags", ctypes.c_uint32), ("map_extra", ctypes.c_uint64),
                ("numa_node", ctypes.c_uint32), ("map_ifindex", ctypes.c_uint32)]


_typed = False


def _lib() -> ctypes.CDLL:
    global _typed
    cdll = libbpf.lib()
    if not _typed:
        cdll.bpf_map_create.restype = ctypes.c_int
        cdll.bpf_map_create.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                                        ctypes.c_uint32, ctypes.c_void_p]
        cdll.bpf_prog_load.restype = ctypes.c_int
        cdll.bpf_prog_load.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                       ctypes.c_size_t, ctypes.c_void_p]
        _typed = True
    return cdll


def _check(rc: int, what: str) -> int:
    if rc < 0:
        code = -rc if rc != -1 else (ctypes.get_errno() or 1)
        raise libbpf.BpfError(code, f"{what}: {os.strerror(code)}")
    return rc


def create_map(spec: MapSpec) -> int:
    """A new map like ``spec``; its fd (BpfError when the kernel refuses)."""
    opts = _MapCreateOpts(sz=ctypes.sizeof(_MapCreateOpts), map_flags=spec.flags)
    return _check(_lib().bpf_map_create(spec.type, spec.name[:15].encode(), spec.key_size, spec.value_size,
                                        spec.max_entries, ctypes.byref(opts)), f"creating map {spec.name}")


def load_program(name: str, prog_type: int, code: bytes, license: str) -> int:
    """``code`` (relocated) loaded as a ``prog_type`` program; its fd (BpfError when the verifier
    or the kernel refuses)."""
    return _check(_lib().bpf_prog_load(prog_type, name[:15].encode(), license.encode(), code,
                                       len(code) // _INSN.size, None), f"loading {name}")
