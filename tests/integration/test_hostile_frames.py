"""Frames nobody should send: the status and data sockets refuse them, count them, and keep going."""

from __future__ import annotations

import msgpack
import zmq

from agentsight import wire
from tests.conftest import read_jsonl, wait_for
from tests.integration.test_pipeline import chain


def test_multipart_status_requests_forged_sequences_and_forged_events_change_nothing(pipeline, workdir):
    out = workdir / "out.jsonl"
    p = pipeline(chain(out, 0, rate=2_000, workers=1)).start()
    wait_for(lambda: out.exists() and out.stat().st_size > 10_000, 20, what="events flowing")
    ctx = zmq.Context()
    try:
        # A status request in two parts: answered, and the pipeline goes on.
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(f"ipc://{p.run_dir}/status")
        req.send_multipart([b"status", b"extra"])
        assert req.poll(5000), "no answer to a two-part status request"
        assert b"instances" in req.recv()
        req.close()

        # Frames straight into the sink's input: sequence numbers no sender reaches, and an
        # event whose fields have the wrong types.
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(f"ipc://{p.run_dir}/in/out.0")
        body = msgpack.packb([["gen.event", 1, "gen", 1, 1, "x", {"forged": True}]], use_bin_type=True)
        for seq in (2 ** 63 - 1, 2 ** 62, 2 ** 40, 2 ** 63 - 2, 2 ** 50, 2 ** 45, 2 ** 60):
            push.send_multipart([wire.encode_header(wire.DATA, "forger", seq, 1), body])
        wrong = msgpack.packb([["gen.event", 1, "gen", "pid", 1, 7, {"forged": True}]], use_bin_type=True)
        push.send_multipart([wire.encode_header(wire.DATA, "forger", 0, 1), wrong])
        push.close()
    finally:
        ctx.destroy(linger=2000)
    sink = wait_for(lambda: (r := p.instance("sinks/out"))["errors"] >= 8 and r, 10, what="forged frames counted")
    assert sink["state"] == "running" and sink["restarts"] == 0
    assert sink["stats"].get("impossible_sequence") == 7
    assert p.stop() == 0
    assert p.lost_reported() == 1  # the forged batch that did not decode, refused and counted; no 1e20
    assert not any(r["data"].get("forged") for r in read_jsonl(out))
