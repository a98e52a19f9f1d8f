#!/usr/bin/env bash
# Run the stress scenario (1000 events) with the live dashboard; extra arguments go to `load`.
source "$(dirname "$0")/_common.sh"
"$EP" load --scenario stress "$@"
