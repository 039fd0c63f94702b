"""What the demo server's API modules share: the conversation a request is read into, the
errors it answers with, SSE frames and how an answer is cut into stream deltas."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BadRequest", "Conversation", "Frame", "obj", "text_of", "has_key", "model_of", "sse", "pieces",
           "arg_pieces"]

_WORD = re.compile(r"\S+\s*")


class BadRequest(Exception):
    """The request cannot be answered: sent back as a 400 in the provider's error format."""


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
    json_schema: dict[str, Any] | None = None  # structured output asked for (Gemini responseMimeType JSON)
    custom_tools: dict[str, str] = field(default_factory=dict)  # Responses free-form tools: name -> description


def obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be an object")
    return value


def text_of(content: Any, what: str) -> str:
    """Text of a content value: a string or a list of text-like parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{what} must be a string or an array of content parts")
    texts = []
    for part in content:
        p = obj(part, f"each part of {what}")
        if isinstance(p.get("text"), str):
            texts.append(p["text"])
    return "\n".join(texts)


def has_key(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(has_key(v, key) for v in value)
    return False


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter")
    return model



# A streamed answer is a list of frames: (is_content, SSE bytes). Content frames are paced.
Frame = tuple[bool, bytes]


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()



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


