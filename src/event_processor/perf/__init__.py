"""The run harness: load scenarios end to end, gated on SLOs and on the integrity verifier."""

from event_processor.perf.harness import ScenarioOutcome, VerifyOutcome, run_scenario

__all__ = ["ScenarioOutcome", "VerifyOutcome", "run_scenario"]
