#!/usr/bin/env bash
# Set up what is missing, then record the built-in demo: a small coding agent on the real
# openai and anthropic SDKs, talking to a local HTTPS server that speaks both APIs (no network
# needed), running tools and a node child. Prints the recording's summary and prompts.
#   scripts/demo.sh            record, summarize
#   scripts/demo.sh --server   the same, then serve the web UI on http://127.0.0.1:7395
#   scripts/demo.sh --pipeline the runtime demo instead (config/demo.toml, no eBPF)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "${1:-}" = "--pipeline" ]; then
  exec .venv/bin/agentsight run --config config/demo.toml --no-watch
fi

work=$(mktemp -d /tmp/agentsight-demo-XXXXXX)
chmod 755 "$work"
trap 'kill "$server" 2>/dev/null || true' EXIT
.venv/bin/python -m agentsight.demo.llm_server --port 0 --ca-out "$work/ca.pem" --ready-file "$work/port" \
  --ttft-ms 150 --chunk-ms 10 --log "$work/server.jsonl" &
server=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "demo: the local LLM server did not start" >&2; exit 1; }
chmod 644 "$work/ca.pem"
port=$(cat "$work/port")
db="$PWD/agentsight-demo.db"
rm -f "$db" "$db-wal" "$db-shm"

echo "demo: recording the demo agent (local OpenAI/Anthropic server on 127.0.0.1:$port)"
set +e
.venv/bin/agentsight record --db "$db" -- "$PWD/.venv/bin/python" -m agentsight.demo.agent \
  --base-url "https://127.0.0.1:$port" --ca "$work/ca.pem" --calls 12 --node
code=$?
set -e
echo
echo "demo: the agent exited with $code; the prompts it sent and the answers it got:"
.venv/bin/agentsight report prompts --db "$db" --limit 4
echo
.venv/bin/agentsight report tokens --db "$db" --by model
echo
echo "demo: more: .venv/bin/agentsight report summary|tokens|prompts|export --db $db"
if [ "${1:-}" = "--server" ]; then
  exec .venv/bin/agentsight serve --db "$db"
fi
