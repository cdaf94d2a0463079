#!/usr/bin/env bash
# Set up everything AgentCom needs on a fresh Debian/Ubuntu machine: system tools (bubblewrap for the sandbox,
# Chromium for the browser tests), pm2 (keeps sidecars alive) and a Python virtualenv in .venv.
# Usage: scripts/setup.sh [--no-system]   (--no-system skips apt/npm, e.g. without root)
set -euo pipefail
cd "$(dirname "$0")/.."

want_system=1
[ "${1:-}" = "--no-system" ] && want_system=0

if [ "$want_system" = 1 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  missing=()
  command -v bwrap >/dev/null || missing+=(bubblewrap)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v git >/dev/null || missing+=(git)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! command -v pm2 >/dev/null; then
    if command -v npm >/dev/null; then
      echo "== installing pm2"
      $SUDO npm install -g pm2 >/dev/null 2>&1 || echo "warning: pm2 could not be installed; pm2 features will be skipped"
    else
      echo "warning: npm not found; pm2 features will be skipped"
    fi
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
echo "== installing Python packages"
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[test]'
echo "== setup done"
