#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the local demo: a hub, two sidecars and a model carry work to completion.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/agentcom demo "$@"
