#!/usr/bin/env bash
# The README's test command (and CI's, via .ci/run):
#   1. unit tests in parallel (-n auto);
#   2. every test that needs the live stack, serially, in one pytest run: integration,
#      integrity, fault, and the SLO-gated load scenarios (marker stress), so one
#      HTML report (reports/report.html) and one JUnit file hold them all;
#   3. the full demo without a terminal (compact dashboard lines), which gates again.
# Exit non-zero when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p reports
EP=.venv/bin/event-processor
PYTEST=.venv/bin/pytest
started=$(date +%s)

$EP stack up || { echo "run_tests: the stack did not come up (see above)" >&2; exit 3; }

$PYTEST -m unit -n auto -q --junitxml=reports/junit-unit.xml "$@"
unit_rc=$?

scripts/ensure_browser.sh || echo "run_tests: no browser: the report's browser test will fail" >&2

$PYTEST -m "not unit" -v --junitxml=reports/junit.xml \
  --html=reports/report.html --self-contained-html "$@"
stack_rc=$?

demo_rc=0
if [ $# -eq 0 ]; then  # a selection of tests (arguments) skips the demo
  scripts/demo/full_demo.sh --reports reports/demo
  demo_rc=$?
fi

if [ "${CI:-}" = "true" ]; then
  $EP stack down || true
fi
echo "run_tests: unit exit $unit_rc, stack tests exit $stack_rc, demo exit $demo_rc;" \
  "$(( $(date +%s) - started )) s; HTML report: reports/report.html"
[ $unit_rc -eq 0 ] && [ $stack_rc -eq 0 ] && [ $demo_rc -eq 0 ]
