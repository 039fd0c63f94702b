"""RFC 6455 frames and RFC 7692 permessage-deflate, read passively: any split gives the same messages.

Frames here are built by hand (fragmentation, lengths in every encoding, control frames between
fragments, broken headers) with zlib as the peer's compressor; tests/integration/test_websocket_peers.py
reads what real aiohttp peers sent.
"""

from __future__ import annotations

import os
import random
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from agentsight.analysis.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Deflate,
    WsError,
    WsMessage,
    WsReader,
    is_websocket_upgrade,
    negotiated_deflate,
)

KEY = b"\x37\xfa\x21\x3d"
DEFLATE = Deflate()


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, key: bytes | None = None,
          ext: int | None = None) -> bytes:
    """One frame; ``ext`` forces the length encoding (0: 7-bit, 2: 16-bit, 8: 64-bit)."""
    n = len(payload)
    if ext is None:
        ext = 0 if n < 126 else 2 if n < 65536 else 8
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    mask_bit = 0x80 if key is not None else 0
    if ext == 0:
        head += bytes([mask_bit | n])
    elif ext == 2:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if key is None:
        return head + payload
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def deflate(messages: list[bytes], *, takeover: bool = True, final: bool = False) -> list[bytes]:
    """Compressed payloads as a permessage-deflate sender makes them (tail ``00 00 ff ff`` removed)."""
    out, comp = [], zlib.compressobj(6, zlib.DEFLATED, -15)
    for m in messages:
        if not takeover or final:
            comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = comp.compress(m) + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
        out.append(data[:-4] if data.endswith(b"\x00\x00\xff\xff") else data)
    return out


def read(reader: WsReader, chunks: list[bytes]) -> list[WsMessage | WsError]:
    out: list[WsMessage | WsError] = []
    for i, c in enumerate(chunks):
        out += reader.feed(c, i)
    return out + list(reader.close())


def summary(items: list[WsMessage | WsError]) -> list[tuple]:
    """What must not depend on how the bytes were cut (timestamps do)."""
    return [(i.opcode, i.payload, i.size, i.wire_size, i.frames, i.compressed, i.truncated, i.error)
            if isinstance(i, WsMessage) else ("error", i.reason, i.skipped) for i in items]


def every_split(data: bytes, from_client: bool, deflate_: Deflate | None = None, **kw) -> list[tuple]:
    """Feed whole, at every split point and one byte at a time; all must agree. Returns the summary."""
    want = summary(read(WsReader(from_client, deflate_, **kw), [data]))
    for i in range(1, len(data)):
        assert summary(read(WsReader(from_client, deflate_, **kw), [data[:i], data[i:]])) == want, f"split at {i}"
    assert summary(read(WsReader(from_client, deflate_, **kw), [data[i : i + 1] for i in range(len(data))])) == want
    return want


def messages(items: list[WsMessage | WsError]) -> list[tuple[int, bytes]]:
    return [(i.opcode, i.payload) for i in items if isinstance(i, WsMessage)]


# --------------------------------------------------------------------------- framing


def test_lengths_in_every_encoding_masked_and_not() -> None:
    for size in (0, 1, 125, 126, 127, 65535, 65536, 70001):
        payload = os.urandom(size)
        for key in (None, KEY):
            data = frame(OP_BINARY, payload, key=key)
            rng = random.Random(size)
            cuts, pos = [], 0
            while pos < len(data):
                n = rng.choice([1, 2, 3, 13, 700, 9000])
                cuts.append(data[pos : pos + n])
                pos += n
            got = read(WsReader(key is not None), cuts)
            assert messages(got) == [(OP_BINARY, payload)], (size, key)
            assert got[0].wire_size == size and got[0].frames == 1


def test_a_64_bit_length_for_a_short_payload_is_refused() -> None:
    """Lengths must use their shortest form: anything else is not a frame a peer sends."""
    got = read(WsReader(False), [frame(OP_TEXT, b"hi", ext=8)])
    assert isinstance(got[0], WsError) and "shortest" in got[0].reason
    assert messages(got) == []


def test_fragments_with_control_frames_between_and_several_frames_per_read() -> None:
    data = (frame(OP_TEXT, b"Hel", fin=False, key=KEY) + frame(OP_PING, b"p1", key=KEY)
            + frame(OP_CONTINUATION, b"lo, ", fin=False, key=KEY) + frame(OP_PONG, b"", key=KEY)
            + frame(OP_CONTINUATION, "wörld".encode(), key=KEY) + frame(OP_BINARY, b"\x00\xff", key=KEY)
            + frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye", key=KEY))
    want = every_split(data, True)
    assert [(op, p) for op, p, *_ in want] == [
        (OP_PING, b"p1"), (OP_PONG, b""), (OP_TEXT, "Hello, wörld".encode()), (OP_BINARY, b"\x00\xff"),
        (OP_CLOSE, b"\x03\xe8bye")]
    assert want[2][4] == 3  # three frames made the text message


def test_bad_headers_are_reported_once_and_skipped() -> None:
    """Each broken header is one error; the bytes up to the next frame are skipped and counted.

    Payloads here are ``0x33`` bytes on the wire (RSV bits set): a resync cannot take them for a
    header, so the frame after them is found. Masked payload bytes in general look random and a
    resync may take some of them for a frame; that costs frames, never an exception.
    """
    wire_junk = bytes(0x33 ^ KEY[i % 4] for i in range(126))  # masks to 0x33 on the wire
    ok = frame(OP_TEXT, b"after", key=KEY)
    cases = {
        "unmasked client frame": frame(OP_TEXT, b"\x33"),
        "control frame longer than 125 bytes": frame(OP_PING, wire_junk, key=KEY),
        "fragmented control frame": frame(OP_PING, wire_junk[:3], fin=False, key=KEY),
        "continuation frame without a message": frame(OP_CONTINUATION, wire_junk[:3], key=KEY),
        "unknown opcode 3": frame(3, wire_junk[:3], key=KEY),
        "RSV1 set without a compressed message": frame(OP_TEXT, wire_junk[:3], rsv1=True, key=KEY),
        "RSV2/RSV3 set": b"\xb1\x81" + KEY + b"\x33",
    }
    for reason, bad in cases.items():
        got = every_split(bad + ok, True)
        assert got[0][:2] == ("error", reason), reason
        assert got[1:] == [("error", "", len(bad)), (OP_TEXT, b"after", 5, 5, 1, False, False, None)], reason


def test_server_frames_must_not_be_masked() -> None:
    junk = bytes(0x33 ^ KEY[i % 4] for i in range(0x33))  # length 0x33: the mask byte 0xb3 is no header either
    got = read(WsReader(False), [frame(OP_TEXT, junk, key=KEY) + frame(OP_TEXT, b"fine")])
    assert isinstance(got[0], WsError) and got[0].reason == "masked server frame"
    assert messages(got) == [(OP_TEXT, b"fine")]


def test_a_bad_frame_inside_a_fragmented_message_drops_the_message() -> None:
    reader = WsReader(True)
    data = (frame(OP_TEXT, b"part", fin=False, key=KEY) + frame(OP_TEXT, b"new", key=KEY)
            + frame(OP_TEXT, b"next", key=KEY))
    got = read(reader, [data])
    assert isinstance(got[0], WsError) and got[0].reason == "data frame inside a fragmented message"
    assert messages(got)[-1] == (OP_TEXT, b"next") and reader.dropped == 1


def test_a_message_cut_by_the_end_of_the_connection_is_dropped_and_counted() -> None:
    reader = WsReader(False)
    got = read(reader, [frame(OP_TEXT, b"whole") + frame(OP_TEXT, b"cut short")[:6]])
    assert messages(got) == [(OP_TEXT, b"whole")] and reader.dropped == 1


def test_oversized_messages_are_cut_to_the_cap_and_still_counted() -> None:
    payload = b"x" * 1000
    data = frame(OP_TEXT, payload[:400], fin=False, key=KEY) + frame(OP_CONTINUATION, payload[400:], key=KEY)
    (msg,) = read(WsReader(True, max_message=100), [data])
    assert isinstance(msg, WsMessage)
    assert (msg.payload, msg.size, msg.wire_size, msg.truncated) == (payload[:100], 1000, 1000, True)


# --------------------------------------------------------------------------- permessage-deflate


def test_context_takeover_needs_the_window_of_earlier_messages() -> None:
    texts = [b'{"type":"response.output_text.delta","delta":"Hello there"}'] * 3 + [b"tail"]
    payloads = deflate(texts)
    assert len(payloads[1]) < len(payloads[0]) / 2  # the later ones point back into the first
    data = b"".join(frame(OP_TEXT, p, rsv1=True) for p in payloads)
    got = every_split(data, False, DEFLATE)
    assert [(g[0], g[1], g[5], g[7]) for g in got] == [(OP_TEXT, t, True, None) for t in texts]


def test_a_compressed_message_in_fragments_with_a_ping_between() -> None:
    (payload,) = deflate([b"fragmented and compressed " * 20])
    data = (frame(OP_TEXT, payload[:5], fin=False, rsv1=True, key=KEY) + frame(OP_PING, b"", key=KEY)
            + frame(OP_CONTINUATION, payload[5:], key=KEY))
    got = every_split(data, True, DEFLATE)
    assert [(g[0], g[1]) for g in got] == [(OP_PING, b""), (OP_TEXT, b"fragmented and compressed " * 20)]


def test_rsv1_on_a_continuation_frame_is_refused() -> None:
    (payload,) = deflate([b"abc"])
    data = frame(OP_TEXT, payload[:2], fin=False, rsv1=True) + frame(OP_CONTINUATION, payload[2:], rsv1=True)
    got = read(WsReader(False, DEFLATE), [data])
    assert isinstance(got[0], WsError) and "RSV1" in got[0].reason


def test_no_context_takeover_and_final_blocks_start_each_message_afresh() -> None:
    texts = [b"same words again and again"] * 3
    for d, payloads in ((Deflate(server_no_context_takeover=True), deflate(texts, takeover=False)),
                        (DEFLATE, deflate(texts, final=True))):
        data = b"".join(frame(OP_TEXT, p, rsv1=True) for p in payloads)
        assert messages(read(WsReader(False, d), [data])) == [(OP_TEXT, t) for t in texts]


def test_client_no_context_takeover_applies_to_client_frames_only() -> None:
    d = Deflate(client_no_context_takeover=True)
    assert WsReader(True, d)._no_takeover and not WsReader(False, d)._no_takeover


def test_a_payload_that_does_not_inflate_is_reported_and_the_next_one_still_reads() -> None:
    (good,) = deflate([b"ok after"])
    data = frame(OP_TEXT, b"\xff\xfe\xfd garbage", rsv1=True) + frame(OP_TEXT, good, rsv1=True)
    got = read(WsReader(False, DEFLATE), [data])
    assert isinstance(got[0], WsMessage) and got[0].error and got[0].error.startswith("inflate:")
    assert isinstance(got[1], WsMessage) and (got[1].payload, got[1].error) == (b"ok after", None)


def test_a_deflate_bomb_costs_at_most_the_cap() -> None:
    (payload,) = deflate([b"\x00" * 20_000_000])
    assert len(payload) < 30_000
    (msg,) = read(WsReader(False, DEFLATE, max_message=4096), [frame(OP_BINARY, payload, rsv1=True)])
    assert isinstance(msg, WsMessage)
    assert (len(msg.payload), msg.size, msg.truncated) == (4096, 20_000_000, True)


def test_negotiated_parameters() -> None:
    assert negotiated_deflate(None) is None
    assert negotiated_deflate("x-webkit-deflate-frame") is None
    assert negotiated_deflate("permessage-deflate") == Deflate()
    got = negotiated_deflate('foo, permessage-deflate; client_no_context_takeover; server_max_window_bits="10"; '
                             "client_max_window_bits=9")
    assert got == Deflate(True, False, 9, 10)
    assert negotiated_deflate("permessage-deflate; server_no_context_takeover; server_max_window_bits=99") == \
        Deflate(False, True, 15, 15)
    assert is_websocket_upgrade("WebSocket") and is_websocket_upgrade("foo, websocket")
    assert not is_websocket_upgrade("h2c") and not is_websocket_upgrade(None)


# --------------------------------------------------------------------------- garbage


def test_garbage_before_frames_is_skipped_and_counted() -> None:
    data = b"\x33" * 50 + frame(OP_TEXT, b"first", key=KEY) + b"\xf5" * 7 + frame(OP_TEXT, b"second", key=KEY)
    got = every_split(data, True)
    assert [g for g in got if g[0] == "error"] == [("error", "RSV2/RSV3 set", 0), ("error", "", 50),
                                                    ("error", "RSV2/RSV3 set", 0), ("error", "", 7)]
    assert [g[1] for g in got if g[0] != "error"] == [b"first", b"second"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(1, 64), max_size=30), st.booleans(), st.booleans())
def test_fuzz_never_raises_and_any_split_agrees(data: bytes, cuts: list[int], from_client: bool,
                                                compressed: bool) -> None:
    d = DEFLATE if compressed else None
    whole = summary(read(WsReader(from_client, d, max_message=256), [data]))
    chunks, pos = [], 0
    for n in cuts:
        chunks.append(data[pos : pos + n])
        pos += n
    chunks.append(data[pos:])
    assert summary(read(WsReader(from_client, d, max_message=256), chunks)) == whole
    for item in whole:
        if item[0] != "error":
            assert len(item[1]) <= 256


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6), st.binary(max_size=40), st.integers(0, 5))
def test_fuzz_garbage_between_valid_frames(texts: list[bytes], junk: bytes, where: int) -> None:
    """Whatever junk is inserted, the frames before it are read and the reader never raises."""
    frames = [frame(OP_BINARY, t, key=KEY) for t in texts]
    where = min(where, len(frames))
    data = b"".join(frames[:where]) + junk + b"".join(frames[where:])
    got = read(WsReader(True), [data[i : i + 7] for i in range(0, len(data), 7)])
    assert messages(got)[:where] == [(OP_BINARY, t) for t in texts[:where]]
