#!/usr/bin/env bash
# Set up what is missing, then lint, type-check and run the whole test suite
# (the eBPF tests run when this is root, which CI is).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --clis --phoenix
.venv/bin/ruff check agentsight tests scripts
.venv/bin/mypy agentsight
.venv/bin/pytest -ra "$@"
