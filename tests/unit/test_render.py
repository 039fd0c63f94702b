"""One readable line per event: the summaries people read in `debug` and `tap`."""

from __future__ import annotations

from agentsight.commands.render import pretty
from agentsight.event import Event

T = 1_764_435_000_000_000_000


def line(topic: str, data: dict, comm: str = "node", pid: int = 7) -> str:
    return pretty(Event(topic, T, "t", pid, pid, comm, data))


def test_llm_call_line_has_model_tokens_cost_and_tool_calls():
    text = line("llm.call", {"provider": "anthropic", "model": "claude-x", "status_code": 200,
                             "usage": {"input_tokens": 1200, "output_tokens": 33}, "cost": {"total": 0.0123},
                             "ttft_ms": 412.3, "tool_calls": [{"name": "Bash", "arguments": '{"command":"ls"}'}],
                             "output_text": ""})
    assert "node[7] anthropic claude-x 200 in=1,200 out=33 cost=$0.012300 ttft=412ms" in text
    assert 'tools: Bash({"command":"ls"})' in text


def test_unknown_counts_and_odd_shapes_still_print():
    assert "in=? out=?" in line("llm.call", {"usage": None, "cost": None})
    odd = line("process.exit", {"duration_ms": "soon", "exit_code": 1})  # falls back to the fields
    assert "duration_ms=soon" in odd


def test_common_topics():
    assert line("process.exit", {"exit_code": None, "signal": 9, "signal_name": "SIGKILL",
                                 "duration_ms": 12.0}).endswith("signal SIGKILL after 12ms")
    assert line("net.connect", {"family": "ipv4", "address": "1.2.3.4", "port": 443}).endswith("ipv4 1.2.3.4:443")
    assert line("ssl.data", {"dir": "write", "len": 5, "bytes": b"GET /\r\n"}).endswith("write 5B GET /\\r\\n")
    assert line("http.exchange", {"host": "api.x", "duration_ns": 5_000_000, "request": {"method": "POST",
                "target": "/v1/m"}, "response": {"status_code": 200, "content_type": "application/json",
                                                 "body_size": 10}}).endswith("POST api.x/v1/m -> 200 application/json 10B 5ms")
