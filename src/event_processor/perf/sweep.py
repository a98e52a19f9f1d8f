"""The tuning sweep: one scenario run per setting of one or more knobs.

Several knobs are combined as a cartesian product (the first knob varies slowest);
``--repeat K`` runs every setting K times. For each setting:

- connector knobs (``poll.interval.ms``, ``max.batch.size``, ``max.queue.size``,
  ``linger.ms``) are PUT into the connector's config through the same register path
  ``stack up`` uses, which waits until the re-created task is RUNNING with the new
  values; the run's own warm-up (the catalogue seeded in PostgreSQL and awaited in
  MongoDB) then proves the reconfigured task produces before anything is measured;
- consumer knobs reach the run's fresh consumer process as ``EP_<FIELD>`` variables.

The connector's original config and the original environment are restored at the end,
also after an error or Ctrl-C.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from event_processor.metrics.scenarios import Scenario
from event_processor.perf.knobs import (
    CONNECTOR,
    CONSUMER,
    KNOBS,
    Knob,
    check_setting,
    field_updates,
    grid,
    label,
    lookup,
    touches,
)
from event_processor.report.schema import SweepPoint, SweepSection
from event_processor.settings import Settings

if TYPE_CHECKING:
    from event_processor.perf.harness import ScenarioOutcome

Say = Callable[[str], None]


@dataclass
class SweepRun:
    section: SweepSection
    outcomes: list[ScenarioOutcome] = field(default_factory=list)


def point_of(outcome: ScenarioOutcome, setting: dict[str, int], run: int) -> SweepPoint:
    r = outcome.result
    cost = r.harness_cost.instrumentation_pct if r.harness_cost else None
    return SweepPoint(
        setting=dict(setting),
        label=label(setting),
        run=run,
        scenario=r.name,
        p50_ms=r.e2e_ms.p50,
        p95_ms=r.e2e_ms.p95,
        p99_ms=r.e2e_ms.p99,
        throughput_eps=r.throughput_eps,
        success_rate=r.success_rate,
        delivered=outcome.delivered,
        integrity_ok=outcome.verify.ok,
        slo_passed=r.passed,
        harness_cost_pct=cost,
    )


def run_name(scenario: str, setting: dict[str, int], run: int, repeat: int) -> str:
    """The run's entry name in the document: ``scenario@knob=value,...[#run]``."""
    name = f"{scenario}@" + ",".join(f"{k}={v}" for k, v in setting.items())
    return f"{name}#{run}" if repeat > 1 else name


def run_sweep(
    settings: Settings,
    scenario: Scenario,
    knobs: Sequence[tuple[Knob, list[int]]],
    *,
    repeat: int = 1,
    say: Say = lambda _msg: None,
) -> SweepRun:
    """Run ``scenario`` at every setting; always restores the original configuration.

    An error or Ctrl-C stops the sweep with ``SweepInterrupted``, which carries the runs
    finished so far (its section's ``interrupted`` says why).
    """
    from dataclasses import replace

    from event_processor.perf.harness import RunView, run_scenario

    settings_list = grid(knobs)
    base = {k.field: getattr(settings, k.field) for k in KNOBS}
    for setting in settings_list:
        check_setting(setting, base)
    section = SweepSection(
        scenario=scenario.name,
        events=scenario.events,
        rate=scenario.rate,
        repeat=repeat,
        knobs={k.name: list(v) for k, v in knobs},
        original={k.name: getattr(settings, k.field) for k, _ in knobs},
    )
    sweep = SweepRun(section)
    connector = any(touches(s, CONNECTOR) for s in settings_list)
    restore = _Restorer(settings, connector, [k for k, _ in knobs if k.target == CONSUMER])
    total = len(settings_list) * repeat
    n = 0
    try:
        for setting in settings_list:
            tuned = settings.model_copy(update=field_updates(setting))
            if touches(setting, CONNECTOR):
                say(f"[{label(setting)}] reconfiguring the Debezium connector")
                _apply_connector(tuned)
            for name, value in setting.items():
                knob = lookup(name)
                if knob.target == CONSUMER:
                    os.environ[knob.env] = str(value)
            for run in range(1, repeat + 1):
                n += 1
                named = replace(scenario, name=run_name(scenario.name, setting, run, repeat))
                say(f"step {n}/{total}: {label(setting)} (run {run}/{repeat})")
                view = RunView(say=lambda msg: say(f"  {msg}"))
                outcome = run_scenario(tuned, named, view=view, plots=False)
                point = point_of(outcome, setting, run)
                sweep.outcomes.append(outcome)
                section.points.append(point)
                say(
                    f"  -> p50 {point.p50_ms:.1f} ms, p95 {point.p95_ms:.1f} ms, p99 "
                    f"{point.p99_ms:.1f} ms, {point.throughput_eps:.0f} row changes/s, "
                    f"integrity {'ok' if point.integrity_ok and point.delivered else 'FAILED'}"
                )
    except BaseException as exc:
        section.interrupted = _why(exc)
        raise SweepInterrupted(sweep, exc) from exc
    finally:
        restore.restore(say)
    return sweep


class SweepInterrupted(Exception):
    """The sweep stopped early; ``partial`` holds the runs it finished."""

    def __init__(self, partial: SweepRun, cause: BaseException) -> None:
        super().__init__(_why(cause))
        self.partial = partial
        self.cause = cause


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    one_line = getattr(exc, "one_line", None)
    return one_line() if callable(one_line) else f"{type(exc).__name__}: {exc}"


def _apply_connector(tuned: Settings) -> None:
    from event_processor.stack.connect import connector_config, register_connector

    register_connector(tuned, config=connector_config(tuned))
    _wait_settled(tuned)


def _wait_settled(settings: Settings, timeout_s: float = 60.0) -> None:
    """Right after a PUT, Connect may still report the old task while it restarts it:
    wait until the whole stack reports healthy twice in a row, half a second apart."""
    import time

    from event_processor.errors import EventProcessorError
    from event_processor.perf.harness import check_stack

    deadline = time.monotonic() + timeout_s
    healthy = 0
    while True:
        try:
            check_stack(settings)
            healthy += 1
        except EventProcessorError:
            healthy = 0
            if time.monotonic() > deadline:
                raise
        if healthy >= 2:
            return
        time.sleep(0.5)


class _Restorer:
    """Remembers the connector's config and the consumer knobs' environment."""

    def __init__(self, settings: Settings, connector: bool, consumer: list[Knob]) -> None:
        from event_processor.stack.connect import current_connector_config

        self.settings = settings
        self.config: dict[str, str] | None = None
        if connector:
            from event_processor.stack.connect import connector_config

            # Not registered yet: "original" is what `stack up` would register.
            self.config = current_connector_config(settings) or connector_config(settings)
        self.env = {k.env: os.environ.get(k.env) for k in consumer}

    def restore(self, say: Say) -> None:
        for name, value in self.env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self.config is not None:
            from event_processor.stack.connect import register_connector

            say("restoring the connector's original configuration")
            register_connector(self.settings, config=self.config)
