#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the local demo: a hub, two sidecars and a model carry a goal to a verified merge
# on a git repository the demo creates (--scenario pr: a pull request and a blocked secret; --keep: stay up).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/agentcom demo "$@"
