"""A local stand-in for LLM providers and a small agent that uses it (demos, end-to-end tests, benchmarks).

- :mod:`agentsight.demo.llm_server`: an HTTPS server on 127.0.0.1 speaking OpenAI Chat
  Completions, OpenAI Responses and Anthropic Messages in their wire formats, with
  deterministic answers, tool calls, token counts and latency, and a log of every exchange.
- :mod:`agentsight.demo.agent`: a "coding agent" on the official openai and anthropic SDKs
  that runs the tool calls it gets as subprocesses.

Both need the ``demo`` extra (``pip install -e '.[demo]'``).
"""
