#!/usr/bin/env bash
# Bring the embedded stack up (or check the configured external one) and show its health.
source "$(dirname "$0")/_common.sh"
"$EP" stack up
"$EP" stack status
