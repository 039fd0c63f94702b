"""The LLM APIs agentsight reads, one module per API (a :class:`~.common.Dialect` each).

==========================  ================================================================
``openai_chat``             OpenAI Chat Completions (and compatible servers)
``openai_responses``        OpenAI Responses, over HTTP and over a WebSocket
``anthropic_messages``      Anthropic Messages
``gemini``                  Gemini API (generateContent, streamGenerateContent)
``gemini_code_assist``      Gemini Code Assist (Gemini CLI logged in with Google)
==========================  ================================================================

Each module knows how its API is recognised (a POST path), how to read its request, its JSON
answer and its stream events, how its usage is normalised, and which stream event is the last
one. :func:`stream_ended` is that last piece for the HTTP layer: clients stop reading at the
last event, so a response is complete there even if the body's terminator never comes.
"""

from __future__ import annotations

from agentsight.analysis.dialects import (
    anthropic_messages,
    gemini,
    gemini_code_assist,
    openai_chat,
    openai_responses,
)
from agentsight.analysis.dialects.common import Call, Dialect

__all__ = ["DIALECTS", "BY_API", "END_DATA", "END_EVENTS", "Call", "Dialect", "detect", "stream_ended"]

# In the order they are tried (a Responses path is checked before the Anthropic one, as before).
DIALECTS: tuple[Dialect, ...] = (
    openai_chat.DIALECT,
    openai_responses.DIALECT,
    anthropic_messages.DIALECT,
    gemini.DIALECT,
    gemini_code_assist.DIALECT,
)
BY_API = {d.api: d for d in DIALECTS}
# Stream events that are the last of their stream in some dialect: by type, or by data.
END_EVENTS: frozenset[str] = frozenset().union(*(d.end_events for d in DIALECTS))
END_DATA: frozenset[str] = frozenset().union(*(d.end_data for d in DIALECTS))


def detect(method: str | None, path: str | None) -> Dialect | None:
    """The dialect of a request, from its method and path (no query), or None."""
    if (method or "").upper() != "POST" or not path:
        return None
    for d in DIALECTS:
        if d.detects(path):
            return d
    return None


def stream_ended(event: str, data: str) -> bool:
    """Whether an event-stream event is the last one of a stream in any dialect
    (``[DONE]``, ``message_stop``, ``response.completed``...)."""
    return event in END_EVENTS or data in END_DATA
