#!/usr/bin/env bash
# The whole demo: set up, run 10, 100, 1,000 and 10,000 events with the live dashboard,
# verify, print the summary and the report paths. Exits non-zero when any gate failed.
source "$(dirname "$0")/_common.sh"
"$EP" stack up
"$EP" demo "$@"
