#!/usr/bin/env bash
# Stop the processes the stack started (by PID). Pass --purge to delete all data too.
source "$(dirname "$0")/_common.sh"
"$EP" stack down "$@"
