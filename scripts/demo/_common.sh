# Sourced by the demo scripts: run from the repo root with the project's virtualenv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
EP="$ROOT/.venv/bin/event-processor"
