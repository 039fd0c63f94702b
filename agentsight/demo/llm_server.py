"""A local fake LLM service: OpenAI (Chat Completions, Responses), Anthropic Messages, Gemini over HTTPS.

Binds 127.0.0.1 only (``--port 0`` picks a free port, announced on stdout and in
``--ready-file``), HTTP/1.1 keep-alive, a certificate for 127.0.0.1/localhost from its
own throwaway CA (``--ca-out`` writes the CA for clients: ``SSL_CERT_FILE``, ``curl
--cacert``, ``NODE_EXTRA_CA_CERTS``). The wire formats are the providers' own, streamed
(SSE) and not, so the official SDKs and the agent CLIs (:mod:`agentsight.demo.clis`) parse
them. Each API's side (its request read, its answer written) is one module of
:mod:`agentsight.demo.apis`, the split :mod:`agentsight.analysis.dialects` has for the observer's side.
The endpoints, by the ``api`` name the log gives them:

- ``openai.chat`` ``POST /v1/chat/completions``; ``openai.responses`` ``POST /v1/responses``,
  and over WebSocket (``GET /v1/responses`` upgraded, Codex's default: one ``response.create``
  text message per exchange, the events back as text messages; a request may name
  ``previous_response_id`` and send only its new items; ``"generate": false`` is a warm-up
  answered with no output); free-form (``custom``) tools and tools sent as an
  ``additional_tools`` input item (Codex's code mode) included;
- ``anthropic.messages`` ``POST /v1/messages`` (``system`` messages after the first one join the
  system prompt, as Claude Code sends them); ``anthropic.count_tokens``
  ``POST /v1/messages/count_tokens``;
- ``gemini.generate`` ``POST /v1beta/models/{model}:generateContent`` and
  ``:streamGenerateContent?alt=sse`` (functionCall / functionResponse parts, ``usageMetadata``;
  JSON output when ``responseMimeType`` is ``application/json``); ``gemini.count_tokens``
  ``:countTokens``;
- ``gemini.code_assist`` ``POST /v1internal:generateContent`` and ``:streamGenerateContent``
  (the request wraps a Gemini request: ``{"model", "project", "request"}``; each answer, and
  each SSE chunk, is ``{"response": ..., "traceId"}``), ``:countTokens``, and the service calls
  Gemini CLI makes around them (``loadCodeAssist``, ``listExperiments``, ``retrieveUserQuota``...:
  ``gemini.code_assist.<method>``), answered as for a set-up standard-tier user;
- model lists: ``GET /v1/models`` (``openai.models``, or ``anthropic.models`` with an
  ``anthropic-version`` header), ``GET /v1beta/models`` (``gemini.models``).

Credentials are checked for presence only: a bearer token (OpenAI, Code Assist),
``x-api-key`` (Anthropic), ``x-goog-api-key`` or ``?key=`` (Gemini). Errors come in the
provider's format (Google's ``{"error": {"code", "message", "status"}}`` for Gemini).

The "model" is a script, deterministic from the request:

- it offers tools and the last message is not a tool result -> one call of the first
  tool named like a shell (``run_command``, ``bash``, ``exec_command``,
  ``run_shell_command``..., any case), else the first tool; a string argument gets the
  text between the last pair of backticks in the last user message (``ls`` if none); a
  free-form tool gets that command as its input, or, for Codex's code-mode ``exec``, a line
  of JavaScript that runs it with ``tools.exec_command``;
- a request for JSON output with a schema -> a JSON value of that schema (first enum value,
  1 for numbers, a quote of the last user message for strings);
- otherwise a text answer that quotes the last user message (or summarises the tool
  result), padded to ``--reply-words`` words.

Token counts are exact and deterministic: a token is a word or a punctuation character
(:func:`count_tokens`). Input = every text of the prompt + the tools' JSON + 3 per message
+ 3 (:func:`input_tokens`). The "prompt cache" covers the system prompt and the tools:
OpenAI reports it as ``cached_tokens`` and Gemini as ``cachedContentTokenCount`` once the
prompt holds an earlier assistant turn; Anthropic, when the request has a ``cache_control``
marker, as ``cache_creation_input_tokens`` on the first turn and ``cache_read_input_tokens``
after.

Every exchange is appended to ``--log`` as one JSON line (before its answer is sent):
``seq, api, endpoint, transport`` (``http`` or ``websocket``), ``stream, include_usage,
status, model_requested, model, response_id, request`` (the body as parsed, or
``request_text`` when it was not JSON), ``answer_text, tool_calls`` ([{id, name, arguments,
input}]), ``stop_reason, usage`` (the provider usage object with the final numbers; ``None``
when none was sent), ``error`` (the error body), ``user_agent``. Token counts and model
lists are logged too (``answer_text`` None; a count's ``usage`` is the count it answered).

Latency: ``--ttft-ms`` before the first content delta, ``--chunk-ms`` between content
deltas (a non-streamed answer waits for both as if it had been generated).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from aiohttp import WSMsgType, web

from agentsight.demo.apis import BY_API, anthropic_messages, gemini, openai_chat, openai_responses
from agentsight.demo.apis.common import BadRequest, Conversation, Frame, model_of, obj, pieces

__all__ = ["Settings", "BadRequest", "Conversation", "Answer", "GENERATE_APIS", "Running", "count_tokens",
           "input_tokens", "make_app", "make_tls", "read_log", "running", "main"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_BACKTICKS = re.compile(r"`([^`]+)`")
# Tools the scripted model prefers (case-insensitive): the demo agent's, Claude Code's, Codex's, Gemini CLI's.
_SHELL_TOOLS = ("run_command", "bash", "shell", "exec", "run", "exec_command", "run_shell_command")
# Requested model -> the dated snapshot the response names, as the real APIs answer.
MODEL_SNAPSHOTS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}
_VOCABULARY = (
    "the agent reads files runs commands and writes code while the observer records every call "
    "process token latency stream socket kernel probe buffer request response answer prompt cache "
    "model tool result output input context window budget careful small change test passes build "
    "module function module review patch diff line error retry timeout"
).split()


def count_tokens(text: str) -> int:
    """The fake tokenizer: one token per word and per punctuation character."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class Settings:
    """How the scripted model answers."""

    ttft_ms: float = 0.0
    chunk_ms: float = 0.0
    reply_words: int = 30
    chunk_words: int = 3


# --------------------------------------------------------------------------- the answer, planned


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # compact JSON text; a custom (free-form) tool's raw input
    custom: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments,
                "input": self.arguments if self.custom else json.loads(self.arguments)}


@dataclass
class Answer:
    text: str
    tool_calls: list[ToolCall]
    input_tokens: int  # every input token, cached or not
    cached_tokens: int  # the system prompt + tools part
    output_tokens: int


def _filler(seed: str, words: int) -> str:
    out: list[str] = []
    digest = hashlib.sha256(seed.encode()).digest()
    for i in range(words):
        if i % 32 == 0 and i:
            digest = hashlib.sha256(digest).digest()
        word = _VOCABULARY[digest[i % 32] % len(_VOCABULARY)]
        out.append(word.capitalize() if i % 10 == 0 else word)
        if i % 10 == 9 or i == words - 1:
            out[-1] += "."
    return " ".join(out)


def _arguments(schema: dict[str, Any], last_text: str) -> dict[str, Any]:
    """Arguments for a tool, from its JSON schema: the (last) backticked command for the first string.

    The last, because CLIs put their own reminders (which quote commands too) before the user's prompt.
    """
    found = _BACKTICKS.findall(last_text)
    command = found[-1] if found else "ls"
    props = schema.get("properties") or {}
    required = schema.get("required") or list(props)
    args: dict[str, Any] = {}
    first_string = True
    for name in required:
        kind = str((props.get(name) or {}).get("type", "string")).lower()  # Gemini schemas say "STRING"
        if kind == "string":
            args[name] = command if first_string else last_text[:80]
            first_string = False
        else:
            args[name] = {"integer": 1, "number": 1, "boolean": False, "array": [], "object": {}}.get(kind)
    return args


def _custom_input(description: str, last_text: str) -> str:
    """A free-form tool's input: the backticked command, or, for Codex's code-mode ``exec`` (JavaScript that
    calls the other tools), a script that runs it with ``tools.exec_command``."""
    found = _BACKTICKS.findall(last_text)
    command = found[-1] if found else "ls"
    if "tools.exec_command" in description:
        return f"const r = await tools.exec_command({{cmd: {json.dumps(command)}}});\ntext(r.output);\n"
    return command


def json_instance(schema: dict[str, Any], text: str) -> Any:
    """The scripted model's structured answer: a value of ``schema`` (first enum value, 1, a quote of ``text``)."""
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):  # ["string", "null"]
        kind = next((k for k in kind if k != "null"), "string")
    kind = str(kind).lower()  # Gemini schemas say "OBJECT"
    if kind == "object":
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {n: json_instance(props.get(n) or {}, text) for n in names}
    if kind == "array":
        return [json_instance(schema.get("items") or {}, text)]
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum") or 1)
    if kind == "boolean":
        return False
    return " ".join(text.split())[:80]


def input_tokens(conv: Conversation) -> tuple[int, int]:
    """(every input token, the cacheable prefix: system prompt + tools) of a prompt."""
    prefix = count_tokens(conv.system) + count_tokens(conv.tools_json)
    return prefix + sum(count_tokens(t) for t in conv.texts) + 3 * conv.messages + 3, prefix


def plan(conv: Conversation, settings: Settings, seed: str, api: str) -> Answer:
    """What the scripted model answers to ``conv`` (``seed`` makes ids and filler vary)."""
    calls: list[ToolCall] = []
    if conv.tools and conv.tools_allowed and not conv.last_is_tool_result:
        name, schema = next((t for t in conv.tools if t[0].lower() in _SHELL_TOOLS), conv.tools[0])
        args = _arguments(schema, conv.last_text)
        digest = hashlib.sha256(f"call:{seed}".encode()).hexdigest()
        call_id = f"toolu_01{digest[:22]}" if api == "anthropic.messages" else f"call_{digest[:24]}"
        if name in conv.custom_tools:
            calls.append(ToolCall(call_id, name, _custom_input(conv.custom_tools[name], conv.last_text), custom=True))
        else:
            calls.append(ToolCall(call_id, name, json.dumps(args, separators=(",", ":"), ensure_ascii=False)))
        # Claude says what it is about to do; OpenAI models usually answer with the call alone.
        text = f"I will run `{args.get('command', name)}` with {name}." if api == "anthropic.messages" else ""
    elif conv.json_schema is not None:
        text = json.dumps(json_instance(conv.json_schema, conv.last_text), ensure_ascii=False)
    elif conv.last_is_tool_result:
        lines = conv.last_text.strip().splitlines()
        first = lines[0][:120] if lines else "(no output)"
        text = f"The tool printed {len(lines)} line(s); the first is: {first} " + _filler(seed, settings.reply_words)
    else:
        quoted = " ".join(conv.last_text.split())[:160]
        text = f"You said: {quoted} " + _filler(seed, settings.reply_words)
    total, prefix = input_tokens(conv)
    output_tokens = count_tokens(text) + sum(count_tokens(c.name) + count_tokens(c.arguments) for c in calls)
    return Answer(text, calls, total, prefix, output_tokens)


# --------------------------------------------------------------------------- the exchange

@dataclass
class Exchange:
    """One request being answered: what the renderers need, and the log record."""

    api: str
    body: dict[str, Any]
    answer: Answer
    model_requested: str
    model: str
    response_id: str
    created: int
    settings: Settings
    include_usage: bool = False
    history: bool = False  # the prompt holds an earlier assistant turn
    cache_marked: bool = False  # the request has a cache_control marker

    def stop_reason(self) -> str:
        return str(BY_API[self.api].stop_reason(self))

    def _openai_cached(self) -> int:
        return self.answer.cached_tokens if self.history else 0

    def responses_events(self) -> list[tuple[bool, dict[str, Any]]]:
        """The Responses events, (is_content, event): SSE frames over HTTP, text messages over WebSocket."""
        return list(openai_responses.events(self))

    def body_json(self) -> dict[str, Any]:
        return dict(BY_API[self.api].body(self))

    def frames(self) -> list[Frame]:
        return list(BY_API[self.api].frames(self))

    def usage(self) -> dict[str, Any] | None:
        """The usage the client is told (the final numbers), in the provider's shape."""
        if self.api == "openai.chat":
            stream = self.body.get("stream") is True
            return openai_chat.usage(self) if not stream or self.include_usage else None
        return dict(BY_API[self.api].usage(self))


# --------------------------------------------------------------------------- HTTP

# The log's api names: one per wire format. The generation APIs answer with the scripted model;
# the others (token counts, model lists) answer from the same request reading.
GENERATE_APIS = ("openai.chat", "openai.responses", "anthropic.messages", "gemini.generate", "gemini.code_assist")
_READERS: dict[str, Callable[[dict[str, Any]], Conversation]] = {
    "openai.chat": openai_chat.read,
    "openai.responses": openai_responses.read,
    "anthropic.messages": anthropic_messages.read,
    "anthropic.count_tokens": lambda body: anthropic_messages.read(body, counting=True),
    "gemini.generate": gemini.read,
    "gemini.count_tokens": lambda body: gemini.read(obj(body.get("generateContentRequest") or body, "the request")),
    "gemini.code_assist": gemini.read_code_assist,
    "gemini.code_assist.count_tokens": gemini.read_code_assist,
}
_ID_PREFIX = {"openai.chat": "chatcmpl-", "openai.responses": "resp_", "anthropic.messages": "msg_01",
              "gemini.generate": "", "gemini.code_assist": ""}
_GEMINI_PATH = re.compile(r"^/(?:v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$")
_CODE_ASSIST_PATH = re.compile(r"^/v1internal:(\w+)$")
# The rest of the Code Assist service Gemini CLI calls before and around generating (account tier and
# project, experiments, quota, admin settings, metrics), answered as for a set-up standard-tier user.
_CODE_ASSIST_SERVICE = ("loadCodeAssist", "onboardUser", "listExperiments", "retrieveUserQuota",
                        "fetchAdminControls", "getCodeAssistGlobalUserSetting", "setCodeAssistGlobalUserSetting",
                        "recordCodeAssistMetrics")
_GEMINI_MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite")


@dataclass(frozen=True)
class Route:
    """What a request is: the log's api, and for Gemini the model and streaming, which the URL carries."""

    api: str
    model: str | None = None  # from the path (Gemini API)
    stream: bool | None = None  # from the path (Gemini, Code Assist); else the body's "stream"
    websocket: bool = False  # Responses over WebSocket (Codex's default with OpenAI)


def route(method: str, path: str, headers: Any) -> Route | None:
    """The route of a request, or None (a 404)."""
    if method == "GET":
        if (m := _CODE_ASSIST_PATH.match(path)) and m.group(1) in _CODE_ASSIST_SERVICE:
            return Route("gemini.code_assist." + m.group(1))
        if path == "/v1/responses" and headers.get("Upgrade", "").lower() == "websocket":
            return Route("openai.responses", stream=True, websocket=True)
        if path == "/v1/models":
            return Route("anthropic.models" if "anthropic-version" in headers else "openai.models")
        if path == "/v1beta/models":
            return Route("gemini.models")
        return None
    if method != "POST":
        return None
    fixed = {"/v1/chat/completions": "openai.chat", "/v1/responses": "openai.responses",
             "/v1/messages": "anthropic.messages", "/v1/messages/count_tokens": "anthropic.count_tokens"}
    if path in fixed:
        return Route(fixed[path])
    if m := _GEMINI_PATH.match(path):
        if m.group(2) == "countTokens":
            return Route("gemini.count_tokens", model=m.group(1), stream=False)
        return Route("gemini.generate", model=m.group(1), stream=m.group(2) == "streamGenerateContent")
    if m := _CODE_ASSIST_PATH.match(path):
        if m.group(1) == "countTokens":
            return Route("gemini.code_assist.count_tokens", stream=False)
        if m.group(1) in _CODE_ASSIST_SERVICE:
            return Route("gemini.code_assist." + m.group(1))
        return Route("gemini.code_assist", stream=m.group(1) == "streamGenerateContent")
    return None


def _family(api: str | None, path: str) -> str:
    """Whose error format and headers: openai, anthropic or gemini (a 404 goes by its path)."""
    if api is None:
        return "gemini" if path.startswith(("/v1beta", "/v1internal")) else "openai"
    return api.split(".")[0]


class ExchangeLog:
    """The JSON-lines record of every exchange, flushed line by line."""

    def __init__(self, path: Path | None) -> None:
        self._file: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self.seq = 0

    def write(self, record: dict[str, Any]) -> None:
        record = {"seq": self.seq, "ts": time.time(), **record}
        self.seq += 1
        if self._file is not None:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}


def _error_body(family: str, status: int, message: str, request_id: str) -> dict[str, Any]:
    if family == "anthropic":
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}.get(
            status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    if family == "gemini":
        return {"error": {"code": status, "message": message, "status": _GOOGLE_STATUS.get(status, "INTERNAL")}}
    code = {401: "invalid_api_key", 404: "unknown_url"}.get(status)
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _headers(family: str, request_id: str) -> dict[str, str]:
    if family == "anthropic":
        return {"request-id": request_id, "anthropic-organization-id": "demo-org"}
    if family == "gemini":
        return {"x-goog-request-id": request_id, "server-timing": "gfet4t7; dur=1"}
    return {"x-request-id": request_id, "openai-organization": "demo-org", "openai-processing-ms": "1",
            "openai-version": "2020-10-01"}


def _unauthorised(api: str, request: web.Request) -> tuple[int, str] | None:
    """(status, message) when the request carries no credential the API takes, else None."""
    auth = request.headers.get("Authorization", "")
    bearer = auth.startswith("Bearer ") and len(auth) > 7
    if api.startswith("anthropic."):
        ok = bool(request.headers.get("x-api-key")) or bearer
        return None if ok else (401, "Missing API key: send it in the x-api-key (or Authorization) header.")
    if api.startswith("gemini.code_assist"):
        return None if bearer else (401, "Request is missing required authentication credential. Expected OAuth 2 "
                                         "access token.")
    if api.startswith("gemini."):
        ok = bool(request.headers.get("x-goog-api-key") or request.query.get("key")) or bearer
        return None if ok else (403, "Method doesn't allow unregistered callers (callers without established "
                                     "identity). Please use API Key or other form of API consumer identity.")
    return None if bearer else (401, "Missing API key: send it in the Authorization header.")


def _models_body(api: str) -> dict[str, Any]:
    """The model list of an API, in its format."""
    if api == "gemini.models":
        return {"models": [{"name": f"models/{m}", "version": "001", "displayName": m, "inputTokenLimit": 1048576,
                            "outputTokenLimit": 65536,
                            "supportedGenerationMethods": ["generateContent", "countTokens"]}
                           for m in _GEMINI_MODELS]}
    if api == "anthropic.models":
        ids = [m for m in MODEL_SNAPSHOTS.values() if m.startswith("claude")]
        return {"data": [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                         for m in ids], "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
    return {"object": "list", "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "system"}
                                       for m in MODEL_SNAPSHOTS if not m.startswith("claude")]}


def _code_assist_body(method: str, body: dict[str, Any]) -> dict[str, Any]:
    """The answer of a Code Assist service method (not generation): a set-up standard-tier user."""
    project = body.get("cloudaicompanionProject") or body.get("project") or "agentsight-demo"
    tier = {"id": "standard-tier", "name": "Gemini Code Assist", "description": "agentsight demo tier",
            "userDefinedCloudaicompanionProject": True}
    if method == "loadCodeAssist":
        return {"currentTier": tier, "allowedTiers": [{**tier, "isDefault": True}],
                "cloudaicompanionProject": project, "gcpManaged": False}
    if method == "onboardUser":
        return {"name": "operations/agentsight-onboard", "done": True,
                "response": {"cloudaicompanionProject": {"id": project, "name": project}}}
    if method == "listExperiments":
        return {"experimentIds": [], "flags": []}
    if method == "retrieveUserQuota":
        return {"buckets": []}
    return {}


def _count_body(api: str, tokens: int) -> dict[str, Any]:
    if api == "anthropic.count_tokens":
        return {"input_tokens": tokens}
    return {"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}


def _model_of(r: Route, body: dict[str, Any]) -> str:
    """The requested model: in the path (Gemini API) or the body (Code Assist: "models/" prefix allowed)."""
    if r.model is not None:
        return r.model
    if r.api.startswith("gemini.code_assist"):
        model = body.get("model") or obj(body.get("request") or {}, "'request'").get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model is required")
        return model.removeprefix("models/")
    return model_of(body)


def _gemini_id(seed: str) -> str:
    """A Gemini responseId: 22 URL-safe base64 characters."""
    return base64.urlsafe_b64encode(bytes.fromhex(seed[:32])).decode()[:22]


def make_app(settings: Settings, log: ExchangeLog) -> web.Application:
    """The aiohttp application: every API above, one JSON line per exchange in ``log``."""
    counter = iter(range(1 << 62))

    def exchange(api: str, body: dict[str, Any], conv: Conversation, model: str, seed: str,
                 generate: bool = True) -> Exchange:
        """The answer to one generation request (``generate`` False: a Responses warm-up, no output)."""
        if generate:
            answer = plan(conv, settings, seed, api)
        else:
            total, prefix = input_tokens(conv)
            answer = Answer("", [], total, prefix, 0)
        response_id = _gemini_id(seed) if api.startswith("gemini.") else _ID_PREFIX[api] + seed[:24]
        return Exchange(api, body, answer, model, MODEL_SNAPSHOTS.get(model, model), response_id, int(time.time()),
                        settings, history=conv.has_history, cache_marked=conv.cache_marked)

    def logged(record: dict[str, Any], ex: Exchange, stream: bool) -> None:
        log.write({**record, "stream": stream, "include_usage": ex.include_usage, "status": 200,
                   "model_requested": ex.model_requested, "model": ex.model, "response_id": ex.response_id,
                   "answer_text": ex.answer.text, "tool_calls": [c.as_dict() for c in ex.answer.tool_calls],
                   "stop_reason": ex.stop_reason(), "usage": ex.usage(), "error": None})

    async def handle(request: web.Request) -> web.StreamResponse:
        r = route(request.method, request.path, request.headers)
        if r is not None and r.websocket:
            return await responses_socket(request)
        raw = await request.read()
        n = next(counter)
        seed = hashlib.sha256(f"{n}:".encode() + raw).hexdigest()
        request_id = "req_" + seed[:24]
        api = r.api if r else None
        family = _family(api, request.path)
        record: dict[str, Any] = {"api": api, "endpoint": request.path, "transport": "http", "stream": False,
                                  "include_usage": False, "user_agent": request.headers.get("User-Agent")}

        def error(status: int, message: str) -> web.Response:
            body = _error_body(family, status, message, request_id)
            log.write({**record, "status": status, "model_requested": None, "model": None, "response_id": None,
                       "answer_text": None, "tool_calls": [], "stop_reason": None, "usage": None, "error": body})
            return web.json_response(body, status=status, headers=_headers(family, request_id))

        def answered(body: dict[str, Any], model: str | None, usage: dict[str, Any] | None) -> web.Response:
            """A request that is no generation (a model list, a token count), logged and answered."""
            log.write({**record, "status": 200, "model_requested": model, "model": model, "response_id": None,
                       "answer_text": None, "tool_calls": [], "stop_reason": None, "usage": usage, "error": None})
            return web.json_response(body, headers=_headers(family, request_id))

        if r is None:
            record["request_text"] = raw.decode("utf-8", "replace")
            return error(404, f"Invalid URL ({request.method} {request.path})")
        try:
            body = json.loads(raw) if request.method == "POST" else {}
        except ValueError as exc:
            record["request_text"] = raw.decode("utf-8", "replace")
            return error(400, f"We could not parse the JSON body of your request: {exc}")
        if request.method == "POST":
            record["request"] = body
        if (denied := _unauthorised(r.api, request)) is not None:
            return error(*denied)
        if request.method == "GET" and not r.api.startswith("gemini.code_assist."):
            return answered(_models_body(r.api), None, None)
        try:
            body = obj(body, "the request body")
            if r.api.startswith("gemini.code_assist.") and r.api != "gemini.code_assist.count_tokens":
                return answered(_code_assist_body(r.api.rsplit(".", 1)[1], body), None, None)
            model = _model_of(r, body)
            conv = _READERS[r.api](body)
        except BadRequest as exc:
            return error(400, str(exc))
        if r.api not in GENERATE_APIS:
            count = _count_body(r.api, input_tokens(conv)[0])
            return answered(count, model, count)
        ex = exchange(r.api, body, conv, model, seed)
        stream = r.stream if r.stream is not None else body.get("stream") is True
        ex.include_usage = stream and r.api == "openai.chat" and (
            (body.get("stream_options") or {}).get("include_usage") is True)
        logged(record, ex, stream)
        if not stream:
            chunks = len(pieces(ex.answer.text, settings.chunk_words)) + 4 * len(ex.answer.tool_calls)
            await asyncio.sleep((settings.ttft_ms + settings.chunk_ms * max(0, chunks - 1)) / 1000)
            return web.json_response(ex.body_json(), headers=_headers(family, request_id),
                                     dumps=lambda v: json.dumps(v, ensure_ascii=False))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", **_headers(family, request_id)})
        await resp.prepare(request)
        first = True
        try:
            for is_content, data in ex.frames():
                if is_content:
                    await asyncio.sleep((settings.ttft_ms if first else settings.chunk_ms) / 1000)
                    first = False
                await resp.write(data)
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away mid-stream
        return resp

    async def responses_socket(request: web.Request) -> web.StreamResponse:
        """Responses over WebSocket: each ``response.create`` text message is one exchange, answered with
        the streamed events as text messages. The socket remembers its responses, so a request may name
        ``previous_response_id`` and send only the new input items (Codex does)."""
        request_id = "req_" + hashlib.sha256(f"ws:{id(request)}".encode()).hexdigest()[:24]
        record: dict[str, Any] = {"api": "openai.responses", "endpoint": request.path, "transport": "websocket",
                                  "stream": True, "include_usage": False,
                                  "user_agent": request.headers.get("User-Agent")}
        if (denied := _unauthorised("openai.responses", request)) is not None:
            log.write({**record, "status": denied[0], "model_requested": None, "model": None, "response_id": None,
                       "answer_text": None, "tool_calls": [], "stop_reason": None, "usage": None,
                       "error": _error_body("openai", *denied, request_id)})
            return web.json_response(_error_body("openai", *denied, request_id), status=denied[0],
                                     headers=_headers("openai", request_id))
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
        ws.headers.update(_headers("openai", request_id))
        await ws.prepare(request)
        items_of: dict[str, list[Any]] = {}  # response id -> its whole input and output items

        async def error(rec: dict[str, Any], status: int, message: str, code: str | None = None) -> None:
            err = {"type": "invalid_request_error", "code": code, "message": message, "param": None}
            log.write({**rec, "status": status, "model_requested": None, "model": None, "response_id": None,
                       "answer_text": None, "tool_calls": [], "stop_reason": None, "usage": None,
                       "error": {"error": err}})
            await ws.send_str(json.dumps({"type": "error", "status": status, "error": err}))

        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            n = next(counter)
            seed = hashlib.sha256(f"{n}:".encode() + msg.data.encode()).hexdigest()
            rec = dict(record)
            try:
                body = obj(json.loads(msg.data), "the message")
            except (ValueError, BadRequest) as exc:
                rec["request_text"] = msg.data
                await error(rec, 400, f"We could not parse the JSON of your message: {exc}")
                continue
            if body.get("type") == "response.processed":
                continue  # the client's acknowledgement: no answer
            rec["request"] = body
            if body.get("type") != "response.create":
                await error(rec, 400, f"Unsupported message type {body.get('type')!r}.")
                continue
            fields = {k: v for k, v in body.items() if k != "type"}
            items = fields.get("input") or []
            previous = fields.get("previous_response_id")
            if previous is not None and previous not in items_of:
                await error(rec, 400, f"Previous response with id '{previous}' not found.",
                            "previous_response_not_found")
                continue
            if previous is not None and isinstance(items, list):
                items = items_of[previous] + items
            full = {**fields, "input": items}
            try:
                model = model_of(full)
                conv = openai_responses.read(full)
            except BadRequest as exc:
                await error(rec, 400, str(exc))
                continue
            ex = exchange("openai.responses", full, conv, model, seed, generate=fields.get("generate") is not False)
            items_of[ex.response_id] = list(items) + openai_responses.items(ex)
            logged(rec, ex, True)
            first = True
            for is_content, event in ex.responses_events():
                if is_content:
                    await asyncio.sleep((settings.ttft_ms if first else settings.chunk_ms) / 1000)
                    first = False
                await ws.send_str(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        return ws

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def make_tls(ca_out: Path | None) -> ssl.SSLContext:
    """A server context with a fresh certificate for 127.0.0.1/localhost; its CA PEM goes to ``ca_out``."""
    import trustme  # only the server needs it

    ca = trustme.CA(organization_name="agentsight demo CA")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    if ca_out is not None:
        tmp = ca_out.with_name(ca_out.name + ".tmp")
        ca.cert_pem.write_to_path(str(tmp))
        os.replace(tmp, ca_out)
    return ctx


async def serve(port: int, settings: Settings, log: ExchangeLog, ctx: ssl.SSLContext,
                ready_file: Path | None) -> None:
    sock = socket.create_server(("127.0.0.1", port))
    runner = web.AppRunner(make_app(settings, log), access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=ctx).start()
    bound = sock.getsockname()[1]
    print(f"llm_server: listening on https://127.0.0.1:{bound}", flush=True)
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(f"{bound}\n")
        os.replace(tmp, ready_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Running:
    """A server started by :func:`running`."""

    url: str  # https://127.0.0.1:PORT
    ca: Path  # the CA to trust
    log: Path  # its exchange log


@contextlib.contextmanager
def running(workdir: Path, settings: Settings | None = None) -> Iterator[Running]:
    """The server on a free port of 127.0.0.1, in a background thread (tests, embedding); its CA and
    exchange log are written in ``workdir``. Stopped when the block ends."""
    log_path, ca = workdir / "llm_server.jsonl", workdir / "llm_server-ca.pem"
    log = ExchangeLog(log_path)
    ctx = make_tls(ca)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="llm_server", daemon=True)
    thread.start()
    runner = web.AppRunner(make_app(settings or Settings(), log), access_log=None, handle_signals=False)
    sock = socket.create_server(("127.0.0.1", 0))

    async def start() -> None:
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=ctx).start()

    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
        yield Running(f"https://127.0.0.1:{sock.getsockname()[1]}", ca, log_path)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agentsight.demo.llm_server", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    p.add_argument("--ca-out", type=Path, help="write the CA certificate (PEM) clients must trust here")
    p.add_argument("--log", type=Path, help="append one JSON line per exchange to this file")
    p.add_argument("--ready-file", type=Path, help="write the port here once listening")
    p.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first content delta")
    p.add_argument("--chunk-ms", type=float, default=0.0, help="delay between content deltas")
    p.add_argument("--reply-words", type=int, default=30, help="words of filler in a text answer")
    p.add_argument("--chunk-words", type=int, default=3, help="words per streamed text delta")
    a = p.parse_args(argv)
    settings = Settings(a.ttft_ms, a.chunk_ms, a.reply_words, a.chunk_words)
    log = ExchangeLog(a.log)
    try:
        asyncio.run(serve(a.port, settings, log, make_tls(a.ca_out), a.ready_file))
    except OSError as exc:
        print(f"llm_server: cannot listen on 127.0.0.1:{a.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        log.close()
    return 0


def _iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Complete records of a log file another process may still be writing."""
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                yield json.loads(line)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every complete record of an exchange log."""
    return list(_iter_lines(path))


if __name__ == "__main__":
    sys.exit(main())
