"""Hot reload, taps on the bus, and a remote subscriber over TCP with CURVE."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import AGENTSIGHT, read_jsonl, wait_for
from tests.integration.test_pipeline import chain, check_order


def test_live_option_change_applies_in_place_within_2s_and_loses_nothing(pipeline, workdir):
    out = workdir / "out.jsonl"
    p = pipeline(chain(out, 0, rate=4_000, workers=1)).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 50_000, 20, what="events flowing")
    pid_before = p.instance("analyzers/tag")["pid"]
    p.config.write_text(p.config.read_text().replace('stage = "one"', 'stage = "two"'))
    edited = time.monotonic()

    def last_stage() -> str:
        rows = read_jsonl(out)
        return rows[-1]["data"]["stage"] if rows else ""

    wait_for(lambda: last_stage() == "two", 5, what="the new option in the output")
    assert time.monotonic() - edited < 2.0
    assert p.instance("analyzers/tag")["pid"] == pid_before
    assert "config reloaded: reconfigured tag" in p.stderr()

    # An invalid edit is rejected with the reason; the pipeline keeps running.
    p.config.write_text(p.config.read_text().replace('type = "annotate"', 'type = "no-such-analyzer"'))
    wait_for(lambda: "config change rejected" in p.stderr(), 5, what="rejection message")
    assert "[analyzers.tag] unknown analyzer type 'no-such-analyzer'" in p.stderr()
    size = out.stat().st_size
    wait_for(lambda: out.stat().st_size > size, 5, what="events still flowing")
    assert p.instance("analyzers/tag")["pid"] == pid_before

    assert p.stop() == 0
    rows = read_jsonl(out)
    for ns in check_order(rows).values():
        assert ns == list(range(len(ns)))  # nothing lost across the change
    assert p.lost_reported() == 0


def test_adding_and_removing_a_component_while_running(pipeline, workdir):
    out, extra = workdir / "out.jsonl", workdir / "extra.jsonl"
    p = pipeline(chain(out, 0, rate=3_000, workers=1)).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 20_000, 20, what="events flowing")
    p.config.write_text(p.config.read_text() + f'\n[sinks.extra]\ntype = "jsonl"\ninputs = ["gen"]\npath = "{extra}"\n')
    wait_for(lambda: extra.exists() and extra.stat().st_size > 10_000, 10, what="the added sink writing")
    assert "started extra" in p.stderr()
    p.config.write_text(p.config.read_text().split("\n[sinks.extra]")[0])
    wait_for(lambda: "stopped extra" in p.stderr(), 15, what="the removed sink stopped")
    assert not any(r["id"] == "sinks/extra" for r in p.status()["instances"])
    assert p.stop() == 0
    assert p.lost_reported() == 0


def tap(run_dir: Path, *args: str, stdout: int | IO[str] = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen([*AGENTSIGHT, "tap", "--runtime-dir", str(run_dir), "--json", *args],
                            stdout=stdout, stderr=subprocess.PIPE, text=True)


def line_counter(path: Path) -> Callable[[], int]:
    """Lines in a growing file so far, reading only what was added since the last call."""
    seen = {"at": 0, "lines": 0}

    def count() -> int:
        with open(path, "rb") as f:
            f.seek(seen["at"])
            added = f.read()
        seen["at"] += len(added)
        seen["lines"] += added.count(b"\n")
        return seen["lines"]
    return count


def newest_i(path: Path) -> int:
    """The highest generator index among the last complete lines of a JSON-lines file."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        lines = f.read().split(b"\n")[1:-1]
    return max((json.loads(x)["data"]["i"] for x in lines if x.strip()), default=-1)


def test_two_taps_mid_run_and_a_stalled_tap_does_not_slow_the_pipeline(pipeline, workdir):
    out, stalled_out = workdir / "out.jsonl", workdir / "stalled.jsonl"
    p = pipeline(chain(out, 0, rate=20_000)).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 50_000, 20, what="events flowing")
    t1, t2 = tap(p.run_dir, "gen.", "--count", "2000"), tap(p.run_dir, "--count", "2000")
    with open(stalled_out, "w") as f:
        stalled = tap(p.run_dir, "gen.", stdout=f)
    wait_for(lambda: stalled_out.stat().st_size > 0, 20, what="the third tap receiving")
    os.kill(stalled.pid, signal.SIGSTOP)
    for t in (t1, t2):
        lines = t.communicate(timeout=30)[0].splitlines()
        assert len(lines) == 2000
        assert all(json.loads(x)["topic"] == "gen.event" for x in lines)
    # The pipeline keeps its pace while one subscriber reads nothing: 45,000 more events at 20,000/s.
    written = line_counter(out)
    before, t0 = written(), time.monotonic()
    wait_for(lambda: written() >= before + 45_000, 30, what="45,000 more events")
    rate = 45_000 / (time.monotonic() - t0)
    assert rate > 15_000, rate
    newest = newest_i(out)
    os.kill(stalled.pid, signal.SIGCONT)
    # It reads its backlog first, then reaches the events sent after the bus dropped some for it.
    wait_for(lambda: newest_i(stalled_out) > newest, 30, what="the stalled tap past the drop")
    stalled.send_signal(signal.SIGINT)
    err = stalled.communicate(timeout=20)[1]
    lost = int(err.rsplit(" lost", 1)[0].rsplit(",", 1)[1])
    assert lost > 0, err  # the stalled tap's gaps are reported, not hidden
    assert "events lost on the bus" in err
    assert p.stop() == 0
    assert p.lost_reported() == 0  # the data path lost nothing


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2")


@needs_root
def test_remote_subscriber_in_another_network_namespace_needs_the_right_curve_key(pipeline, workdir):
    keys = workdir / "keys"
    subprocess.run([*AGENTSIGHT, "keys", "--dir", str(keys), "--client", "laptop"], check=True, capture_output=True)
    rogue = workdir / "rogue"
    subprocess.run([*AGENTSIGHT, "keys", "--dir", str(rogue), "--client", "rogue"], check=True, capture_output=True)
    assert oct(os.stat(keys / "server.key_secret").st_mode & 0o777) == "0o600"
    ns = f"as{uuid.uuid4().hex[:8]}"
    host_if, ns_if = f"{ns}h", f"{ns}n"
    sh = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns)
        sh("ip", "addr", "add", "10.231.7.1/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", "10.231.7.2/24", "dev", ns_if)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        out = workdir / "out.jsonl"
        p = pipeline(chain(out, 0, rate=2_000, workers=1) + f"""
[bus]
listen = "tcp://10.231.7.1:7396"
secret_key = "{keys}/server.key_secret"
authorized_keys = "{keys}/authorized"
""").start()
        remote = ["ip", "netns", "exec", ns, *AGENTSIGHT, "tap", "--connect", "tcp://10.231.7.1:7396",
                  "--server-key", str(keys / "server.key"), "--json"]
        good = subprocess.run([*remote, "--client-key", str(keys / "laptop.key_secret"), "--count", "50",
                               "--duration", "20"], capture_output=True, text=True, timeout=60)
        assert len(good.stdout.splitlines()) == 50, good.stderr
        bad = subprocess.run([*remote, "--client-key", str(rogue / "rogue.key_secret"), "--duration", "3"],
                             capture_output=True, text=True, timeout=60)
        assert bad.stdout == ""
        assert "0 events" in bad.stderr

        # A pipeline "on the other machine" takes the remote bus as its source and runs its own sink.
        remote_out = workdir / "remote.jsonl"
        remote_cfg = workdir / "remote.toml"
        remote_cfg.write_text(f"""
name = "remote"
[sources.upstream]
type = "bus"
connect = "tcp://10.231.7.1:7396"
topics = ["gen."]
server_key = "{keys}/server.key"
client_key = "{keys}/laptop.key_secret"
[sinks.copy]
type = "jsonl"
inputs = ["upstream"]
path = "{remote_out}"
[bus]
enabled = false
[supervisor]
runtime_dir = "{workdir}/rrun"
""")
        rp = subprocess.Popen(["ip", "netns", "exec", ns, *AGENTSIGHT, "run", "--config", str(remote_cfg)],
                              stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: remote_out.exists() and len(remote_out.read_text().splitlines()) >= 100, 30,
                     what="events in the remote pipeline's sink")
        finally:
            rp.send_signal(signal.SIGTERM)
            rp.communicate(timeout=30)
        assert all(r["topic"] == "gen.event" for r in read_jsonl(remote_out))
        assert p.stop() == 0
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_status_without_a_running_pipeline_is_one_clear_line(workdir):
    r = subprocess.run([*AGENTSIGHT, "status", "--runtime-dir", str(workdir / "none")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("agentsight: no running pipeline")
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_reload_that_restarts_a_component_under_load_loses_nothing_and_barely_stalls(pipeline, workdir):
    out = workdir / "out.jsonl"
    p = pipeline(chain(out, 0, rate=15_000, workers=2)).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 300_000, 20, what="events flowing")
    old = {r["id"]: r["pid"] for r in p.status()["instances"] if r["id"].startswith("analyzers/tag")}
    p.config.write_text(p.config.read_text().replace("workers = 2", "workers = 3"))
    try:  # (on two busy cores, the three new workers can take more than a few seconds)
        new = wait_for(lambda: (ids := {r["id"]: r for r in p.status()["instances"]
                                        if r["id"].startswith("analyzers/tag") and r["state"] == "running"})
                       and len(ids) == 3 and all(ids[i]["pid"] != old.get(i) for i in ids) and ids, 30,
                       what="three new tag workers")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {p.status()['instances']}; the pipeline said:\n{p.stderr()}") from None
    assert sorted(new) == ["analyzers/tag#0", "analyzers/tag#1", "analyzers/tag#2"]
    size = out.stat().st_size
    wait_for(lambda: out.stat().st_size > size + 300_000, 20, what="events flowing through the new workers")
    t0 = time.monotonic()
    assert p.stop() == 0, p.stderr()
    assert time.monotonic() - t0 < 5, p.stderr()
    assert "killing" not in p.stderr()
    rows = read_jsonl(out)
    for ns in check_order(rows).values():
        assert ns == list(range(len(ns))), p.stderr()  # per key: every event, in order, none twice
    gen_sent = next(int(line.split()[4]) for line in p.stderr().splitlines() if line.startswith("sources/gen"))
    assert gen_sent == len(rows)
    assert p.lost_reported() == 0
    # The source never waited long on the restart: its events' timestamps have no gap near a second.
    stamps = sorted(r["ts_ns"] for r in rows)
    stall = max(b - a for a, b in zip(stamps, stamps[1:], strict=False)) / 1e9
    took = p.stderr().split("restarted tag (workers 2 -> 3) in ", 1)[1].split("s")[0]
    print(f"\nreload restarting tag (workers 2 -> 3) under 15k events/s: {len(rows)} events, 0 lost, "
          f"restart done in {took}s, longest source stall {stall:.3f}s")
    assert stall < 1.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_tap_refused_by_curve_says_why(pipeline, workdir):
    keys, rogue = workdir / "keys", workdir / "rogue"
    for d, name in ((keys, "laptop"), (rogue, "rogue")):
        subprocess.run([*AGENTSIGHT, "keys", "--dir", str(d), "--client", name], check=True, capture_output=True)
    port = free_port()
    out = workdir / "out.jsonl"
    p = pipeline(chain(out, 0, rate=500, workers=1) + f"""
[bus]
listen = "tcp://127.0.0.1:{port}"
secret_key = "{keys}/server.key_secret"
authorized_keys = "{keys}/authorized"
""").start()
    remote = [*AGENTSIGHT, "tap", "--connect", f"tcp://127.0.0.1:{port}", "--json"]
    good = subprocess.run([*remote, "--server-key", str(keys / "server.key"),
                           "--client-key", str(keys / "laptop.key_secret"), "--count", "20", "--duration", "20"],
                          capture_output=True, text=True, timeout=60)
    assert len(good.stdout.splitlines()) == 20 and "refused" not in good.stderr, good.stderr
    bad = subprocess.run([*remote, "--server-key", str(keys / "server.key"),
                          "--client-key", str(rogue / "rogue.key_secret"), "--duration", "3"],
                         capture_output=True, text=True, timeout=60)
    assert bad.stdout == ""
    assert "0 events" in bad.stderr and "refused this client's key" in bad.stderr, bad.stderr
    wrong_server = subprocess.run([*remote, "--server-key", str(rogue / "server.key"),
                                   "--client-key", str(keys / "laptop.key_secret"), "--duration", "3"],
                                  capture_output=True, text=True, timeout=60)
    assert "0 events" in wrong_server.stderr and "refused" in wrong_server.stderr, wrong_server.stderr
    assert p.stop() == 0


def test_a_stalled_tap_counts_what_it_lost_to_the_last_event_not_only_between_frames(pipeline, workdir):
    """Stalled until the source is done, a tap sees the head of the stream and nothing after: the
    publisher's sync frames tell it how many it lost at the tail, so seen + lost is every event."""
    out = workdir / "out.jsonl"
    total = 60_000
    p = pipeline(f"""
[sources.gen]
type = "generator"
count = {total}
rate = 20000

[sinks.out]
type = "jsonl"
inputs = ["gen"]
path = "{out}"

[supervisor]
exit_when_sources_done = false
runtime_dir = "{workdir / "run"}"
""").start()
    seen_path, err_path = workdir / "tap.out", workdir / "tap.err"
    with open(seen_path, "w") as so, open(err_path, "w") as se:
        t = subprocess.Popen([*AGENTSIGHT, "tap", "--runtime-dir", str(p.run_dir), "--json", "gen."],
                             stdout=so, stderr=se, text=True)
    first = wait_for(lambda: read_jsonl(seen_path)[:1], 20, what="the tap's first event")[0]
    os.kill(t.pid, signal.SIGSTOP)
    wait_for(lambda: p.instance("sources/gen")["state"] == "finished", 30, what="the source to finish")
    os.kill(t.pid, signal.SIGCONT)
    expected = total - first["data"]["i"]  # everything published from its first event on

    def accounted() -> int:
        lost = sum(int(line.split(": ")[1].split()[0]) for line in err_path.read_text().splitlines()
                   if "events lost on the bus" in line)
        return len(read_jsonl(seen_path)) + lost

    # It reads its backlog, then a sync frame says where the stream ended.
    try:
        wait_for(lambda: accounted() == expected, 15, what=f"seen + lost to reach {expected}")
    except AssertionError:
        raise AssertionError(f"{accounted()} of {expected}: {err_path.read_text()[-2000:]}") from None
    t.send_signal(signal.SIGINT)
    t.wait(30)
    summary = err_path.read_text().strip().splitlines()[-1]
    events = int(summary.split("tap: ")[1].split()[0])
    lost = int(summary.split(" lost")[0].rsplit(", ", 1)[1])
    assert events == len(read_jsonl(seen_path)) and events + lost == expected, summary
    assert lost > 0
    assert p.stop() == 0


def test_a_sink_restarted_onto_another_file_leaves_that_file_whole(pipeline, workdir):
    """A reload that points a jsonl sink at an existing file restarts it there: what the file held stays."""
    out, other = workdir / "out.jsonl", workdir / "other.jsonl"
    kept = "".join(f'{{"keep": {i}}}\n' for i in range(20_000))  # bigger than what `out` gets first
    other.write_text(kept)
    p = pipeline(chain(out, 0, rate=3_000, workers=1)).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 30_000, 20, what="events flowing")
    p.config.write_text(p.config.read_text().replace(f'path = "{out}"', f'path = "{other}"'))
    wait_for(lambda: other.stat().st_size > len(kept) + 30_000, 20, what="events in the other file")
    assert p.stop() == 0, p.stderr()
    assert other.read_text().startswith(kept)
    rows = read_jsonl(out) + [r for r in read_jsonl(other) if "keep" not in r]
    for ns in check_order(rows).values():
        assert ns == list(range(len(ns)))
    assert p.lost_reported() == 0
