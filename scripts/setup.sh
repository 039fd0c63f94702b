#!/usr/bin/env bash
# Set up what a fresh Debian/Ubuntu machine lacks to run and test agentsight.
# Idempotent: each step checks first and says what it did.
#   - Debian packages: bcc for the system Python, venv, kernel headers, test tools
#   - kernel headers bcc can find at /lib/modules/$(uname -r)/build
#   - tracefs mounted
#   - .venv (system site packages, so it sees bcc) with `pip install -e .[test]`
#   - with --clis (scripts/test.sh passes it): the pinned agent CLIs the tests run
#     (Claude Code, Codex, Gemini CLI, Qwen Code) from npm, searched once for their TLS
#     functions (`agentsight debug find-tls`), as a user does after installing an agent;
#     and the pinned MCP reference servers the MCP tests run (filesystem, everything)
#   - with --phoenix (scripts/test.sh passes it): Arize Phoenix, the OTLP receiver the export
#     tests start, in a virtualenv of its own (its dependencies pin other SDK versions than ours)
set -euo pipefail
clis=0
phoenix=0
for arg in "$@"; do
  case "$arg" in
    --clis) clis=1 ;;
    --phoenix) phoenix=1 ;;
    *) echo "setup: unknown option $arg (known: --clis, --phoenix)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: needs root for apt and kernel headers: run sudo $0" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then apt-get update -q >/dev/null; apt_updated=1; fi
  say "installing ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install python3-bpfcc python3-venv python3-pip curl openssl iproute2 tmux chromium

# Kernel headers: the running kernel's package first, else the nearest installed headers.
K=$(uname -r)
if [ ! -e "/lib/modules/$K/build/include/linux/kconfig.h" ] && [ ! -e "/lib/modules/$K/build/include/generated" ]; then
  if apt-cache show "linux-headers-$K" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt_updated=1; apt-cache show "linux-headers-$K" >/dev/null 2>&1; }; then
    apt_install "linux-headers-$K"
  fi
fi
if [ ! -e "/lib/modules/$K/build" ]; then
  arch=$(dpkg --print-architecture)
  apt_install "linux-headers-$arch"
  nearest=$(ls -d /lib/modules/*/build 2>/dev/null | grep -v "/$K/" | sort -V | tail -n 1 || true)
  if [ -z "$nearest" ]; then
    echo "setup: no kernel headers could be installed for $K" >&2
    exit 1
  fi
  hdir=$(dirname "$nearest")
  if [ -d "/lib/modules/$K" ] && [ ! -L "/lib/modules/$K" ]; then
    ln -sfn "$(readlink -f "$hdir/build")" "/lib/modules/$K/build"
    [ -e "$hdir/source" ] && ln -sfn "$(readlink -f "$hdir/source")" "/lib/modules/$K/source"
  else
    ln -sfn "$hdir" "/lib/modules/$K"
  fi
  say "no headers packaged for kernel $K: using $(basename "$hdir") (enough for tracepoints and uprobes)"
fi

if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing && say "mounted tracefs"
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import bcc" >/dev/null 2>&1; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
  say "created .venv"
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -e "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  if ! .venv/bin/pip install -q -e ".[test]" >/tmp/agentsight-pip.log 2>&1; then
    cat /tmp/agentsight-pip.log >&2
    echo "setup: pip install failed (log above)" >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
  say "installed agentsight into .venv"
fi
if [ $clis -eq 1 ]; then
  if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  cache=${AGENTSIGHT_CLI_CACHE:-/var/cache/agentsight-clis}
  if ! .venv/bin/python -m agentsight.demo.clis install >/tmp/agentsight-npm.log 2>&1; then
    cat /tmp/agentsight-npm.log >&2
    echo "setup: npm install of the agent CLIs failed (log above)" >&2
    exit 1
  fi
  .venv/bin/agentsight debug find-tls "$cache/node_modules" >/dev/null
  say "agent CLIs in $cache ($(ls "$cache/node_modules/.bin" | tr '\n' ' '))"
  mcp=${AGENTSIGHT_MCP_CACHE:-/var/cache/agentsight-mcp}
  if ! .venv/bin/python -m agentsight.demo.mcp_servers install >/tmp/agentsight-npm-mcp.log 2>&1; then
    cat /tmp/agentsight-npm-mcp.log >&2
    echo "setup: npm install of the MCP servers failed (log above)" >&2
    exit 1
  fi
  say "MCP servers in $mcp ($(ls "$mcp/node_modules/.bin" | grep '^mcp-' | tr '\n' ' '))"
fi
if [ $phoenix -eq 1 ]; then
  PHOENIX_VERSION=20.26.1
  pvenv=${AGENTSIGHT_PHOENIX:-/var/cache/agentsight-phoenix}
  if [ ! -e "$pvenv/.installed-$PHOENIX_VERSION" ]; then
    rm -rf "$pvenv"
    /usr/bin/python3 -m venv "$pvenv"
    if ! "$pvenv/bin/pip" install -q "arize-phoenix==$PHOENIX_VERSION" >/tmp/agentsight-phoenix-pip.log 2>&1; then
      cat /tmp/agentsight-phoenix-pip.log >&2
      echo "setup: pip install of arize-phoenix failed (log above)" >&2
      exit 1
    fi
    touch "$pvenv/.installed-$PHOENIX_VERSION"
    say "installed arize-phoenix $PHOENIX_VERSION into $pvenv"
  fi
fi
# bcc compiles each eBPF program in 1-2.5 s: once, here, into the compile cache, so that the first
# `record` starts as fast as the next ones (debug warm-bpf; the cache is keyed by program, kernel, bcc).
if ! .venv/bin/agentsight debug warm-bpf >/tmp/agentsight-warm-bpf.log 2>&1; then
  cat /tmp/agentsight-warm-bpf.log >&2
  echo "setup: the eBPF programs do not load on this machine (log above)" >&2
  exit 1
fi
say "eBPF programs of record compiled ($(tail -1 /tmp/agentsight-warm-bpf.log))"
say "ready: .venv/bin/agentsight"
