"""The ssl source against real TLS clients (Python ssl, curl, node) and a local HTTPS server.

Oracle: the server (a separate process) records the plaintext it received and sent on
each connection; what the source captured from the client, per connection, must equal
it byte for byte. The server's own TLS calls must never appear in a capture filtered
to the client.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentsight.actors.sources.ssl import SslSource
from agentsight.event import Event
from agentsight.kernel import tlslibs
from tests.bpf.conftest import run_gated

pytestmark = pytest.mark.bpf

PEERS = Path(__file__).parent / "tls_peers"
SYSTEM_PYTHON = "/usr/bin/python3"
BIG = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 and its key."""
    d = tmp_path_factory.mktemp("cert")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


class Server:
    """tls_peers/server.py in its own process, recording every connection's plaintext."""

    def __init__(self, cert: tuple[Path, Path], out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(PEERS / "server.py"), str(cert[0]), str(cert[1]), str(out)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.pid = self.proc.pid

    def transcripts(self, timeout: float = 10.0) -> list[tuple[bytes, bytes]]:
        """(received, sent) per connection, once every connection was closed by its client."""
        deadline = time.monotonic() + timeout
        while True:
            ins = sorted(self.out.glob("*.in"))
            if ins and all(p.with_suffix(".done").exists() for p in ins):
                return [(p.read_bytes(), p.with_suffix(".out").read_bytes()) for p in ins]
            assert time.monotonic() < deadline, "the server did not see every connection close"
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def server(cert: tuple[Path, Path], tmp_path: Path) -> Iterator[Server]:
    out = tmp_path / "server"
    out.mkdir()
    srv = Server(cert, out)
    yield srv
    srv.close()


class Capture:
    """What one run of a client under the ssl source produced."""

    def __init__(self, events: list[Event], root: int, stats: dict[str, int]) -> None:
        self.events = events
        self.root = root
        self.stats = stats
        self.data = [e for e in events if e.topic == "ssl.data"]

    def streams(self) -> dict[str, tuple[bytes, bytes]]:
        """Per connection: everything the client wrote, everything it read (captured bytes)."""
        parts: dict[str, tuple[list[bytes], list[bytes]]] = {}
        for e in self.data:
            w, r = parts.setdefault(e.data["conn"], ([], []))
            (w if e.data["dir"] == "write" else r).append(e.data["bytes"])
        return {conn: (b"".join(w), b"".join(r)) for conn, (w, r) in parts.items()}


def capture(argv: list[str], tree: bool = False, timeout: float = 90.0, **options: object) -> Capture:
    """Run ``argv`` under an ssl source filtered to it (by pid, or by tree from a parent shell).

    The client waits on a gate until the source is attached, so nothing it does is missed.
    """
    opened: list[SslSource] = []

    def attach(pid: int) -> SslSource:
        opened.append(SslSource("ssl", {"pid": pid, "tree": tree, **options}))
        opened[-1].open()
        return opened[-1]

    try:
        events, source, gate = run_gated(argv, attach, tree=tree, timeout=timeout)
    finally:
        for src in opened:
            src.close()
    assert gate.stderr is not None
    assert gate.returncode == 0, gate.stderr.read().decode(errors="replace")
    return Capture(events, gate.pid, dict(source.stats))


def digest(pair: tuple[bytes, bytes]) -> tuple[int, str, int, str]:
    """Lengths and hashes: comparable without printing megabytes on a failure."""
    return (len(pair[0]), hashlib.sha256(pair[0]).hexdigest()[:16], len(pair[1]), hashlib.sha256(pair[1]).hexdigest()[:16])


def assert_same_plaintext(cap: Capture, server: Server) -> None:
    """Per connection, the client's captured writes/reads equal the server's reads/writes."""
    client = sorted(cap.streams().values(), key=digest)
    served = sorted(server.transcripts(), key=digest)
    assert [digest(p) for p in client] == [digest(p) for p in served]
    assert client == served
    assert all(e.data["truncated"] == 0 and len(e.data["bytes"]) == e.data["len"] for e in cap.data)


def assert_only_client(cap: Capture, server: Server, pids: set[int]) -> None:
    assert cap.data, "nothing captured"
    assert {e.pid for e in cap.data} <= pids
    assert all(e.pid != server.pid for e in cap.events)


def python_client(server: Server, cert: tuple[Path, Path]) -> list[str]:
    return [SYSTEM_PYTHON, str(PEERS / "client.py"), str(server.port), str(cert[0])]


def test_python_client_by_pid(server: Server, cert: tuple[Path, Path]) -> None:
    cap = capture(python_client(server, cert), max_bytes=4 << 20)
    assert_same_plaintext(cap, server)
    assert_only_client(cap, server, {cap.root})
    assert {e.data["func"] for e in cap.data} == {"SSL_write_ex", "SSL_read_ex"}
    # The 2 MiB body went out in one call, captured whole across many ring records.
    big = [e for e in cap.data if e.data["dir"] == "write" and e.data["len"] > BIG]
    assert len(big) == 1 and big[0].data["bytes"].endswith(bytes(range(256)) * 4)
    # Keep-alive: one connection carried four exchanges.
    responses = sorted(reads.count(b"HTTP/1.1 200 OK") for _, reads in cap.streams().values())
    assert responses == [2, 4]
    e = cap.data[0]
    assert e.comm == "python3" and e.tid and e.data["latency_ns"] > 0 and e.data["uid"] == 0
    assert abs(e.ts_ns - time.time_ns()) < 120 * 10**9
    assert cap.stats.get("kernel_lost", 0) == 0 and cap.stats.get("incomplete", 0) == 0


def test_python_client_in_a_tree(server: Server, cert: tuple[Path, Path]) -> None:
    """Tree mode probes every process; the kernel filter keeps only the gate's child."""
    cap = capture(python_client(server, cert), tree=True, max_bytes=4 << 20)
    assert_same_plaintext(cap, server)
    pids = {e.pid for e in cap.data}
    assert len(pids) == 1 and cap.root not in pids
    assert_only_client(cap, server, pids)


def test_curl(server: Server, cert: tuple[Path, Path], tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    body = tmp_path / "body"
    body.write_bytes(bytes(range(256)) * (BIG // 256))
    url = f"https://localhost:{server.port}/size"
    common = ["--http1.1", "-sS", "-o", "/dev/null", "--cacert", str(cert[0]), "-H", "Expect:",
              "--resolve", f"localhost:{server.port}:127.0.0.1"]
    cap = capture(["curl", *common, "--data-binary", "small", f"{url}/10",
                   "--next", *common, "--data-binary", f"@{body}", f"{url}/300000",
                   "--next", *common, f"{url}/5"], max_bytes=4 << 20)
    assert_same_plaintext(cap, server)
    assert_only_client(cap, server, {cap.root})
    assert [reads.count(b"HTTP/1.1 200 OK") for _, reads in cap.streams().values()] == [3]
    assert {e.comm for e in cap.data} == {"curl"}


def test_curl_when_another_tracer_holds_ssl_write(server: Server, cert: tuple[Path, Path], tmp_path: Path) -> None:
    """A probe another tracer left on SSL_write with another reference-counter offset (what bcc
    0.26's Python attach_uprobe does; a tracer killed mid-unregister leaks it until reboot)
    makes the kernel refuse that address: SSL_write is probed one instruction in and at its ret."""
    import ctypes

    from agentsight.kernel import libbpf, tlslibs

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    system = next((p for p in tlslibs.system_library_paths() if Path(p).name == "libssl.so.3"), None)
    if system is None:
        pytest.skip("no system libssl.so.3")
    libdir = tmp_path / "lib"
    libdir.mkdir()
    lib = libdir / "libssl.so.3"
    shutil.copy(system, lib)  # a file of its own: the probe below touches no other test
    found = tlslibs.inspect_elf(str(lib))
    assert found is not None
    (write,) = [site for site in found.sites if site.func == "SSL_write"]
    pmu_type, _ = libbpf.uprobe_pmu()
    name = ctypes.create_string_buffer(str(lib).encode())
    foreign = libbpf._perf_event_open(libbpf._perf_attr(pmu_type, 6 << 32, ctypes.addressof(name),
                                                        libbpf.file_offset(str(lib), write.symbol)),
                                      -1, 0, "the other tracer's probe")
    try:
        url = f"https://localhost:{server.port}/size"
        cap = capture(["env", f"LD_LIBRARY_PATH={libdir}", "curl", "--http1.1", "-sS", "-o", "/dev/null",
                       "--cacert", str(cert[0]), "--resolve", f"localhost:{server.port}:127.0.0.1",
                       "--data-binary", "small", f"{url}/10"], binary_path=[str(lib)], system_libs=False)
    finally:
        os.close(foreign)
    assert_same_plaintext(cap, server)
    (attached,) = [e.data for e in cap.events if e.topic == "ssl.attached"]
    assert "SSL_write (displaced)" in attached["probes"] and "SSL_read" in attached["probes"]
    assert cap.stats.get("probes_displaced", 0) >= 1


def test_node(server: Server, cert: tuple[Path, Path]) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    cap = capture([node, str(PEERS / "client.js"), str(server.port), str(cert[0])], tree=True, max_bytes=4 << 20)
    assert_same_plaintext(cap, server)
    assert_only_client(cap, server, {e.pid for e in cap.data})
    assert cap.root not in {e.pid for e in cap.data}
    assert [reads.count(b"HTTP/1.1 200 OK") for _, reads in cap.streams().values()] == [4]
    attached = [e.data["path"] for e in cap.events if e.topic == "ssl.attached"]
    assert any(Path(p).name == "node" for p in attached)


def test_comm_filter_keeps_only_that_program(server: Server, cert: tuple[Path, Path]) -> None:
    """Every process is probed (no pid); only processes named curl get through."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    argv = ["curl", "--http1.1", "-sS", "-o", "/dev/null", "--cacert", str(cert[0]),
            "--resolve", f"localhost:{server.port}:127.0.0.1", "--data-binary", "hi",
            f"https://localhost:{server.port}/size/1000"]
    source = SslSource("ssl", {"comm": "curl"})
    source.open()
    try:
        subprocess.run(argv, check=True, timeout=60)
        subprocess.run([*python_client(server, cert)], check=True, timeout=60)
        events = source.poll(0) + source.stop()
    finally:
        source.close()
    data = [e for e in events if e.topic == "ssl.data"]
    assert data and {e.comm for e in data} == {"curl"}
    assert {e.data["func"] for e in data} == {"SSL_write", "SSL_read"}


def test_cap_truncates_and_says_how_much(server: Server, cert: tuple[Path, Path]) -> None:
    cap = capture(python_client(server, cert), max_bytes=4096)
    served = {digest(p)[:2]: p for p in server.transcripts()}
    assert cap.stats["truncated"] >= 3
    for conn in {e.data["conn"] for e in cap.data}:
        events = [e for e in cap.data if e.data["conn"] == conn]
        for direction in ("write", "read"):
            # Every call starts where the previous one ended, cut or not.
            mine = [e for e in events if e.data["dir"] == direction]
            total = sum(e.data["len"] for e in mine)
            matches = [p for p in served.values() if len(p[0 if direction == "write" else 1]) == total]
            assert matches, f"no server stream of {total} bytes"
            stream = matches[0][0 if direction == "write" else 1]
            pos = 0
            for e in mine:
                got = e.data["bytes"]
                assert len(got) == min(e.data["len"], 4096)
                assert e.data["truncated"] == e.data["len"] - len(got)
                assert got == stream[pos:pos + len(got)]
                pos += e.data["len"]


def test_handshake_events(server: Server, cert: tuple[Path, Path]) -> None:
    cap = capture(python_client(server, cert), handshake=True, max_bytes=4 << 20)
    shakes = [e for e in cap.events if e.topic == "ssl.handshake"]
    assert len(shakes) == 2 and all(e.data["ok"] and e.data["latency_ns"] > 0 for e in shakes)
    assert {e.data["conn"] for e in shakes} == {e.data["conn"] for e in cap.data}


def test_overload_drops_are_counted(server: Server, cert: tuple[Path, Path]) -> None:
    """A 64 KiB ring cannot hold a 2 MiB write: the loss shows in stats, byte for byte."""
    cap = capture(python_client(server, cert), ring_kib=64, max_bytes=4 << 20)
    assert cap.stats["kernel_lost"] > 0 and cap.stats["kernel_lost_calls"] > 0
    moved = sum(len(a) + len(b) for a, b in server.transcripts())
    captured = sum(len(e.data["bytes"]) for e in cap.data)
    # Every byte the client moved was either delivered or counted as lost in the kernel.
    assert captured + cap.stats["kernel_lost_bytes"] == moved
    short = [e for e in cap.data if e.data["truncated"]]
    assert all(e.data["truncated"] == e.data["len"] - len(e.data["bytes"]) for e in short)


# A client that loads its own copy of libssl with ctypes long after it started (past the
# source's last look after exec), says so, waits to be told to go on, then makes one
# HTTPS request through that copy. Usage: LIBSSL PORT.
LATE_CLIENT = """
import ctypes, os, socket, sys, time
time.sleep(4)  # the delay is what is tested: past the looks after exec, only the rescan finds it
lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
print("loaded", os.getpid(), flush=True)
sys.stdin.readline()
P = ctypes.c_void_p
for name, res, args in [("TLS_client_method", P, []), ("SSL_CTX_new", P, [P]), ("SSL_new", P, [P]),
                        ("SSL_set_fd", ctypes.c_int, [P, ctypes.c_int]), ("SSL_connect", ctypes.c_int, [P]),
                        ("SSL_write", ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_int]),
                        ("SSL_read", ctypes.c_int, [P, P, ctypes.c_int]), ("SSL_shutdown", ctypes.c_int, [P])]:
    getattr(lib, name).restype, getattr(lib, name).argtypes = res, args
ctx = lib.SSL_CTX_new(lib.TLS_client_method())  # verifies nothing: the default
sock = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
conn = lib.SSL_new(ctx)
lib.SSL_set_fd(conn, sock.fileno())
assert lib.SSL_connect(conn) == 1
request = b"POST /size/5000 HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 5\\r\\n\\r\\nhello"
assert lib.SSL_write(conn, request, len(request)) == len(request)
buf = ctypes.create_string_buffer(65536)
got = b""
while not (b"\\r\\n\\r\\n" in got and len(got.partition(b"\\r\\n\\r\\n")[2]) >= 5000):
    n = lib.SSL_read(conn, buf, len(buf))
    assert n > 0, n
    got += buf.raw[:n]
lib.SSL_shutdown(conn)
sock.close()
"""


@pytest.mark.parametrize("mode", ["pid", "tree", "unfiltered"])
def test_a_library_loaded_late_is_found_by_the_periodic_rescan(server: Server, cert: tuple[Path, Path],
                                                               tmp_path: Path, mode: str) -> None:
    """A libssl dlopen'ed 4 s after exec (another file than the system one) is probed within
    rescan_s + 1 s, and the plaintext that goes through it is captured whole."""
    system = [p for p in tlslibs.system_library_paths() if Path(p).name == "libssl.so.3"]
    if not system:
        pytest.skip("no OpenSSL 3 libssl.so.3 in the standard library directories")
    lib = tmp_path / "libssl.so.3"
    shutil.copyfile(system[0], lib)
    script = tmp_path / "late_client.py"
    script.write_text(LATE_CLIENT)
    argv = [SYSTEM_PYTHON, str(script), str(lib), str(server.port)]
    gate = subprocess.Popen(["/bin/sh", "-c", 'read go && "$@"' if mode == "tree" else 'read go && exec "$@"',
                             "sh", *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert gate.stdin is not None and gate.stdout is not None and gate.stderr is not None
    rescan_s = 2.0
    options: dict[str, object] = {"rescan_s": rescan_s}
    if mode != "unfiltered":
        options.update(pid=gate.pid, tree=mode == "tree")
    source = SslSource("ssl", options)
    events: list[Event] = []
    loaded_at = attached_at = None
    child = 0
    try:
        source.open()
        gate.stdin.write(b"go\n")
        gate.stdin.flush()
        deadline = time.monotonic() + 60
        while gate.poll() is None:
            assert time.monotonic() < deadline, "the late client did not finish in 60s"
            new = source.poll(0.05)
            events.extend(new)
            if loaded_at is None and select.select([gate.stdout], [], [], 0)[0]:
                loaded_at = time.monotonic()
                word, pid = os.read(gate.stdout.fileno(), 64).split()
                assert word == b"loaded"
                child = int(pid)
            if attached_at is None and any(e.topic == "ssl.attached" and e.data["path"] == str(lib) for e in new):
                assert loaded_at is not None, "attached to the copy before the client loaded it"
                attached_at = time.monotonic()
                gate.stdin.write(b"send\n")
                gate.stdin.close()
            assert loaded_at is None or attached_at is not None or time.monotonic() - loaded_at < rescan_s + 1, \
                f"no ssl.attached for {lib} within {rescan_s + 1}s of the client loading it"
        events.extend(source.poll(0))
        events.extend(source.stop())
    finally:
        source.close()
        if gate.poll() is None:
            gate.kill()
            gate.wait()
    assert gate.returncode == 0, gate.stderr.read().decode(errors="replace")
    assert source.stats["rescan_passes"] >= 1
    # Without a filter other processes' TLS shows too: keep the client's.
    cap = Capture([e for e in events if e.pid == child], gate.pid, dict(source.stats))
    assert cap.data and {e.data["func"] for e in cap.data} == {"SSL_write", "SSL_read"}
    assert_same_plaintext(cap, server)


def test_node_fetch_write_nested_in_read(server: Server, cert: tuple[Path, Path]) -> None:
    """undici sends a connection's first request from inside SSL_read: it is captured too."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    os.environ["NODE_EXTRA_CA_CERTS"] = str(cert[0])
    try:
        cap = capture([node, str(PEERS / "fetch.js"), str(server.port)], tree=True)
    finally:
        del os.environ["NODE_EXTRA_CA_CERTS"]
    writes = sorted(w for w, _ in cap.streams().values())
    # Every connection's first bytes are a request head (undici opens one per request here).
    assert len(writes) == 4 and all(w.startswith(b"POST /size/") for w in writes)
    assert sum(w.count(b"POST /size/100 HTTP/1.1") for w in writes) == 2
    nested = [e for e in cap.data if e.data["dir"] == "write" and e.data["bytes"].startswith(b"POST /size/100")]
    assert len(nested) == 2
    assert_same_plaintext(cap, server)


def test_nested_calls_are_captured_and_reentries_reported_once(tmp_path: Path) -> None:
    """A call inside another is its own record; a function re-entering itself or its wrapper is one."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    exe = tmp_path / "reentry"
    subprocess.run(["gcc", "-O1", "-fno-inline", "-fno-optimize-sibling-calls", "-rdynamic", "-o", str(exe),
                    str(PEERS / "reentry.c")], check=True)
    cap = capture([str(exe)], binary_path=[str(exe)], system_libs=False)
    got = [(e.data["conn"].split(":")[1], e.data["func"], e.data["dir"], e.data["bytes"]) for e in cap.data]
    assert got == [
        ("1000", "SSL_write_ex", "write", b"outer write_ex"),  # SSL_write inside: a re-entry
        ("1000", "SSL_write", "write", b"nested write"),  # made inside SSL_read: its own call
        ("1000", "SSL_read", "read", b"inner read data"),  # SSL_read inside itself: once
        ("2000", "SSL_write", "write", b"nested write"),
        ("2000", "SSL_read_ex", "read", b"inner read data"),  # SSL_read inside the wrapper: once
        ("2000", "SSL_write", "write", b"plain"),
    ]
    assert cap.stats.get("read_errors", 0) == 0 and cap.stats.get("kernel_untracked", 0) == 0


def test_a_tls_stack_that_cannot_be_probed_is_said(server: Server, cert: tuple[Path, Path]) -> None:
    """wget uses GnuTLS: its connection is reported as not visible, naming the binary and why."""
    wget = shutil.which("wget")
    if wget is None:
        pytest.skip("wget is not installed")
    cap = capture([wget, "-q", "-O", "/dev/null", "--ca-certificate", str(cert[0]), "--post-data", "x",
                   f"https://127.0.0.1:{server.port}/size/10"], tree=True)
    assert not cap.data
    unseen = [e for e in cap.events if e.topic == "ssl.unprobed"]
    assert len(unseen) == 1, unseen
    d = unseen[0].data
    assert d["path"] == os.path.realpath(wget) and d["dest"] == f"127.0.0.1:{server.port}"
    assert "GnuTLS" in d["reason"] and d["late"] is False
    assert cap.stats["unprobed_connections"] == 1
