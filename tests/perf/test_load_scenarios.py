"""The load scenarios of scenarios.toml, each run end to end and gated on its SLOs.

Every scenario starts from a clean state (source truncated, read model emptied, a fresh
consumer in a new group), runs its open-loop plan, and must meet every latency,
throughput and success target and pass the integrity verifier. ``--ep-scenario`` picks
scenarios, ``--slo`` overrides targets for all of them, ``--baseline`` fails regressions.
These tests must run serially: scripts/run_tests.sh runs them in its second, serial
pytest invocation.
"""

from __future__ import annotations

import pytest

from event_processor.perf.harness import PreparedScenario, TimingCapture
from event_processor.pytest_plugin import PerfSession, attach_outcome
from event_processor.report.html import cost_extras_text
from event_processor.settings import Settings
from event_processor.testing import ConsumerProcess

pytestmark = pytest.mark.stress


def test_scenario_meets_its_slos(
    ep_warm_pipeline: Settings,
    ep_perf: PerfSession,
    ep_scenario: PreparedScenario,
    ep_scenario_consumer: ConsumerProcess,
    ep_timings: TimingCapture,
    request: pytest.FixtureRequest,
) -> None:
    outcome = ep_perf.measure(ep_warm_pipeline, ep_scenario, ep_scenario_consumer, ep_timings)
    attach_outcome(request.node, outcome)
    scenario = outcome.scenario

    # Deterministic first: every committed row change reached the read model in time,
    # and the verifier found PostgreSQL and MongoDB identical.
    assert outcome.delivered, (
        f"{scenario.name}: only {outcome.stats.applied} of {outcome.stats.committed} row "
        f"changes were applied within {scenario.delivery_timeout_s:g} s "
        f"(consumer log: {outcome.consumer_log})"
    )
    assert outcome.verify.ok, f"{scenario.name}: integrity verifier FAILED\n" + "\n".join(
        outcome.verify.lines
    )

    # A verdict on the pipeline needs the load it was planned for: a generator that fell
    # behind its schedule makes the run INVALID, whatever its latencies say.
    validity = outcome.result.validity or {}
    assert validity.get("valid", False), (
        f"{scenario.name}: INVALID: load not offered as planned: "
        + "; ".join(validity.get("reasons", ["no validity verdict"]))
        + f" (host {validity.get('host_busy_pct')} % busy"
        + f"{cost_extras_text(outcome.result.cost or {})})"
    )

    gates = {g.name for g in outcome.gates}
    assert set(scenario.slos) <= gates, f"{scenario.name}: SLOs without a gate"
    failed = [g.message for g in outcome.gates if not g.passed]
    if failed and validity.get("saturated"):
        failed.append(f"(host saturated: {validity.get('host_busy_pct')} % busy"
                      f"{cost_extras_text(outcome.result.cost or {})})")  # fmt: skip
    assert not failed, "\n".join(failed)

    regressions = [g.message for g in outcome.baseline_gates if not g.passed]
    assert not regressions, "\n".join(regressions)
