"""Gemini Code Assist: Gemini CLI logged in with Google (``POST .../v1internal:generateContent`` and
``:streamGenerateContent`` on ``cloudcode-pa.googleapis.com``).

The same Gemini payloads in an envelope: the request is ``{model, project, user_prompt_id,
request}``, each answer (or stream chunk) ``{response, traceId}``; the trace id is what Gemini CLI
keeps as the response id. Errors (HTTP or in-stream) come unwrapped, as Google RPC errors.
"""

from __future__ import annotations

import re
from typing import Any

from agentsight.analysis.dialects.common import Call, Dialect, StreamEvent, as_dict, as_str, parse_json
from agentsight.analysis.dialects.gemini import read_chunk, read_gemini_request
from agentsight.analysis.dialects.gemini import read_response as read_gemini_response

__all__ = ["DIALECT"]

PATH = re.compile(r"/v1internal:(generateContent|streamGenerateContent)$")


def read_request(body: dict[str, Any], call: Call, path: str) -> None:
    call.model_requested = as_str(body.get("model"))
    call.stream = path.endswith(":streamGenerateContent")
    read_gemini_request(as_dict(body.get("request")), call)


def _unwrap(chunk: Any) -> Any:
    c = as_dict(chunk)
    inner = c.get("response")
    if not isinstance(inner, dict):
        return chunk
    if not inner.get("responseId") and isinstance(c.get("traceId"), str):
        inner = {**inner, "responseId": c["traceId"]}
    return inner


def read_response(body: Any, call: Call, ts: int | None) -> None:
    read_gemini_response([_unwrap(c) for c in body] if isinstance(body, list) else _unwrap(body), call, ts)


def read_stream(events: list[StreamEvent], call: Call) -> None:
    for ev in events:
        chunk = as_dict(_unwrap(parse_json(ev["data"])))
        if chunk:
            read_chunk(chunk, call, ev.get("ts_ns"))


DIALECT = Dialect(
    api="gemini.code_assist",
    provider="google",
    detects=lambda path: PATH.search(path) is not None,
    request=read_request,
    response=read_response,
    stream=read_stream,
)
