"""A local fake LLM service: OpenAI Chat Completions, OpenAI Responses and Anthropic Messages over HTTPS.

Binds 127.0.0.1 only (``--port 0`` picks a free port, announced on stdout and in
``--ready-file``), HTTP/1.1 keep-alive, a certificate for 127.0.0.1/localhost from its
own throwaway CA (``--ca-out`` writes the CA for clients: ``SSL_CERT_FILE``, ``curl
--cacert``, ``NODE_EXTRA_CA_CERTS``). The wire formats are the providers' own, streamed
(SSE) and not, so the official SDKs parse them.

The "model" is a script, deterministic from the request:

- it offers tools and the last message is not a tool result -> one call of the first
  tool named like a shell (``run_command``, ``bash``...), else the first tool; a string
  argument gets the text between backticks in the last user message (``ls`` if none);
- otherwise a text answer that quotes the last user message (or summarises the tool
  result), padded to ``--reply-words`` words.

Token counts are exact and deterministic: a token is a word or a punctuation character
(:func:`count_tokens`). Input = every text of the prompt + the tools' JSON + 3 per message
+ 3. The "prompt cache" covers the system prompt and the tools: OpenAI reports it as
``cached_tokens`` once the prompt holds an earlier assistant turn; Anthropic, when the
request has a ``cache_control`` marker, as ``cache_creation_input_tokens`` on the first
turn and ``cache_read_input_tokens`` after.

Every exchange is appended to ``--log`` as one JSON line (before its answer is sent):
``seq, api, endpoint, stream, include_usage, status, model_requested, model,
response_id, request`` (the body as parsed, or ``request_text`` when it was not JSON),
``answer_text, tool_calls`` ([{id, name, arguments, input}]), ``stop_reason, usage`` (the
provider usage object with the final numbers; ``None`` when none was sent), ``error``
(the error body), ``user_agent``.

Latency: ``--ttft-ms`` before the first content delta, ``--chunk-ms`` between content
deltas (a non-streamed answer waits for both as if it had been generated).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

__all__ = ["Settings", "BadRequest", "Conversation", "Answer", "count_tokens", "make_app", "make_tls", "main"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_BACKTICKS = re.compile(r"`([^`]+)`")
_WORD = re.compile(r"\S+\s*")
_SHELL_TOOLS = ("run_command", "bash", "shell", "exec", "run")
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


class BadRequest(Exception):
    """The request cannot be answered: sent back as a 400 in the provider's error format."""


# --------------------------------------------------------------------------- the request, read


@dataclass
class Conversation:
    """What the scripted model looks at, whatever the API."""

    system: str = ""
    texts: list[str] = field(default_factory=list)  # every other text of the prompt
    messages: int = 0
    has_history: bool = False  # an earlier assistant turn is in the prompt
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, JSON schema)
    tools_json: str = ""
    last_is_tool_result: bool = False
    last_text: str = ""
    tools_allowed: bool = True
    cache_marked: bool = False


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be an object")
    return value


def _text_of(content: Any, what: str) -> str:
    """Text of a content value: a string or a list of text-like parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{what} must be a string or an array of content parts")
    texts = []
    for part in content:
        p = _obj(part, f"each part of {what}")
        if isinstance(p.get("text"), str):
            texts.append(p["text"])
    return "\n".join(texts)


def _has_key(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(_has_key(v, key) for v in value)
    return False


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter")
    return model


def read_chat(body: dict[str, Any]) -> Conversation:
    """OpenAI Chat Completions request."""
    conv = Conversation()
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array")
    system = []
    for raw in messages:
        m = _obj(raw, "each message")
        role = m.get("role")
        text = _text_of(m.get("content"), "'content'")
        conv.messages += 1
        if role in ("system", "developer"):
            system.append(text)
            continue
        conv.texts.append(text)
        for tc in m.get("tool_calls") or []:
            fn = _obj(_obj(tc, "each tool call").get("function"), "'function'")
            conv.texts += [str(fn.get("name", "")), str(fn.get("arguments", ""))]
        if role == "assistant":
            conv.has_history = True
        conv.last_is_tool_result = role == "tool"
        if role in ("user", "tool"):
            conv.last_text = text
    conv.system = "\n\n".join(system)
    tools = body.get("tools") or []
    for t in tools:
        fn = _obj(_obj(t, "each tool").get("function"), "'function'")
        conv.tools.append((str(fn.get("name")), _obj(fn.get("parameters") or {}, "'parameters'")))
    conv.tools_json = json.dumps(tools, sort_keys=True) if tools else ""
    conv.tools_allowed = body.get("tool_choice") != "none"
    return conv


def read_responses(body: dict[str, Any]) -> Conversation:
    """OpenAI Responses request."""
    conv = Conversation()
    inp = body.get("input")
    items = [{"type": "message", "role": "user", "content": inp}] if isinstance(inp, str) else inp
    if not isinstance(items, list) or not items:
        raise BadRequest("'input' must be a string or a non-empty array")
    instructions = body.get("instructions")
    system = [instructions] if isinstance(instructions, str) else []
    for raw in items:
        it = _obj(raw, "each input item")
        kind = it.get("type", "message")
        conv.messages += 1
        conv.last_is_tool_result = kind == "function_call_output"
        if kind == "message":
            text = _text_of(it.get("content"), "'content'")
            if it.get("role") in ("system", "developer"):
                system.append(text)
                continue
            conv.texts.append(text)
            if it.get("role") == "assistant":
                conv.has_history = True
            else:
                conv.last_text = text
        elif kind == "function_call":
            conv.has_history = True
            conv.texts += [str(it.get("name", "")), str(it.get("arguments", ""))]
        elif kind == "function_call_output":
            out = it.get("output")
            conv.last_text = out if isinstance(out, str) else _text_of(out, "'output'")
            conv.texts.append(conv.last_text)
        else:
            raise BadRequest(f"input item type {kind!r} is not supported by this server")
    conv.system = "\n\n".join(system)
    tools = body.get("tools") or []
    for t in tools:
        t = _obj(t, "each tool")
        if t.get("type") == "function":
            conv.tools.append((str(t.get("name")), _obj(t.get("parameters") or {}, "'parameters'")))
    conv.tools_json = json.dumps(tools, sort_keys=True) if tools else ""
    conv.tools_allowed = body.get("tool_choice") != "none"
    return conv


def read_messages(body: dict[str, Any]) -> Conversation:
    """Anthropic Messages request."""
    conv = Conversation()
    if not isinstance(body.get("max_tokens"), int):
        raise BadRequest("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required")
    conv.system = _text_of(body.get("system"), "system")
    for raw in messages:
        m = _obj(raw, "each message")
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise BadRequest(f"messages: role must be 'user' or 'assistant', got {role!r}")
        conv.messages += 1
        content = m.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise BadRequest("messages: content must be a string or an array of blocks")
        results = []
        texts = []
        for b in blocks:
            b = _obj(b, "each content block")
            if b.get("type") == "text":
                texts.append(str(b.get("text", "")))
            elif b.get("type") == "tool_use":
                conv.texts += [str(b.get("name", "")), json.dumps(b.get("input"), separators=(",", ":"))]
            elif b.get("type") == "tool_result":
                results.append(_text_of(b.get("content"), "tool_result content"))
        conv.texts += texts + results
        if role == "assistant":
            conv.has_history = True
            conv.last_is_tool_result = False
        else:
            conv.last_is_tool_result = bool(results)
            conv.last_text = "\n".join(results) if results else "\n".join(texts)
    tools = body.get("tools") or []
    for t in tools:
        t = _obj(t, "each tool")
        conv.tools.append((str(t.get("name")), _obj(t.get("input_schema") or {}, "input_schema")))
    conv.tools_json = json.dumps(tools, sort_keys=True) if tools else ""
    conv.tools_allowed = _obj(body.get("tool_choice") or {}, "tool_choice").get("type") != "none"
    conv.cache_marked = _has_key(body, "cache_control")
    return conv


# --------------------------------------------------------------------------- the answer, planned


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # compact JSON text

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "input": json.loads(self.arguments)}


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
    """Arguments for a tool, from its JSON schema: the backticked command for the first string."""
    found = _BACKTICKS.search(last_text)
    command = found.group(1) if found else "ls"
    props = schema.get("properties") or {}
    required = schema.get("required") or list(props)
    args: dict[str, Any] = {}
    first_string = True
    for name in required:
        kind = (props.get(name) or {}).get("type", "string")
        if kind == "string":
            args[name] = command if first_string else last_text[:80]
            first_string = False
        else:
            args[name] = {"integer": 1, "number": 1, "boolean": False, "array": [], "object": {}}.get(kind)
    return args


def plan(conv: Conversation, settings: Settings, seed: str, api: str) -> Answer:
    """What the scripted model answers to ``conv`` (``seed`` makes ids and filler vary)."""
    calls: list[ToolCall] = []
    if conv.tools and conv.tools_allowed and not conv.last_is_tool_result:
        name, schema = next((t for t in conv.tools if t[0] in _SHELL_TOOLS), conv.tools[0])
        args = _arguments(schema, conv.last_text)
        digest = hashlib.sha256(f"call:{seed}".encode()).hexdigest()
        call_id = f"toolu_01{digest[:22]}" if api == "anthropic.messages" else f"call_{digest[:24]}"
        calls.append(ToolCall(call_id, name, json.dumps(args, separators=(",", ":"), ensure_ascii=False)))
        # Claude says what it is about to do; OpenAI models usually answer with the call alone.
        text = f"I will run `{args.get('command', name)}` with {name}." if api == "anthropic.messages" else ""
    elif conv.last_is_tool_result:
        lines = conv.last_text.strip().splitlines()
        first = lines[0][:120] if lines else "(no output)"
        text = f"The tool printed {len(lines)} line(s); the first is: {first} " + _filler(seed, settings.reply_words)
    else:
        quoted = " ".join(conv.last_text.split())[:160]
        text = f"You said: {quoted} " + _filler(seed, settings.reply_words)
    prefix = count_tokens(conv.system) + count_tokens(conv.tools_json)
    input_tokens = prefix + sum(count_tokens(t) for t in conv.texts) + 3 * conv.messages + 3
    output_tokens = count_tokens(text) + sum(count_tokens(c.name) + count_tokens(c.arguments) for c in calls)
    return Answer(text, calls, input_tokens, prefix, output_tokens)


def pieces(text: str, words: int) -> list[str]:
    """``text`` cut into stream deltas of ``words`` words (whitespace kept): joined, they are ``text``."""
    found = _WORD.findall(text)
    lead = text[: len(text) - len("".join(found))]
    out = ["".join(found[i:i + words]) for i in range(0, len(found), max(1, words))]
    if lead:
        out = [lead + out[0]] if out else [lead]
    return out


def arg_pieces(arguments: str, n: int = 4) -> list[str]:
    size = max(1, -(-len(arguments) // n))
    return [arguments[i:i + size] for i in range(0, len(arguments), size)] or [""]


# --------------------------------------------------------------------------- wire formats

# A streamed answer is a list of frames: (is_content, SSE bytes). Content frames are paced.
Frame = tuple[bool, bytes]


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


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
        if self.api == "anthropic.messages":
            return "tool_use" if self.answer.tool_calls else "end_turn"
        if self.api == "openai.chat":
            return "tool_calls" if self.answer.tool_calls else "stop"
        return "completed"

    # -- OpenAI Chat Completions

    def chat_usage(self) -> dict[str, Any]:
        a = self.answer
        return {
            "prompt_tokens": a.input_tokens,
            "completion_tokens": a.output_tokens,
            "total_tokens": a.input_tokens + a.output_tokens,
            "prompt_tokens_details": {"cached_tokens": self._openai_cached(), "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }

    def _openai_cached(self) -> int:
        return self.answer.cached_tokens if self.history else 0

    def chat_body(self) -> dict[str, Any]:
        a = self.answer
        message: dict[str, Any] = {"role": "assistant", "content": a.text or None, "refusal": None,
                                   "annotations": []}
        if a.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in a.tool_calls]
        return {"id": self.response_id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self.stop_reason()}],
                "usage": self.chat_usage(), "service_tier": "default", "system_fingerprint": "fp_agentsight"}

    def chat_frames(self) -> list[Frame]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            d: dict[str, Any] = {"id": self.response_id, "object": "chat.completion.chunk", "created": self.created,
                                 "model": self.model, "service_tier": "default", "system_fingerprint": "fp_agentsight",
                                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if self.include_usage:
                d["usage"] = None
            return _sse(d)

        a = self.answer
        frames: list[Frame] = [(False, chunk({"role": "assistant", "content": "", "refusal": None}))]
        frames += [(True, chunk({"content": p})) for p in pieces(a.text, self.settings.chunk_words) if a.text]
        for i, c in enumerate(a.tool_calls):
            frames.append((True, chunk({"tool_calls": [{"index": i, "id": c.id, "type": "function",
                                                        "function": {"name": c.name, "arguments": ""}}]})))
            frames += [(True, chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}))
                       for p in arg_pieces(c.arguments)]
        frames.append((False, chunk({}, self.stop_reason())))
        if self.include_usage:
            frames.append((False, _sse({"id": self.response_id, "object": "chat.completion.chunk",
                                        "created": self.created, "model": self.model, "service_tier": "default",
                                        "system_fingerprint": "fp_agentsight", "choices": [],
                                        "usage": self.chat_usage()})))
        frames.append((False, b"data: [DONE]\n\n"))
        return frames

    # -- OpenAI Responses

    def responses_usage(self) -> dict[str, Any]:
        a = self.answer
        return {"input_tokens": a.input_tokens, "input_tokens_details": {"cached_tokens": self._openai_cached()},
                "output_tokens": a.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": a.input_tokens + a.output_tokens}

    def _response_items(self) -> list[dict[str, Any]]:
        a = self.answer
        items: list[dict[str, Any]] = []
        if a.text:
            items.append({"id": "msg_" + self.response_id[5:], "type": "message", "status": "completed",
                          "role": "assistant",
                          "content": [{"type": "output_text", "text": a.text, "annotations": [], "logprobs": []}]})
        for c in a.tool_calls:
            items.append({"id": "fc_" + c.id[5:], "type": "function_call", "status": "completed",
                          "call_id": c.id, "name": c.name, "arguments": c.arguments})
        return items

    def responses_body(self, done: bool = True) -> dict[str, Any]:
        b = self.body
        return {"id": self.response_id, "object": "response", "created_at": self.created,
                "status": "completed" if done else "in_progress", "background": False, "error": None,
                "incomplete_details": None, "instructions": b.get("instructions"),
                "max_output_tokens": b.get("max_output_tokens"), "model": self.model,
                "output": self._response_items() if done else [], "parallel_tool_calls": True,
                "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
                "store": False, "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [], "top_p": 1.0,
                "truncation": "disabled", "usage": self.responses_usage() if done else None, "user": None,
                "metadata": {}}

    def responses_frames(self) -> list[Frame]:
        seq = iter(range(1 << 30))

        def ev(kind: str, content: bool = False, **data: Any) -> Frame:
            return (content, _sse({"type": kind, "sequence_number": next(seq), **data}, kind))

        frames = [ev("response.created", response=self.responses_body(False)),
                  ev("response.in_progress", response=self.responses_body(False))]
        for index, item in enumerate(self._response_items()):
            if item["type"] == "message":
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                frames.append(ev("response.output_item.added", output_index=index,
                                 item={**item, "status": "in_progress", "content": []}))
                frames.append(ev("response.content_part.added", item_id=item["id"], output_index=index,
                                 content_index=0, part=part))
                frames += [ev("response.output_text.delta", True, item_id=item["id"], output_index=index,
                              content_index=0, delta=p, logprobs=[])
                           for p in pieces(self.answer.text, self.settings.chunk_words)]
                frames.append(ev("response.output_text.done", item_id=item["id"], output_index=index,
                                 content_index=0, text=self.answer.text, logprobs=[]))
                frames.append(ev("response.content_part.done", item_id=item["id"], output_index=index,
                                 content_index=0, part=item["content"][0]))
            else:
                frames.append(ev("response.output_item.added", output_index=index,
                                 item={**item, "status": "in_progress", "arguments": ""}))
                frames += [ev("response.function_call_arguments.delta", True, item_id=item["id"],
                              output_index=index, delta=p) for p in arg_pieces(item["arguments"])]
                frames.append(ev("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                 name=item["name"], arguments=item["arguments"]))
            frames.append(ev("response.output_item.done", output_index=index, item=item))
        frames.append(ev("response.completed", response=self.responses_body()))
        return frames

    # -- Anthropic Messages

    def messages_usage(self, output_tokens: int | None = None) -> dict[str, Any]:
        a = self.answer
        cached = a.cached_tokens if self.cache_marked else 0
        read = cached if self.history else 0
        write = 0 if self.history else cached
        return {"input_tokens": a.input_tokens - read - write, "cache_creation_input_tokens": write,
                "cache_read_input_tokens": read,
                "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
                "output_tokens": a.output_tokens if output_tokens is None else output_tokens,
                "service_tier": "standard"}

    def _blocks(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if self.answer.text:
            blocks.append({"type": "text", "text": self.answer.text})
        for c in self.answer.tool_calls:
            blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments)})
        return blocks

    def messages_body(self) -> dict[str, Any]:
        return {"id": self.response_id, "type": "message", "role": "assistant", "model": self.model,
                "content": self._blocks(), "stop_reason": self.stop_reason(), "stop_sequence": None,
                "usage": self.messages_usage()}

    def messages_frames(self) -> list[Frame]:
        start: dict[str, Any] = {"id": self.response_id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                 "stop_reason": None, "stop_sequence": None, "usage": self.messages_usage(output_tokens=1)}
        frames: list[Frame] = [(False, _sse({"type": "message_start", "message": start}, "message_start")),
                               (False, _sse({"type": "ping"}, "ping"))]
        for index, block in enumerate(self._blocks()):
            opening: dict[str, Any]
            if block["type"] == "text":
                deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"], self.settings.chunk_words)]
                opening = {"type": "text", "text": ""}
            else:
                args = json.dumps(block["input"], separators=(",", ":"), ensure_ascii=False)
                deltas = [{"type": "input_json_delta", "partial_json": p} for p in arg_pieces(args)]
                opening = {**block, "input": {}}
            frames.append((False, _sse({"type": "content_block_start", "index": index, "content_block": opening},
                                       "content_block_start")))
            frames += [(True, _sse({"type": "content_block_delta", "index": index, "delta": d},
                                   "content_block_delta")) for d in deltas]
            frames.append((False, _sse({"type": "content_block_stop", "index": index}, "content_block_stop")))
        frames.append((False, _sse({"type": "message_delta",
                                    "delta": {"stop_reason": self.stop_reason(), "stop_sequence": None},
                                    "usage": {"output_tokens": self.answer.output_tokens}}, "message_delta")))
        frames.append((False, _sse({"type": "message_stop"}, "message_stop")))
        return frames

    # -- dispatch

    def body_json(self) -> dict[str, Any]:
        return {"openai.chat": self.chat_body, "openai.responses": self.responses_body,
                "anthropic.messages": self.messages_body}[self.api]()

    def frames(self) -> list[Frame]:
        return {"openai.chat": self.chat_frames, "openai.responses": self.responses_frames,
                "anthropic.messages": self.messages_frames}[self.api]()

    def usage(self) -> dict[str, Any] | None:
        """The usage the client is told (the final numbers), in the provider's shape."""
        if self.api == "openai.chat":
            stream = self.body.get("stream") is True
            return self.chat_usage() if not stream or self.include_usage else None
        if self.api == "openai.responses":
            return self.responses_usage()
        return self.messages_usage()


# --------------------------------------------------------------------------- HTTP

_ROUTES = {
    "/v1/chat/completions": ("openai.chat", read_chat),
    "/v1/responses": ("openai.responses", read_responses),
    "/v1/messages": ("anthropic.messages", read_messages),
}
_ID_PREFIX = {"openai.chat": "chatcmpl-", "openai.responses": "resp_", "anthropic.messages": "msg_01"}


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


def _error_body(api: str, status: int, message: str, request_id: str) -> dict[str, Any]:
    if api == "anthropic.messages":
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}.get(
            status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    code = {401: "invalid_api_key", 404: "unknown_url"}.get(status)
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _headers(api: str, request_id: str) -> dict[str, str]:
    if api == "anthropic.messages":
        return {"request-id": request_id, "anthropic-organization-id": "demo-org"}
    return {"x-request-id": request_id, "openai-organization": "demo-org", "openai-processing-ms": "1",
            "openai-version": "2020-10-01"}


def _authorised(api: str, request: web.Request) -> bool:
    auth = request.headers.get("Authorization", "")
    if api == "anthropic.messages":
        return bool(request.headers.get("x-api-key")) or auth.startswith("Bearer ")
    return auth.startswith("Bearer ") and len(auth) > 7


def make_app(settings: Settings, log: ExchangeLog) -> web.Application:
    """The aiohttp application: the three APIs, one JSON line per exchange in ``log``."""
    counter = iter(range(1 << 62))

    async def handle(request: web.Request) -> web.StreamResponse:
        route = _ROUTES.get(request.path)
        raw = await request.read()
        n = next(counter)
        request_id = "req_" + hashlib.sha256(f"{n}:".encode() + raw).hexdigest()[:24]
        api = route[0] if route else "openai.chat"
        record: dict[str, Any] = {"api": api if route else None, "endpoint": request.path, "stream": False,
                                  "include_usage": False, "user_agent": request.headers.get("User-Agent")}

        def error(status: int, message: str) -> web.Response:
            body = _error_body(api, status, message, request_id)
            log.write({**record, "status": status, "model_requested": None, "model": None, "response_id": None,
                       "answer_text": None, "tool_calls": [], "stop_reason": None, "usage": None, "error": body})
            return web.json_response(body, status=status, headers=_headers(api, request_id))

        if route is None or request.method != "POST":
            record["request_text"] = raw.decode("utf-8", "replace")
            return error(404, f"Invalid URL ({request.method} {request.path})")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            record["request_text"] = raw.decode("utf-8", "replace")
            return error(400, f"We could not parse the JSON body of your request: {exc}")
        record["request"] = body
        if not _authorised(api, request):
            return error(401, "Missing API key: send it in the Authorization (or x-api-key) header.")
        try:
            body = _obj(body, "the request body")
            model = _model(body)
            conv = route[1](body)
        except BadRequest as exc:
            return error(400, str(exc))
        seed = hashlib.sha256(f"{n}:".encode() + raw).hexdigest()
        answer = plan(conv, settings, seed, api)
        ex = Exchange(api, body, answer, model, MODEL_SNAPSHOTS.get(model, model), _ID_PREFIX[api] + seed[:24],
                      int(time.time()), settings, history=conv.has_history, cache_marked=conv.cache_marked)
        stream = body.get("stream") is True
        ex.include_usage = stream and api == "openai.chat" and (
            (body.get("stream_options") or {}).get("include_usage") is True)
        log.write({**record, "stream": stream, "include_usage": ex.include_usage, "status": 200,
                   "model_requested": model, "model": ex.model, "response_id": ex.response_id,
                   "answer_text": answer.text, "tool_calls": [c.as_dict() for c in answer.tool_calls],
                   "stop_reason": ex.stop_reason(), "usage": ex.usage(), "error": None})
        if not stream:
            chunks = len(pieces(answer.text, settings.chunk_words)) + 4 * len(answer.tool_calls)
            await asyncio.sleep((settings.ttft_ms + settings.chunk_ms * max(0, chunks - 1)) / 1000)
            return web.json_response(ex.body_json(), headers=_headers(api, request_id),
                                     dumps=lambda v: json.dumps(v, ensure_ascii=False))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", **_headers(api, request_id)})
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
