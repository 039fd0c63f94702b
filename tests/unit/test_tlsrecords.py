"""AEAD records back to connection plaintext (agentsight.kernel.tlsrecords): pure logic, no kernel."""

from __future__ import annotations

from agentsight.kernel.tlsrecords import AeadStreams, content_of

TLS13 = b"\x17\x03\x03\x00\x40"  # the 5-byte AAD: an encrypted record's header


def tls12(kind: int) -> bytes:
    return b"\x00" * 7 + b"\x01" + bytes([kind]) + b"\x03\x03\x00\x10"


def test_content_type_is_the_last_nonzero_byte_in_tls13_and_from_the_aad_in_tls12() -> None:
    assert content_of(TLS13, 5, b"GET / HTTP/1.1\r\n\x17") == (23, b"GET / HTTP/1.1\r\n")
    assert content_of(TLS13, 5, b"hi\x00\x17\x00\x00\x00") == (23, b"hi\x00")  # padding, then type
    assert content_of(TLS13, 5, b"\x14\x00\x00\x0c" + b"f" * 12 + b"\x16") == (22, b"\x14\x00\x00\x0c" + b"f" * 12)
    assert content_of(TLS13, 5, b"\x00\x00") is None  # all padding: not a record
    assert content_of(tls12(23), 13, b"body") == (23, b"body")
    assert content_of(b"\x01\x02\x03\x04\x05", 5, b"x\x17") is None  # not a record header
    assert content_of(b"", 0, b"x") is None and content_of(TLS13, 7, b"x\x17") is None


def test_seals_wait_for_their_socket_then_share_a_key_with_the_opens_of_that_socket() -> None:
    s = AeadStreams()
    # Client: handshake context seals Finished, the application context seals a request.
    assert s.sealed(10, 0xA, TLS13, 5, b"\x14fin\x16", "m0", now=0.0) == []
    assert s.bound(10, 0xA, 7) == []
    assert s.sealed(10, 0xB, TLS13, 5, b"POST /v1 HTTP/1.1\r\n\x17", "m1", now=0.0) == []
    assert s.bound(10, 0xB, 7) == [("10:fd7.1", b"POST /v1 HTTP/1.1\r\n", "m1")]
    assert s.sealed(10, 0xB, TLS13, 5, b"more\x17", "m2") == [("10:fd7.1", b"more", "m2")]
    assert s.opened(10, 0xC, 7, TLS13, 5, b"HTTP/1.1 200 OK\r\n\x17", "m3") == [("10:fd7.1", b"HTTP/1.1 200 OK\r\n", "m3")]
    # The server's session ticket (a handshake record after the handshake) is not data.
    assert s.opened(10, 0xC, 7, TLS13, 5, b"\x04ticket\x16", "m4") == []
    assert s.stats == {"aead_handshake": 2}


def test_a_new_connection_on_a_reused_socket_number_gets_a_new_key() -> None:
    s = AeadStreams()
    for n, (hs, app) in enumerate([(1, 2), (3, 4)], start=1):
        s.sealed(10, hs, TLS13, 5, b"fin\x16", None)
        s.bound(10, hs, 5)
        s.sealed(10, app, TLS13, 5, b"req\x17", None)
        assert s.bound(10, app, 5) == [(f"10:fd5.{n}", b"req", None)]
        assert s.opened(10, 100 + n, 5, TLS13, 5, b"resp\x17", None)[0][0] == f"10:fd5.{n}"
    # Another process's socket 5 is another connection.
    s.sealed(11, 9, TLS13, 5, b"fin\x16", None)
    s.bound(11, 9, 5)
    assert s.opened(11, 8, 5, TLS13, 5, b"x\x17", None)[0][0] == "11:fd5.1"


def test_unbound_records_go_out_under_their_own_key_and_are_counted() -> None:
    s = AeadStreams(hold_s=1.0)
    s.sealed(10, 0xB, TLS13, 5, b"req\x17", "m", now=5.0)
    assert s.expire(now=5.5) == []
    assert s.expire(now=6.1) == [("10:aeadb", b"req", "m")]
    assert s.opened(10, 0xC, -1, TLS13, 5, b"resp\x17", "n") == [("10:aeadc", b"resp", "n")]
    assert s.stats["aead_unbound"] == 2
    s.sealed(10, 0xD, TLS13, 5, b"late\x17", "o", now=7.0)
    assert s.expire(now=7.0, everything=True) == [("10:aeadd", b"late", "o")]


def test_tls12_records_and_non_tls_aead_use() -> None:
    s = AeadStreams()
    s.sealed(1, 1, tls12(22), 13, b"finished", None)
    s.bound(1, 1, 3)
    s.sealed(1, 2, tls12(23), 13, b"GET /", None)
    assert s.bound(1, 2, 3) == [("1:fd3.1", b"GET /", None)]
    assert s.opened(1, 3, 3, tls12(21), 13, b"\x01\x00", None) == []
    assert s.sealed(1, 4, b"abc", 3, b"not a record", None) == []
    assert s.stats == {"aead_handshake": 1, "aead_alerts": 1, "aead_not_tls": 1}
