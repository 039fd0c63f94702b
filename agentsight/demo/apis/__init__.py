"""The demo LLM server's side of each API, one module per API (the same split as
:mod:`agentsight.analysis.dialects`): how its request is read into a
:class:`~agentsight.demo.apis.common.Conversation`, and how an answer is written, whole (``body``)
or streamed (``frames``), with its usage and stop reason."""

from __future__ import annotations

from types import ModuleType

from agentsight.demo.apis import anthropic_messages, gemini, openai_chat, openai_responses

__all__ = ["BY_API"]

BY_API: dict[str, ModuleType] = {
    "openai.chat": openai_chat,
    "openai.responses": openai_responses,
    "anthropic.messages": anthropic_messages,
    "gemini.generate": gemini,
    "gemini.code_assist": gemini,
}
