#!/usr/bin/env bash
# Creates .venv and installs the project into it (re-run only when pyproject.toml changes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "bootstrap: Python 3.11+ is required (fix: install python3.11 or set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
for tool in java mvn go; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ] ; then
    echo "bootstrap: '$tool' is missing; the embedded stack needs Java 17, Maven and Go (fix: apt-get install -y openjdk-17-jdk-headless maven golang, or point EP_* at your own stack)" >&2
  fi
done
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing Python dependencies into .venv ..." >&2
  .venv/bin/pip install -q -U pip >&2
  .venv/bin/pip install -q -e '.[dev]' >&2
  rm -f .venv/.installed-* && touch "$stamp"
fi
