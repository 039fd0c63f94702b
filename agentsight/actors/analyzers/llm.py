"""Stage ``llm``: one ``llm.call`` per LLM API exchange, with tokens and cost.

Wraps :class:`agentsight.analysis.llm.LlmCalls` (OpenAI Chat Completions and
Responses, the latter over WebSocket too, Anthropic Messages, Gemini and Gemini Code
Assist; record in docs/analyzers.md). Every input event passes through
(``http.exchange`` too unless ``keep_exchanges`` is off); an exchange it recognises,
or the ``http.ws`` message that ends a WebSocket call, is followed by its ``llm.call``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agentsight.event import Event
from agentsight.pipeline.component import Analyzer, Capabilities, Option

if TYPE_CHECKING:
    from agentsight.analysis.llm import LlmCalls

__all__ = ["Llm"]


class Llm(Analyzer):
    TYPE = "llm"
    CAPS = Capabilities(tick=True)
    OPTIONS = {
        "redact": Option(bool, True, "replace credentials in the call's prompt, answer and headers", live=True),
        "prices": Option(bool, True, "estimate cost from genai-prices' bundled table", live=True),
        "keep_exchanges": Option(bool, True, "pass http.exchange records on as well", live=True),
    }

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name, options)
        # Imported here: an upstream actor imports this module only for DEFAULT_PARTITION.
        from agentsight.analysis.llm import LlmCalls

        self.calls: LlmCalls = LlmCalls(source=name, redact=self.options["redact"], prices=self.options["prices"])

    def apply_options(self, changed: set[str]) -> None:
        self.calls.redact = self.options["redact"]
        self.calls.prices = self.options["prices"]

    def process(self, event: Event) -> Iterable[Event]:
        if event.topic in ("http.ws", "http.ws.end"):
            return [event, *self.calls.feed(event)]
        if event.topic != "http.exchange":
            return (event,)
        out = self.calls.feed(event)
        return [event, *out] if self.options["keep_exchanges"] else out

    def tick(self, now_ns: int) -> Iterable[Event]:
        self.stats.update(self.calls.stats.as_dict())
        return ()
