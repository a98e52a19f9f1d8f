"""Capacity: the highest offered rate the pipeline sustains, found by a rate search.

Like the OpenMessaging Benchmark's rate controller, the search ramps the offered rate up
geometrically while steps are good, then bisects between the last good and the first
bad rate until they are within ``precision`` of each other (or the step budget is
spent). Each step is a fixed-duration open-loop run (``run_scenario`` with
``events = rate x duration``) from a clean state.

A step is good when all of these hold (``step_verdict``):

- delivered: every committed row change reached MongoDB within the delivery timeout,
  and the integrity verifier found nothing;
- p99 within the SLO: end-to-end p99 <= the target (default: the scenarios' p99);
- the consumer kept up: the applied rate (business events from the first commit to the
  last MongoDB ack) is at least ``MIN_APPLIED_RATIO`` of the offered rate;
- the backlog did not grow: the mean backlog (row changes committed in PostgreSQL but
  not yet acknowledged by MongoDB) over the last quarter of the load window exceeds
  that over the second quarter by at most ``MAX_BACKLOG_GROWTH`` of the offered row
  rate per second of window (a steady pipeline holds rate x latency in flight, flat).

Rates are business events per second (generator transactions); each writes about two
row changes, so row-change rates are reported next to them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from event_processor.errors import ConfigError
from event_processor.metrics.scenarios import Scenario
from event_processor.metrics.timing import SendRecord, TimingRecord
from event_processor.report.schema import CapacitySection, CapacityStep
from event_processor.settings import Settings

if TYPE_CHECKING:
    from event_processor.perf.harness import ScenarioOutcome

MIN_APPLIED_RATIO = 0.9
MAX_BACKLOG_GROWTH = 0.05
MIN_SENT_RATIO = 0.9
BACKLOG_SAMPLES = 400


@dataclass
class RateSearch:
    """The rate controller: ``next_rate()`` until None, ``record(rate, ok)`` after each."""

    start: float
    maximum: float
    factor: float = 2.0
    precision: float = 0.1  # stop when (bad - good) <= precision x good
    minimum: float = 1.0
    max_steps: int = 12
    good: float | None = None
    bad: float | None = None
    steps: int = 0

    def __post_init__(self) -> None:
        if not self.start > 0:
            raise ConfigError("capacity", f"--start must be above 0, got {self.start:g}")
        if self.maximum < self.start:
            raise ConfigError("capacity", f"--max ({self.maximum:g}) is below --start "
                              f"({self.start:g})", "raise --max or lower --start")  # fmt: skip
        if not self.factor > 1:
            raise ConfigError("capacity", f"the ramp factor must be above 1, got {self.factor:g}")

    def next_rate(self) -> float | None:
        if self.steps >= self.max_steps:
            return None
        if self.bad is None:  # ramping up
            if self.good is None:
                return self.start
            if self.good >= self.maximum:
                return None
            return _whole(min(self.good * self.factor, self.maximum))
        if self.good is None:  # even the first rate was too much: ramp down
            lower = _whole(self.bad / self.factor)
            return lower if lower >= self.minimum and lower < self.bad else None
        if self.bad - self.good <= self.precision * self.good:
            return None
        mid = _whole((self.good + self.bad) / 2)
        return mid if self.good < mid < self.bad else None

    def record(self, rate: float, ok: bool) -> None:
        self.steps += 1
        if ok:
            self.good = rate if self.good is None else max(self.good, rate)
            return
        if self.good is not None and rate <= self.good:
            # A failure at or below a rate that passed: that pass was luck. Search below.
            self.good = None
        self.bad = rate if self.bad is None else min(self.bad, rate)

    @property
    def capacity(self) -> float:
        """The highest good rate (0 when none was)."""
        return self.good or 0.0


def _whole(rate: float) -> float:
    return float(round(rate)) if rate >= 10 else round(rate, 2)


def backlog_curve(
    t0_us: Sequence[int] | np.ndarray, t5_us: Sequence[int] | np.ndarray, samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """(seconds from the first commit, row changes committed but not yet applied) at
    ``samples`` evenly spaced instants across the commit window."""
    t0 = np.sort(np.asarray(t0_us, dtype=np.int64))
    t5 = np.sort(np.asarray(t5_us, dtype=np.int64))
    if t0.size == 0:
        return np.empty(0), np.empty(0)
    at = np.linspace(float(t0[0]), float(t0[-1]), samples)
    backlog = np.searchsorted(t0, at, side="right") - np.searchsorted(t5, at, side="right")
    return (at - t0[0]) / 1e6, backlog.astype(float)


def backlog_growth(seconds: np.ndarray, backlog: np.ndarray) -> tuple[float, float, float]:
    """(mean backlog in the 2nd quarter, in the last quarter, growth in rows/s)."""
    if seconds.size < 4 or seconds[-1] <= 0:
        return 0.0, 0.0, 0.0
    span = float(seconds[-1])
    q2 = backlog[(seconds >= span * 0.25) & (seconds < span * 0.5)]
    q4 = backlog[seconds >= span * 0.75]
    mid = float(q2.mean()) if q2.size else 0.0
    end = float(q4.mean()) if q4.size else 0.0
    return mid, end, (end - mid) / (span * 0.5)


@dataclass(slots=True)
class StepFigures:
    """What one step measured; the inputs of ``step_verdict``."""

    rate: float  # offered business events/s
    events: int
    rows_per_event: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    applied_rate: float  # business events/s, first commit to last ack
    applied_row_rate: float  # row changes/s, the same span
    sent_rate: float  # business events/s the generator actually started
    backlog_mid: float
    backlog_end: float
    backlog_growth: float  # row changes/s
    schedule_lag_p99_ms: float
    delivered: bool
    integrity_ok: bool
    committed_rows: int = 0
    applied_rows: int = 0
    curve: list[tuple[float, float]] = field(default_factory=list)

    @property
    def row_rate(self) -> float:
        return self.rate * self.rows_per_event


def step_verdict(f: StepFigures, p99_slo_ms: float) -> tuple[bool, list[str]]:
    """(good, reasons it is not) of one step, by the criteria of the module docstring."""
    reasons: list[str] = []
    if not f.delivered:
        reasons.append(f"only {f.applied_rows} of {f.committed_rows} row changes delivered")
    if not f.integrity_ok:
        reasons.append("integrity verifier failed")
    if f.p99_ms > p99_slo_ms:
        reasons.append(f"p99 {f.p99_ms:.1f} ms > {p99_slo_ms:g} ms")
    if f.applied_rate < MIN_APPLIED_RATIO * f.rate:
        reasons.append(f"applied {f.applied_rate:.0f}/s < {MIN_APPLIED_RATIO:.0%} of "
                       f"{f.rate:g}/s offered")  # fmt: skip
    limit = MAX_BACKLOG_GROWTH * f.row_rate
    if f.backlog_growth > limit:
        reasons.append(f"backlog grew {f.backlog_growth:.0f} rows/s (limit {limit:.0f})")
    if f.sent_rate < MIN_SENT_RATIO * f.rate:
        reasons.append(f"the generator fell behind: sent {f.sent_rate:.0f}/s "
                       f"(schedule lag p99 {f.schedule_lag_p99_ms:.0f} ms)")  # fmt: skip
    return not reasons, reasons


def step_figures(
    rate: float,
    sends: Sequence[SendRecord],
    timings: Sequence[TimingRecord],
    *,
    p50_ms: float,
    p95_ms: float,
    p99_ms: float,
    delivered: bool,
    integrity_ok: bool,
) -> StepFigures:
    """The figures of one step from its raw records (first commit = start of window)."""
    events = len(sends)
    committed = sum(s.rows for s in sends)
    rows_per_event = committed / events if events else 0.0
    first: dict[str, TimingRecord] = {}
    for t in timings:  # one record per row change (the first ack), as the stats do
        seen = first.get(t.correlation_id)
        if seen is None or t.t5_us < seen.t5_us:
            first[t.correlation_id] = t
    records = list(first.values())
    t0 = [r.t0_us for r in records]
    t5 = [r.t5_us for r in records]
    applied_rate = applied_row_rate = 0.0
    if records:
        span_s = (max(t5) - min(t0)) / 1e6
        if span_s > 0:
            applied_row_rate = len(records) / span_s
            tx = {r.tx_id for r in records}
            applied_rate = sum(1 for s in sends if s.tx_id in tx) / span_s
    sent_rate = 0.0
    if sends:
        # From the first intended send to the last actual one, plus one interval.
        span_s = (max(s.sent_us for s in sends) - min(s.intended_us for s in sends)) / 1e6
        sent_rate = events / (span_s + 1.0 / rate)
    lags = sorted(s.schedule_lag_us for s in sends)
    lag_p99 = lags[max(math.ceil(0.99 * len(lags)), 1) - 1] / 1000.0 if lags else 0.0
    seconds, backlog = backlog_curve(t0, t5, BACKLOG_SAMPLES)
    mid, end, growth = backlog_growth(seconds, backlog)
    step = max(1, len(seconds) // 40)  # ~40 points of the curve for the report
    return StepFigures(
        rate=rate,
        events=events,
        rows_per_event=round(rows_per_event, 3),
        p50_ms=p50_ms,
        p95_ms=p95_ms,
        p99_ms=p99_ms,
        applied_rate=round(applied_rate, 2),
        applied_row_rate=round(applied_row_rate, 2),
        sent_rate=round(sent_rate, 2),
        backlog_mid=round(mid, 2),
        backlog_end=round(end, 2),
        backlog_growth=round(growth, 2),
        schedule_lag_p99_ms=round(lag_p99, 3),
        delivered=delivered,
        integrity_ok=integrity_ok,
        committed_rows=committed,
        applied_rows=len(records),
        curve=[
            (round(float(s), 3), float(b))
            for s, b in zip(seconds[::step], backlog[::step], strict=True)
        ],
    )


def search(
    run_step: Callable[[float], tuple[bool, object]],
    controller: RateSearch,
    on_step: Callable[[float, bool, object], None] | None = None,
) -> list[tuple[float, bool, object]]:
    """Drive ``controller`` with ``run_step(rate) -> (good, detail)``; returns the steps."""
    steps: list[tuple[float, bool, object]] = []
    while (rate := controller.next_rate()) is not None:
        ok, detail = run_step(rate)
        controller.record(rate, ok)
        steps.append((rate, ok, detail))
        if on_step is not None:
            on_step(rate, ok, detail)
    return steps


# --- the run ------------------------------------------------------------------------------


@dataclass
class CapacityRun:
    section: CapacitySection
    outcomes: list[ScenarioOutcome] = field(default_factory=list)


class CapacityInterrupted(Exception):
    """The search stopped early; ``partial`` holds the steps it finished."""

    def __init__(self, partial: CapacityRun, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.partial = partial
        self.cause = cause


def criteria() -> dict[str, float]:
    return {
        "min applied/offered": MIN_APPLIED_RATIO,
        "max backlog growth (fraction of offered row rate)": MAX_BACKLOG_GROWTH,
        "min sent/offered": MIN_SENT_RATIO,
    }


def step_scenario(rate: float, duration_s: float, seed: int, p99_ms: float) -> Scenario:
    events = max(1, round(rate * duration_s))
    return Scenario(
        name=f"capacity@{rate:g}/s",
        events=events,
        rate=rate,
        seed=seed,
        # Room to drain an overloaded step: it is then judged bad, not aborted.
        delivery_timeout_s=max(30.0, 3 * duration_s),
        description=f"capacity step: {events} events at {rate:g}/s",
        slos={"p99": p99_ms},
    )


def limited_by(steps: Sequence[CapacityStep], controller: RateSearch) -> str:
    bad = [s for s in steps if not s.good]
    if controller.good is not None and controller.good >= controller.maximum:
        return f"reached --max {controller.maximum:g}/s without a bad step"
    if not bad:
        return "the step budget ran out"
    first = min(bad, key=lambda s: s.rate)
    return f"at {first.rate:g}/s: " + "; ".join(first.reasons)


def run_capacity(
    settings: Settings,
    controller: RateSearch,
    *,
    duration_s: float,
    p99_ms: float,
    seed: int = 42,
    say: Callable[[str], None] = lambda _msg: None,
) -> CapacityRun:
    """Search the highest good rate; every step is a fresh ``run_scenario``."""
    from event_processor.perf.harness import RunView, run_scenario

    section = CapacitySection(
        capacity_rate=0.0,
        capacity_row_rate=0.0,
        first_bad_rate=None,
        limited_by="",
        p99_slo_ms=p99_ms,
        duration_s=duration_s,
        start=controller.start,
        maximum=controller.maximum,
        criteria=criteria(),
    )
    run = CapacityRun(section)

    def step(rate: float) -> tuple[bool, object]:
        scenario = step_scenario(rate, duration_s, seed, p99_ms)
        say(f"step {controller.steps + 1}: {scenario.events} events at {rate:g}/s "
            f"for {duration_s:g} s")  # fmt: skip
        view = RunView(say=lambda msg: say(f"  {msg}"))
        outcome = run_scenario(settings, scenario, view=view, plots=False)
        run.outcomes.append(outcome)
        e2e = outcome.stats.end_to_end
        figures = step_figures(
            rate, outcome.sends, outcome.timings, p50_ms=e2e.p50, p95_ms=e2e.p95,
            p99_ms=e2e.p99, delivered=outcome.delivered, integrity_ok=outcome.verify.ok,
        )  # fmt: skip
        ok, reasons = step_verdict(figures, p99_ms)
        section.steps.append(capacity_step(figures, scenario.name, ok, reasons))
        verdict = "good" if ok else "bad: " + "; ".join(reasons)
        say(f"  -> p50 {e2e.p50:.1f} ms, p99 {e2e.p99:.1f} ms, applied "
            f"{figures.applied_rate:.0f}/s of {rate:g}/s ({figures.row_rate:.0f} rows/s), "
            f"backlog {figures.backlog_mid:.0f} -> {figures.backlog_end:.0f} rows: "
            f"{verdict}")  # fmt: skip
        return ok, figures

    try:
        search(step, controller)
    except BaseException as exc:
        section.interrupted = (
            "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
        )
        _conclude(section, controller)
        raise CapacityInterrupted(run, exc) from exc
    _conclude(section, controller)
    return run


def _conclude(section: CapacitySection, controller: RateSearch) -> None:
    section.capacity_rate = controller.capacity
    good = [s for s in section.steps if s.good and s.rate == controller.capacity]
    rows_per_event = good[0].row_rate / good[0].rate if good else 0.0
    section.capacity_row_rate = round(controller.capacity * rows_per_event, 1)
    bad = [s.rate for s in section.steps if not s.good]
    section.first_bad_rate = min(bad) if bad else None
    section.limited_by = limited_by(section.steps, controller)


def capacity_step(f: StepFigures, scenario: str, ok: bool, reasons: list[str]) -> CapacityStep:
    return CapacityStep(
        rate=f.rate,
        row_rate=round(f.row_rate, 1),
        events=f.events,
        scenario=scenario,
        p50_ms=f.p50_ms,
        p95_ms=f.p95_ms,
        p99_ms=f.p99_ms,
        applied_rate=f.applied_rate,
        applied_row_rate=f.applied_row_rate,
        sent_rate=f.sent_rate,
        backlog_mid=f.backlog_mid,
        backlog_end=f.backlog_end,
        backlog_growth=f.backlog_growth,
        schedule_lag_p99_ms=f.schedule_lag_p99_ms,
        delivered=f.delivered,
        integrity_ok=f.integrity_ok,
        good=ok,
        reasons=reasons,
        backlog_curve=f.curve,
    )
