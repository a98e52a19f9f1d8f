"""The pytest plugin's options, run through a real pytest in a subprocess (pytester).

Each case writes a tiny test module that reads the session's PerfSession and asserts
what the options made of it; a bad option must stop pytest before any test runs, with a
one-line error that names the option's value and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

# A real result document, written by `event-processor load --scenario stress`.
STRESS_RESULT = Path(__file__).parents[1] / "fixtures" / "reports" / "stress-result.json"

PROBE = """
def test_probe(ep_perf):
    print("SELECTED", ep_perf.selected)
    print("OVERRIDES", sorted(ep_perf.overrides.items()))
    print("BASELINE", None if ep_perf.baseline is None else sorted(ep_perf.baseline))
    print("TOLERANCES", sorted(ep_perf.tolerances.items()))
"""


def _probe(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_probe=PROBE)
    return pytester.runpytest_subprocess(
        "-s", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", *args
    )


def _says(result: pytest.RunResult, *lines: str) -> None:
    """Each line printed by the probe, verbatim (fnmatch would read "[" as a class)."""
    out = result.stdout.str()
    for line in lines:
        assert line in out, f"{line!r} not in the probe's output:\n{out}"


def test_defaults_select_every_scenario_without_overrides(pytester: pytest.Pytester) -> None:
    result = _probe(pytester)
    result.assert_outcomes(passed=1)
    _says(result, "SELECTED ['warmup', 'moderate', 'stress', 'extreme']", "OVERRIDES []",
          "BASELINE None", "TOLERANCES [('p50', 15.0), ('p95', 15.0), ('p99', 15.0)]")  # fmt: skip


def test_ep_scenario_selects_and_parametrizes_in_file_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate="def test_gate(ep_scenario_name):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--collect-only", "-q", "--ep-scenario", "stress", "--ep-scenario", "moderate"
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["test_gate.py::test_gate[[]moderate[]]",
                                 "test_gate.py::test_gate[[]stress[]]"])  # fmt: skip
    result.stdout.no_fnmatch_line("*warmup*")
    result.stdout.no_fnmatch_line("*extreme*")


def test_an_unknown_scenario_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = _probe(pytester, "--ep-scenario", "strees")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown scenario 'strees' in --ep-scenario*"
                                 "use one of warmup, moderate, stress, extreme*"])  # fmt: skip
    result.stdout.no_fnmatch_line("*SELECTED*")


def test_slo_overrides_reach_the_session(pytester: pytest.Pytester) -> None:
    result = _probe(pytester, "--slo", "p99=150ms", "--slo", "p50=0.02s,throughput=900")
    result.assert_outcomes(passed=1)
    _says(result, "OVERRIDES [('p50', 20.0), ('p99', 150.0), ('throughput', 900.0)]")


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        (
            "--slo",
            "latency=5ms",
            "ERROR: slo: unknown SLO metric 'latency' (fix: valid names: p50,*",
        ),
        # A bad value's fix shows how to write one (the name was right).
        (
            "--slo",
            "p99=fast",
            "ERROR: slo: p99: cannot read 'fast' *(fix: write a latency as 150ms*",
        ),
        (
            "--baseline-tolerance",
            "p95",
            "ERROR: slo: expected NAME:PERCENT*(fix: write a tolerance*",
        ),
        ("--baseline-tolerance", "integrity:5%", "ERROR: slo: integrity is checked absolutely*"),
    ],
)
def test_a_bad_slo_is_a_usage_error(
    pytester: pytest.Pytester, option: str, value: str, words: str
) -> None:
    result = _probe(pytester, option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([words])
    result.stdout.no_fnmatch_line("*SELECTED*")


def test_baseline_and_tolerance_reach_the_session(pytester: pytest.Pytester) -> None:
    result = _probe(pytester, "--baseline", str(STRESS_RESULT), "--baseline-tolerance", "p95:20%")
    result.assert_outcomes(passed=1)
    _says(result, "BASELINE ['stress']", "TOLERANCES [('p95', 20.0)]")


def test_a_missing_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = _probe(pytester, "--baseline", "nowhere/latest.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*nowhere/latest.json* is neither a file, *previous*, nor a git ref*"]
    )


def test_a_file_that_is_no_result_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".json", notes='{"hello": 1}')
    result = _probe(pytester, "--baseline", "notes.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*notes.json is not a result document*"])


WARM_UP_CONFTEST = """
import pytest

import event_processor.perf.harness as harness
from event_processor.settings import Settings


@pytest.fixture(scope="session")
def ep_stack():  # no stack in a unit test: the warm-up below stands in for it
    return Settings()


harness.warm_up_pipeline = lambda settings, on_progress=None: {delivered}
"""


@pytest.mark.parametrize("delivered", [True, False])
def test_a_warm_up_that_did_not_deliver_fails_the_gated_tests_loudly(
    pytester: pytest.Pytester, delivered: bool
) -> None:
    pytester.makeconftest(WARM_UP_CONFTEST.format(delivered=delivered))
    pytester.makepyfile(test_gated="def test_gated(ep_warm_pipeline):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"
    )
    if delivered:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*pipeline warm-up: not every row change*reached MongoDB*"])
