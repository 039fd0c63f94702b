"""Cost of the analysis stages: the LLM fixtures, realistic calls, and the whole record pipeline.

1. ``--fixtures``: every fixture exchange (tests/fixtures/llm) through HttpStreams -> SseMerge ->
   LlmCalls as TLS records of a chosen size, many times over on keep-alive connections: MB/s of
   TLS payload and llm.call records per second for each stage mix.
2. ``--calls`` (default): calls of realistic size (scripts/bench_calls.py: 100 KB-1 MB prompts,
   1,000-10,000 SSE deltas one TLS read each, tool calls, a gzip'd non-streamed answer) through
   the same chain with redaction and prices on: CPU per call, its ratio to the bare ``json.loads``
   of the same JSON (measured in the same run, interleaved, best of ``--repeat``), µs per SSE
   event and MB/s; how cost grows with the deltas; 100,000 events in one stream; a 50 MB prompt
   over the 32 MiB cap.
3. ``--pipeline N``: the ``record`` pipeline (every actor: http, sse, llm, sessions, mcp,
   redact, a sqlite sink) as real processes under ``agentsight run``, fed N Claude-Code-sized
   calls by a replay source: CPU seconds of every actor per call (a run with no calls subtracted).

    .venv/bin/python scripts/bench_analyzers.py [--calls] [--fixtures] [--pipeline 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from agentsight.analysis.httpstream import HttpStreams
from agentsight.analysis.llm import LlmCalls
from agentsight.analysis.sse import SseMerge
from agentsight.event import Event

ROOT = Path(__file__).resolve().parent.parent
FX = ROOT / "tests" / "fixtures" / "llm"
sys.path.insert(0, str(ROOT / "scripts"))

from bench_calls import (  # noqa: E402  (a sibling script)
    Call,
    anthropic_call,
    chat_call,
    floor_seconds,
    gemini_gzip_call,
    responses_call,
)


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


def inputs(call: Call) -> list[Event]:
    """The call's TLS records as the ssl source delivers them: one ``ssl.data`` event each."""
    return [Event("ssl.data", 1_000_000 + i, "ssl", 1, 1, "bench", {"conn": "1:1", "dir": d, "bytes": b, "len": len(b)})
            for i, (d, b) in enumerate(call.records)]


def chain(call: Call | list[Event], *, live: bool = True, max_body: int = 32 * 1024 * 1024,
          keep: bool = True) -> list[Event]:
    """One call through HttpStreams -> SseMerge -> LlmCalls (redaction, prices); every event out
    (``keep`` off: only the llm.call records, as a stage that sends its events on keeps none)."""
    http, sse, llm = HttpStreams(max_body=max_body), SseMerge(live=live), LlmCalls()
    out: list[Event] = []
    for ev in inputs(call) if isinstance(call, Call) else call:
        for h in http.feed(ev):
            for s in sse.feed(h):
                if keep:
                    out.append(s)
                out += llm.feed(s)
    return out


def timed_chain(call: Call, live: bool = True) -> tuple[float, list[Event]]:
    """One run of the chain: (CPU s, the llm.call records). Its input events are made before the
    clock starts (a stage is handed them), and what it derives is passed on, not kept, as in an
    actor."""
    events = inputs(call)
    t = time.process_time()
    out = chain(events, live=live, keep=False)
    return time.process_time() - t, out


def measure(call: Call, repeat: int, live: bool = True) -> tuple[float, float]:
    """(chain CPU s, floor CPU s): best of ``repeat``, interleaved so both see the same machine."""
    best_chain = best_floor = float("inf")
    for _ in range(repeat):
        best_floor = min(best_floor, floor_seconds(call, time.process_time))
        took, out = timed_chain(call, live)
        best_chain = min(best_chain, took)
        assert len(out) == 1 and out[0].topic == "llm.call", f"{call.name}: {len(out)} llm.call records"
    return best_chain, best_floor


def calls_report(repeat: int) -> None:
    print("Realistic calls through http -> sse -> llm (redaction and prices on; live sse.event on / off)")
    print(f"{'call':52} {'chain ms':>9} {'floor ms':>9} {'ratio':>6} {'no-live':>8} {'µs/event':>9} {'MB/s':>6}")
    cases = [anthropic_call(243_000, 1000), anthropic_call(243_000, 4000), anthropic_call(1_000_000, 10_000, True),
             anthropic_call(100_000, 1000, True), chat_call(243_000, 1000), responses_call(243_000, 1000),
             gemini_gzip_call(243_000, 3000)]
    for call in cases:
        t_chain, t_floor = measure(call, repeat)
        t_quiet, t_floor2 = measure(call, repeat, live=False)
        t_floor = min(t_floor, t_floor2)
        per_event = f"{(t_chain - chain_cost_without_stream(call, repeat)) / call.events * 1e6:9.1f}" \
            if call.events else f"{'':>9}"
        print(f"{call.name:52} {t_chain * 1e3:9.1f} {t_floor * 1e3:9.1f} {t_chain / t_floor:6.1f} "
              f"{t_quiet / t_floor:8.1f} {per_event} {call.wire_bytes / t_chain / 1e6:6.1f}")
    one, four = growth(cases[0], cases[1], repeat)
    print(f"4x the deltas (1,000 -> 4,000, same prompt): {four / one:.2f}x the time "
          f"(the two calls measured in turn, best of {repeat} each)")
    big = anthropic_call(2_000, 100_000, seed=9)
    took, out = timed_chain(big)
    (rec,) = [e.data for e in out]
    print(f"100,000 events in one stream: {took:.2f} s ({took / big.events * 1e6:.1f} µs per event), "
          f"{rec['stream_events']} events read, {len(rec['output_text']):,} characters of answer")
    over_cap()


def growth(small: Call, large: Call, repeat: int) -> tuple[float, float]:
    """Chain CPU of two calls measured in turn (a burst of load on the machine hits both alike)."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, call in enumerate((small, large)):
            best[i] = min(best[i], timed_chain(call)[0])
    return best[0], best[1]


def chain_cost_without_stream(call: Call, repeat: int) -> float:
    """The same call with its answer cut to its first and last events: what the stream itself does not cost."""
    reads = [r for r in call.records if r[0] == "read"]
    short = Call(call.name, [r for r in call.records if r[0] == "write"] + reads[:4] + reads[-4:], [], 0)
    return min(timed_chain(short)[0] for _ in range(repeat))


def over_cap() -> None:
    """A 50 MB prompt: cut at the 32 MiB cap, the call is still read, and the body travels downstream once."""
    call = anthropic_call(50_000_000, 200, seed=5)
    t = time.process_time()
    out = chain(call, live=False)
    took = time.process_time() - t
    (rec,) = [e.data for e in out if e.topic == "llm.call"]
    sizes: dict[str, int] = {}
    for e in out:
        sizes[e.topic] = sizes.get(e.topic, 0) + len(msgpack.packb(e.data, use_bin_type=True))
    print(f"50 MB prompt over the 32 MiB cap: {took:.2f} s; the call has model {rec['model']!r}, "
          f"{rec['usage']['output_tokens']} output tokens, {len(rec['output_text']):,} characters of answer, "
          f"{len(rec['messages'])} of the prompt's messages; notes: {rec['notes']}")
    print("  bytes downstream per topic: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sorted(sizes.items())))


# --------------------------------------------------------------------------- the record pipeline, real processes


def _toml(doc: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(type(v))

    lines: list[str] = []
    for key in ("name",):
        if key in doc:
            lines.append(f"{key} = {value(doc[key])}")
    for section in ("bus", "supervisor"):
        if section in doc:
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in doc[section].items()]
    for kind in ("sources", "analyzers", "sinks"):
        for name, opts in doc.get(kind, {}).items():
            lines.append(f"[{kind}.{name}]")
            lines += [f"{k} = {value(v)}" for k, v in opts.items() if not isinstance(v, dict)]
            for k, v in opts.items():
                if isinstance(v, dict):
                    lines.append(f"[{kind}.{name}.{k}]")
                    lines += [f"{kk} = {value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def record_pipeline(capture: Path, db: Path) -> dict[str, Any]:
    """What ``agentsight record`` runs (capture.py builds it), the ssl source replaced by a replay."""
    from agentsight.pipeline.presets import Capture

    doc = Capture(name="bench", ssl=True, process=True, http=True, llm=True, sessions=True, mcp=True,
                  console=False, db=str(db), bus=False).pipeline()
    doc["sources"] = {"ssl": {"type": "replay", "path": str(capture), "publish": False}}
    doc["analyzers"]["http"]["inputs"] = ["ssl"]
    for stage in doc["analyzers"].values():
        stage["inputs"] = [i for i in stage["inputs"] if i != "process"]
    return doc


def write_capture(path: Path, calls: list[Call]) -> int:
    from agentsight.jsonform import event_to_json

    ts = 1_764_435_000_000_000_000
    lines = []
    for n, call in enumerate(calls):
        pid = 5000 + n
        for d, b in call.records:
            ts += 100_000
            lines.append(event_to_json(Event("ssl.data", ts, "ssl", pid, pid, "claude",
                                             {"conn": f"{pid}:7f00", "dir": d, "bytes": b, "len": len(b)})))
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def run_pipeline(doc: dict[str, Any], workdir: Path) -> tuple[float, dict[str, float]]:
    """Run a pipeline to its end; (CPU seconds of the processes reaped up to this one, CPU per
    process as sampled every 50 ms). The first misses actors whose parent did not wait for them
    (the zygote forks them): the report adds up the samples."""
    import psutil

    cfg = workdir / "bench.toml"
    cfg.write_text(_toml(doc))
    before = os.times()
    proc = subprocess.Popen([sys.executable, "-m", "agentsight", "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    by_pid: dict[int, tuple[str, float]] = {}  # pid -> (its longest title seen, its CPU so far)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    try:
                        title = " ".join(child.cmdline())
                        title = title.split("agentsight: ", 1)[-1].split()[0] if "agentsight: " in title else "supervisor"
                        t = child.cpu_times()
                        name, _ = by_pid.get(child.pid, ("", 0.0))
                        by_pid[child.pid] = (max(name, title, key=len), t.user + t.system)
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate(timeout=900)
    stop.set()
    sampler.join()
    after = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"the pipeline failed ({proc.returncode}): {err[-2000:]}")
    total = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    per_actor: dict[str, float] = {}
    for name, cpu in by_pid.values():
        per_actor[name] = per_actor.get(name, 0.0) + cpu
    return total, per_actor


def pipeline_report(n: int) -> None:
    print(f"The record pipeline as real processes (agentsight run: replay -> http -> sse -> llm -> sessions -> mcp "
          f"-> redact -> sqlite), {n} calls of 243 KB prompt and 1,000 deltas")
    calls = [anthropic_call(243_000, 1000, seed=10 + i) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = []
        for label, batch in (("no calls", []), (f"{n} calls", calls)):
            cap = work / f"cap{len(batch)}.jsonl"
            write_capture(cap, batch or [Call("empty", [("write", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")])])
            db = work / f"rec{len(batch)}.db"
            _, per_actor = run_pipeline(record_pipeline(cap, db), work)
            total = sum(per_actor.values())
            results.append((total, per_actor))
            print(f"  {label}: {total:.2f} CPU s in every process of the run")
        (t0, a0), (t1, a1) = results
        print(f"  per call: {(t1 - t0) / n * 1e3:.0f} ms of CPU, all processes together")
        for name in sorted(a1, key=lambda k: -(a1[k] - a0.get(k, 0.0))):
            extra = (a1[name] - a0.get(name, 0.0)) / n * 1e3
            if extra >= 0.5:
                print(f"    {name:40} {extra:7.1f} ms per call")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", action="store_true", help="the fixture rows (MB/s per stage mix)")
    ap.add_argument("--calls", action="store_true", help="realistic calls (the default when nothing is chosen)")
    ap.add_argument("--pipeline", type=int, default=0, metavar="N", help="N calls through the record pipeline")
    ap.add_argument("--repeat", type=int, default=9, help="runs per call (best kept)")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per fixture row")
    ap.add_argument("--record-size", type=int, nargs="*", default=[16384, 512, 64])
    args = ap.parse_args()
    if not (args.fixtures or args.calls or args.pipeline):
        args.calls = True
    if args.calls:
        calls_report(args.repeat)
    if args.fixtures:
        fixtures_report(args)
    if args.pipeline:
        pipeline_report(args.pipeline)


def fixtures_report(args: argparse.Namespace) -> None:
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
