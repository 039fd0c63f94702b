"""HTTPS/1.1 keep-alive test client: two connections, several requests each.

Usage: client.py PORT CAFILE. Connection A carries a small request, a 2 MiB request
body and a large response; connection B is opened while A is still open, so the two
have distinct SSL objects.
"""

from __future__ import annotations

import socket
import ssl
import sys


class Conn:
    def __init__(self, port: int, cafile: str) -> None:
        ctx = ssl.create_default_context(cafile=cafile)
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        self.buf = b""

    def request(self, path: str, body: bytes) -> bytes:
        head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        self.sock.sendall(head + body)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(1 << 16)
        head_in, _, self.buf = self.buf.partition(b"\r\n\r\n")
        length = int(head_in.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(self.buf) < length:
            self.buf += self.sock.recv(1 << 16)
        reply, self.buf = self.buf[:length], self.buf[length:]
        return reply


def main() -> None:
    port, cafile = int(sys.argv[1]), sys.argv[2]
    big = bytes(range(256)) * (2 * 1024 * 1024 // 256)
    a = Conn(port, cafile)
    a.request("/size/10", b"hello")
    a.request("/size/300000", b"x" * 1000)
    b = Conn(port, cafile)
    b.request("/size/5", b"")
    a.request("/size/50", big)
    b.request("/size/70000", b"second connection")
    a.request("/size/5", b"bye")
    a.sock.close()
    b.sock.close()


if __name__ == "__main__":
    main()
