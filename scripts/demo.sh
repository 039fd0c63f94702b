#!/usr/bin/env bash
# Set up what is missing, then run the built-in demo pipeline (config/demo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/agentsight run --config config/demo.toml --no-watch
