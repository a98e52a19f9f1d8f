#!/usr/bin/env bash
# Compare PostgreSQL with the MongoDB read model; exit 0 only when everything holds.
source "$(dirname "$0")/_common.sh"
mkdir -p reports
"$EP" verify --json reports/verify.json "$@"
