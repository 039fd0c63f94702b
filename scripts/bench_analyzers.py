"""Throughput of the pure analysis stages on the LLM fixtures.

Feeds every fixture exchange (tests/fixtures/llm) through HttpStreams -> SseMerge ->
LlmCalls as TLS records of a chosen size, many times over on keep-alive connections,
and prints MB/s of TLS payload and llm.call records per second for each stage mix.

    .venv/bin/python scripts/bench_analyzers.py [--seconds 3] [--record-size 16384]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from agentsight.analysis.httpstream import HttpStreams
from agentsight.analysis.llm import LlmCalls
from agentsight.analysis.sse import SseMerge
from agentsight.event import Event

FX = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "llm"


def records(size: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for req_path in sorted(FX.glob("*.req")):
        for direction, data in (("write", req_path.read_bytes()), ("read", req_path.with_suffix(".resp").read_bytes())):
            out += [(direction, data[i : i + size]) for i in range(0, len(data), size)]
    return out


def run(recs: list[tuple[str, bytes]], seconds: float, make: Callable[[], Callable[[Event], int]]) -> tuple[float, float]:
    """Returns (MB/s of payload, llm.call/s)."""
    payload = sum(len(b) for _, b in recs)
    stage = make()
    done = calls = rounds = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conn = f"1:{rounds}"
        for i, (d, b) in enumerate(recs):
            calls += stage(Event("ssl.data", i, "ssl", 1, 1, "bench", {"conn": conn, "dir": d, "bytes": b, "len": len(b)}))
        done += payload
        rounds += 1
    dt = time.perf_counter() - t0
    return done / dt / 1e6, calls / dt


def http_only(redact: bool) -> Callable[[], Callable[[Event], int]]:
    def make() -> Callable[[Event], int]:
        http = HttpStreams(redact=redact)

        def stage(ev: Event) -> int:
            return sum(e.topic == "http.exchange" for e in http.feed(ev))

        return stage

    return make


def full(redact: bool, prices: bool) -> Callable[[], Callable[[Event], int]]:
    def make() -> Callable[[Event], int]:
        http, sse, llm = HttpStreams(redact=redact), SseMerge(), LlmCalls(redact=redact, prices=prices)

        def stage(ev: Event) -> int:
            n = 0
            for h in http.feed(ev):
                for s in sse.feed(h):
                    n += len(llm.feed(s))
            return n

        return stage

    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per row")
    ap.add_argument("--record-size", type=int, nargs="*", default=[16384, 512, 64])
    args = ap.parse_args()
    rows = [
        ("http (no redaction)", http_only(False)),
        ("http (redaction)", http_only(True)),
        ("http+sse+llm (no redaction, no prices)", full(False, False)),
        ("http+sse+llm (redaction + prices)", full(True, True)),
    ]
    print(f"{'stages':42} {'record':>7} {'MB/s':>8} {'calls/s':>9} {'exch/s':>9}")
    for size in args.record_size:
        recs = records(size)
        for name, make in rows:
            mbs, per_s = run(recs, args.seconds, make)
            label = "exch/s" if name.startswith("http (") else "calls/s"
            print(f"{name:42} {size:>7} {mbs:>8.2f} {per_s if label == 'calls/s' else 0:>9.0f} "
                  f"{per_s if label == 'exch/s' else 0:>9.0f}")


if __name__ == "__main__":
    main()
