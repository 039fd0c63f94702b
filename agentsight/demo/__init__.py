"""A local stand-in for LLM providers, a small agent that uses it, and real agent CLIs run against it
(demos, end-to-end tests, benchmarks).

- :mod:`agentsight.demo.llm_server`: an HTTPS server on 127.0.0.1 speaking OpenAI Chat
  Completions and Responses (also over WebSocket), Anthropic Messages, the Gemini API and
  Gemini Code Assist in their wire formats, with deterministic answers, tool calls, token
  counts and latency, and a log of every exchange.
- :mod:`agentsight.demo.agent`: a "coding agent" on the official openai and anthropic SDKs
  that runs the tool calls it gets as subprocesses.
- :mod:`agentsight.demo.clis`: Claude Code, Codex, Gemini CLI and Qwen Code (pinned npm
  packages) run offline against the server, in a network namespace with only loopback.

They need the ``demo`` extra (``pip install -e '.[demo]'``); the CLIs need Node.js, npm and root.
"""
