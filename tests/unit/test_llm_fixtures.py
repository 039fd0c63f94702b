"""Every LLM fixture, fed whole and split at every byte, gives the same hand-checked llm.call record."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.chain import llm_calls, run_chain

FX = Path(__file__).parent.parent / "fixtures" / "llm"
NAMES = sorted(p.stem for p in FX.glob("*.req"))
EXPECTED: dict[str, dict[str, Any]] = json.loads((FX / "expected.json").read_text())
SECRETS = [
    "sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp",
    "sk-ant-api03-Zr8wQk2VnT5yLm1XcB7sPd4FgH9jK0aUeIo3RtYu6WqEzA-xyz12AA",
    "AIzaSyD4fakeFakeFake1234567890abcdEFGH",
    "Qm9vX2Zha2VfY29va2llX3ZhbHVl",
]
TIMING = ("ts_request_start_ns", "ts_first_byte_ns", "ts_first_token_ns", "ts_end_ns", "ttft_ms", "duration_ms")


def wire(name: str) -> tuple[bytes, bytes]:
    return (FX / f"{name}.req").read_bytes(), (FX / f"{name}.resp").read_bytes()


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the fields that depend on how bytes were cut into records."""
    return {k: v for k, v in record.items() if k not in TIMING}


@pytest.fixture(scope="module")
def whole() -> dict[str, dict[str, Any]]:
    out = {}
    for name in NAMES:
        req, resp = wire(name)
        calls = llm_calls(run_chain([("write", req), ("read", resp)]))
        assert len(calls) == 1, name
        out[name] = calls[0].data
    return out


@pytest.mark.parametrize("name", NAMES)
def test_fixture_record_matches_expected(name: str, whole: dict[str, dict[str, Any]]) -> None:
    rec, exp = whole[name], EXPECTED[name]
    for key in ("api", "provider", "host", "endpoint", "stream", "status_code", "model_requested", "model",
                "system", "output_text", "reasoning", "stop_reason"):
        assert rec[key] == exp[key], key
    assert [[m["role"], m["content"]] for m in rec["messages"]] == exp["messages"]
    assert [t["name"] for t in rec["tools"]] == exp["tools"]
    assert [{"id": t["id"], "name": t["name"], "input": t["input"]} for t in rec["tool_calls"]] == exp["tool_calls"]
    assert {k: v for k, v in rec["usage"].items() if k != "raw"} == exp["usage"]
    if exp["error"] is None:
        assert rec["error"] is None
    else:
        assert {k: rec["error"][k] for k in exp["error"]} == exp["error"]


def cuts_that_matter(data: bytes) -> list[int]:
    """The offsets where cutting a message in two can change what its parsers do.

    They branch on line ends (HTTP head lines, chunk-size lines, SSE field lines and the blank
    lines between events) and on UTF-8 sequences; between those they copy bytes. So: just before
    each CR and LF, between them and after them, and after the next byte; inside and after each
    non-ASCII byte (all of a compressed body, nearly).
    """
    cuts = set()
    for j, byte in enumerate(data):
        if byte in b"\r\n":
            cuts.update(range(j - 1, j + 3))
        elif byte >= 0x80:
            cuts.update((j, j + 1))
    return sorted(c for c in cuts if 0 < c < len(data))


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(marks, marks[1:], strict=False)]


COMB = 64  # the comb runs: every COMB-th offset from each start in 1..COMB, so each offset is a cut once


@pytest.mark.parametrize("name", NAMES)
def test_every_byte_split_gives_the_same_record(name: str, whole: dict[str, dict[str, Any]]) -> None:
    """Cut in two at every offset that can matter (:func:`cuts_that_matter`), and cut at every
    offset in one of the comb runs (records of COMB bytes), the same record comes out."""
    req, resp = wire(name)
    want = [stable(whole[name])]

    def same(reqs: list[bytes], resps: list[bytes], what: str) -> None:
        calls = llm_calls(run_chain([("write", b) for b in reqs] + [("read", b) for b in resps]))
        assert [stable(c.data) for c in calls] == want, what

    for i in cuts_that_matter(req):
        same([req[:i], req[i:]], [resp], f"request split at {i}")
    for i in cuts_that_matter(resp):
        same([req], [resp[:i], resp[i:]], f"response split at {i}")
    for start in range(1, COMB + 1):
        same(cut(req, list(range(start, len(req), COMB))), [resp], f"request cut every {COMB} bytes from {start}")
        same([req], cut(resp, list(range(start, len(resp), COMB))), f"response cut every {COMB} bytes from {start}")


@pytest.mark.parametrize("name", NAMES)
def test_one_byte_records(name: str, whole: dict[str, dict[str, Any]]) -> None:
    req, resp = wire(name)
    records = [("write", req[i : i + 1]) for i in range(len(req))] + [("read", resp[i : i + 1]) for i in range(len(resp))]
    calls = llm_calls(run_chain(records))
    assert [stable(c.data) for c in calls] == [stable(whole[name])]


def _cut(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.choice([1, 2, 7, 64, 500, 4096])
        out.append(data[i : i + n])
        i += n
    return out


@pytest.mark.parametrize("seed", range(6))
def test_keep_alive_connection_carries_all_fixtures(seed: int, whole: dict[str, dict[str, Any]]) -> None:
    """All exchanges on one connection, request/response alternating, cut at random sizes."""
    rng = random.Random(seed)
    records: list[tuple[str, bytes]] = []
    for name in NAMES:
        req, resp = wire(name)
        records += [("write", c) for c in _cut(req, rng)] + [("read", c) for c in _cut(resp, rng)]
    calls = llm_calls(run_chain(records))
    assert [stable(c.data) | {"seq": 0} for c in calls] == [stable(whole[n]) for n in NAMES]
    assert [c.data["seq"] for c in calls] == list(range(len(NAMES)))


def test_pipelined_requests_pair_in_order(whole: dict[str, dict[str, Any]]) -> None:
    """HTTP/1.1 pipelining: every request first, then every response, in one TLS record each side."""
    reqs = b"".join(wire(n)[0] for n in NAMES)
    resps = b"".join(wire(n)[1] for n in NAMES)
    calls = llm_calls(run_chain([("write", reqs), ("read", resps)]))
    assert [c.data["model"] for c in calls] == [whole[n]["model"] for n in NAMES]
    assert [c.data["output_text"] for c in calls] == [whole[n]["output_text"] for n in NAMES]


def test_no_credential_survives_redaction() -> None:
    records: list[tuple[str, bytes]] = []
    for name in NAMES:
        req, resp = wire(name)
        records += [("write", req), ("read", resp)]
    every = run_chain(records)
    calls = llm_calls(every)
    assert len(calls) == len(NAMES)
    blob = repr([e.to_dict() for e in every])
    for secret in SECRETS:
        assert secret in repr(records)  # the fixtures really carry it...
        assert secret not in blob  # ...and no emitted event does
    assert "[REDACTED:sk-ant]" in blob and "[REDACTED:sk]" in blob and "[REDACTED:AIza]" in blob


def test_timing_fields_follow_the_records() -> None:
    req, resp = wire("anthropic_messages_stream")
    head_end = resp.index(b"\r\n\r\n") + 4
    # request at ts 1_000_000, response head at +1, each later record one ns apart
    records = [("write", req), ("read", resp[:head_end])] + [("read", resp[i : i + 100]) for i in
                                                            range(head_end, len(resp), 100)]
    calls = llm_calls(run_chain(records))
    rec = calls[0].data
    assert rec["ts_request_start_ns"] == 1_000_000
    assert rec["ts_first_byte_ns"] == 1_000_001
    assert rec["ts_end_ns"] == 1_000_000 + len(records) - 1
    # the first token is the first content_block_delta, later than the head and message_start
    assert rec["ts_first_byte_ns"] < rec["ts_first_token_ns"] < rec["ts_end_ns"]
    first_delta = resp.index(b"content_block_delta")
    assert rec["ts_first_token_ns"] >= 1_000_002 + (first_delta - head_end) // 100
    assert rec["ttft_ms"] == (rec["ts_first_token_ns"] - 1_000_000) / 1e6
