"""HTTPS/1.1 keep-alive test server that records the plaintext of every connection.

Usage: server.py CERT KEY DIR. Prints its port once listening. For connection N it
writes DIR/N.in (every byte received) and DIR/N.out (every byte sent, recorded before it
is sent), then DIR/N.done when the peer closed. The reply to ``/size/K`` is K bytes.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import sys
import threading
from pathlib import Path


def reply_body(path: bytes, body: bytes) -> bytes:
    size = int(path.rsplit(b"/", 1)[1]) if path.startswith(b"/size/") else 64
    digest = hashlib.sha256(body).hexdigest().encode()
    pattern = b"len=%d sha256=%s " % (len(body), digest)
    return (pattern * (size // len(pattern) + 1))[:size]


def serve(conn: ssl.SSLSocket, base: Path) -> None:
    with conn, open(f"{base}.in", "wb") as fin, open(f"{base}.out", "wb") as fout:
        buf = b""

        def more() -> bool:
            nonlocal buf
            try:
                data = conn.recv(1 << 16)
            except (OSError, ssl.SSLError):
                return False
            fin.write(data)
            fin.flush()
            buf += data
            return bool(data)

        while True:
            while b"\r\n\r\n" not in buf:
                if not more():
                    Path(f"{base}.done").touch()
                    return
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                if not more():
                    break
            body, buf = buf[:length], buf[length:]
            reply = reply_body(head.split(b" ")[1], body)
            response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(reply), reply)
            fout.write(response)
            fout.flush()
            conn.sendall(response)


def main() -> None:
    cert, key, out = sys.argv[1:4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    n = 0
    while True:
        raw, _ = listener.accept()
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            continue
        threading.Thread(target=serve, args=(conn, Path(out) / str(n)), daemon=True).start()
        n += 1


if __name__ == "__main__":
    main()
