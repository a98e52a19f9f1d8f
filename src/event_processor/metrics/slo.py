"""SLO definitions, parsing and gates; baseline regression checks.

Targets are kept in one canonical unit per metric: milliseconds for the latency
percentiles, events/s for throughput, percent for success and integrity. A misspelled
metric name or an unreadable value is an ``SloError``, never a silently passing gate.

Latency gates are statistical and integrity gates are deterministic: every gate carries a
``kind`` ("latency" | "throughput" | "integrity") so callers can report and fail them apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from event_processor.errors import ConfigError
from event_processor.metrics.stats import RunStats

GateKind = Literal["latency", "throughput", "integrity"]


@dataclass(slots=True, frozen=True)
class MetricSpec:
    name: str
    kind: GateKind
    comparison: str  # how measured must relate to target for the gate to pass
    unit: str
    label: str  # how messages name it
    higher_is_better: bool


# Upper bounds are strict ("p99 < 200 ms"), lower bounds too ("throughput > 100 events/s");
# integrity cannot exceed 100 %, so its bound is inclusive.
METRICS: dict[str, MetricSpec] = {
    "p50": MetricSpec("p50", "latency", "<", "ms", "e2e p50", False),
    "p95": MetricSpec("p95", "latency", "<", "ms", "e2e p95", False),
    "p99": MetricSpec("p99", "latency", "<", "ms", "e2e p99", False),
    "p999": MetricSpec("p999", "latency", "<", "ms", "e2e p99.9", False),
    "max": MetricSpec("max", "latency", "<", "ms", "e2e max", False),
    # From the intended send time (stats.RunStats.from_intended): a late generator counts.
    "intended_p50": MetricSpec(
        "intended_p50", "latency", "<", "ms", "e2e from intended p50", False
    ),
    "intended_p95": MetricSpec(
        "intended_p95", "latency", "<", "ms", "e2e from intended p95", False
    ),
    "intended_p99": MetricSpec(
        "intended_p99", "latency", "<", "ms", "e2e from intended p99", False
    ),
    "throughput": MetricSpec("throughput", "throughput", ">", "row changes/s", "throughput", True),
    "success": MetricSpec("success", "integrity", ">", "%", "success", True),
    "integrity": MetricSpec("integrity", "integrity", ">=", "%", "integrity", True),
}
VALID_NAMES = ", ".join(METRICS)

# Metrics a baseline comparison can track (integrity is absolute, never relative).
BASELINE_METRICS = (
    "p50", "p95", "p99", "p999", "max", "intended_p50", "intended_p95", "intended_p99",
    "throughput", "success",
)  # fmt: skip
_INTENDED = {"intended_p50": "p50", "intended_p95": "p95", "intended_p99": "p99"}

SloTargets = dict[str, float]


class SloError(ConfigError, ValueError):
    """A bad SLO or tolerance: one line naming the problem and its fix (the valid names
    for a bad name, the accepted spellings for a bad value)."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__("slo", problem, fix or f"valid names: {VALID_NAMES}")


# The fix for a value that is not one (the name was fine).
VALUE_FIX = "write a latency as 150ms, 0.2s or 900us, a rate as 900 or 900rows/s, a share as 99.9%"


_NUMBER = r"[+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_VALUE_RE = re.compile(rf"^\s*({_NUMBER})\s*([a-zA-Zµ%/]*)\s*$")
_LATENCY_UNITS = {"": 1.0, "ms": 1.0, "s": 1000.0, "us": 0.001, "µs": 0.001}
# Row changes applied per second; "events/s" is the older spelling, still accepted.
_THROUGHPUT_UNITS = {"", "eps", "/s", "events/s", "rows/s"}


def _split_number(name: str, value: str) -> tuple[float, str]:
    match = _VALUE_RE.match(value)
    if match is None:
        raise SloError(
            f"{name}: cannot read {value!r} as a number with an optional unit", VALUE_FIX
        )
    number = float(match.group(1))
    if not math.isfinite(number):
        raise SloError(f"{name}: {value!r} is not a finite number", VALUE_FIX)
    return number, match.group(2).lower()


def _percent(name: str, number: float, unit: str, raw: str) -> float:
    if unit == "%":
        percent = number
    elif unit == "":
        # A bare number up to 1 is a fraction (0.999); above 1 it is already percent.
        percent = number * 100.0 if number <= 1.0 else number
    else:
        raise SloError(f"{name}: unit of {raw!r} must be % or none", VALUE_FIX)
    if not 0.0 <= percent <= 100.0:
        raise SloError(f"{name}: {raw!r} is outside 0..100 %", VALUE_FIX)
    return percent


def parse_target(name: str, value: str | float | int) -> float:
    """A target in the metric's canonical unit (ms, events/s or percent)."""
    spec = METRICS.get(name.strip().lower())
    if spec is None:
        raise SloError(f"unknown SLO metric {name!r}")
    if isinstance(value, bool):
        raise SloError(f"{spec.name}: {value!r} is not a number", VALUE_FIX)
    raw = str(value)
    number, unit = _split_number(spec.name, raw)
    if spec.unit == "ms":
        if unit not in _LATENCY_UNITS:
            raise SloError(f"{spec.name}: unit of {raw!r} must be ms, s or us", VALUE_FIX)
        target = number * _LATENCY_UNITS[unit]
    elif spec.unit == "row changes/s":
        if unit not in _THROUGHPUT_UNITS:
            raise SloError(
                f"{spec.name}: unit of {raw!r} must be rows/s (row changes per second) or none",
                VALUE_FIX,
            )
        target = number
    else:
        target = _percent(spec.name, number, unit, raw)
    if spec.unit == "ms" and target <= 0:
        raise SloError(f"{spec.name}: a latency target must be above 0, got {raw!r}", VALUE_FIX)
    return target


def parse_slo(text: str) -> tuple[str, float]:
    """``"p99=150ms"`` -> ``("p99", 150.0)``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise SloError(f"expected NAME=VALUE (e.g. p99=150ms), got {text!r}", VALUE_FIX)
    key = name.strip().lower()
    return key, parse_target(key, value.strip())


def _comma_items(items: str | Iterable[str]) -> list[str]:
    """The non-empty items of option strings that may each hold several, comma-separated."""
    texts = [items] if isinstance(items, str) else list(items)
    return [part.strip() for text in texts for part in text.split(",") if part.strip()]


def parse_overrides(items: str | Iterable[str]) -> SloTargets:
    """SLO overrides from strings; each may hold several comma-separated NAME=VALUE."""
    return dict(parse_slo(part) for part in _comma_items(items))


def validate_targets(raw: Mapping[str, Any]) -> SloTargets:
    """Targets from data (TOML): numbers in canonical units or strings with units."""
    return {name.strip().lower(): parse_target(name, value) for name, value in raw.items()}


def merge_targets(base: Mapping[str, float], overrides: Mapping[str, float]) -> SloTargets:
    merged = dict(base)
    merged.update(overrides)
    return merged


@dataclass(slots=True, frozen=True)
class GateResult:
    """The outcome of one SLO gate or baseline check."""

    name: str
    kind: GateKind
    measured: float | None  # None: nothing to measure (no samples), which fails
    target: float
    comparison: str
    passed: bool
    message: str
    unit: str = ""
    scenario: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _compare(measured: float, comparison: str, target: float) -> bool:
    if comparison == "<":
        return measured < target
    if comparison == "<=":
        return measured <= target
    if comparison == ">":
        return measured > target
    if comparison == ">=":
        return measured >= target
    raise ValueError(f"unknown comparison {comparison!r}")


def format_value(value: float, unit: str) -> str:
    """Latency and throughput to 0.1; percentages keep the digits that decide a gate."""
    if unit == "%":
        return f"{value:.6g} %"
    return f"{value:.1f} {unit}"


def _format_target(value: float, unit: str) -> str:
    return f"{value:g} {unit}"


def _measure(stats: RunStats, name: str, integrity_pct: float | None) -> float | None:
    if name in ("p50", "p95", "p99", "p999", "max"):
        if stats.end_to_end.count == 0:
            return None
        return float(getattr(stats.end_to_end, name))
    if name in _INTENDED:
        if stats.from_intended.count == 0:
            return None
        return float(getattr(stats.from_intended, _INTENDED[name]))
    if name == "throughput":
        return stats.throughput_eps if stats.applied else None
    if name == "success":
        if not stats.committed:
            return None
        return stats.applied * 100.0 / stats.committed  # exact for e.g. 999/1000
    return integrity_pct


def gate(name: str, measured: float | None, target: float, scenario: str = "") -> GateResult:
    """One gate: ``"stress: e2e p99 = 212.4 ms, target < 200 ms: FAILED"``."""
    spec = METRICS[name]
    passed = measured is not None and _compare(measured, spec.comparison, target)
    shown = "n/a (nothing measured)" if measured is None else format_value(measured, spec.unit)
    prefix = f"{scenario}: " if scenario else ""
    message = (
        f"{prefix}{spec.label} = {shown}, target {spec.comparison} "
        f"{_format_target(target, spec.unit)}: {'PASSED' if passed else 'FAILED'}"
    )
    return GateResult(
        name, spec.kind, measured, target, spec.comparison, passed, message, spec.unit, scenario
    )


def evaluate(
    stats: RunStats,
    slos: Mapping[str, float],
    *,
    scenario: str = "",
    integrity_pct: float | None = None,
) -> list[GateResult]:
    """Gate a run against its SLOs, in METRICS order.

    The integrity gate needs the verifier's figure (``integrity_pct``); without it that
    gate is left out, since integrity is asserted by its own deterministic checks.
    """
    unknown = [name for name in slos if name not in METRICS]
    if unknown:
        raise SloError(f"unknown SLO metric {unknown[0]!r}")
    results = []
    for name in METRICS:
        if name not in slos or (name == "integrity" and integrity_pct is None):
            continue
        results.append(gate(name, _measure(stats, name, integrity_pct), slos[name], scenario))
    return results


def failed(results: Iterable[GateResult], kind: GateKind | None = None) -> list[GateResult]:
    """The failed gates, optionally of one kind."""
    return [r for r in results if not r.passed and (kind is None or r.kind == kind)]


# --- baseline comparison -------------------------------------------------------------


def parse_tolerance(text: str) -> tuple[str, float]:
    """``"p95:15%"`` -> ``("p95", 15.0)`` (percent of the baseline value)."""
    name, sep, value = text.partition(":")
    key = name.strip().lower()
    if not sep or not key or not value.strip():
        raise SloError(
            f"expected NAME:PERCENT (e.g. p95:15%), got {text!r}",
            "write a tolerance as NAME:PERCENT, e.g. p95:15%",
        )
    if key not in METRICS:
        raise SloError(f"unknown SLO metric {key!r} in tolerance {text!r}")
    if key not in BASELINE_METRICS:
        raise SloError(f"{key} is checked absolutely and takes no baseline tolerance")
    number, unit = _split_number(key, value.strip())
    if unit not in ("%", ""):
        raise SloError(
            f"{key}: tolerance {value.strip()!r} must be a percentage",
            "write a tolerance as NAME:PERCENT, e.g. p95:15%",
        )
    return key, number


def parse_tolerances(items: str | Iterable[str]) -> dict[str, float]:
    """Tolerances from strings; each may hold several comma-separated NAME:PERCENT."""
    return dict(parse_tolerance(part) for part in _comma_items(items))


def metric_value(figures: Mapping[str, Any], name: str) -> float | None:
    """A metric from a RunStats.to_dict() or a report scenario entry (same keys)."""
    if name in ("p50", "p95", "p99", "p999", "max") or name in _INTENDED:
        key = "e2e_from_intended_ms" if name in _INTENDED else "e2e_ms"
        e2e = figures.get(key) or {}
        if not e2e.get("count", 1):
            return None
        value = e2e.get(_INTENDED.get(name, name))
    elif name == "throughput":
        value = figures.get("throughput_eps")
    elif name == "success":
        rate = figures.get("success_rate")
        value = None if rate is None else float(rate) * 100.0
    else:
        raise SloError(f"{name} takes no baseline comparison")
    return None if value is None else float(value)


def compare_to_baseline(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    tolerances: Mapping[str, float],
    *,
    scenario: str = "",
) -> list[GateResult]:
    """Regression checks of current figures against a baseline run's.

    A latency regresses when it exceeds baseline * (1 + tol %); throughput and success
    regress when they fall below baseline * (1 - tol %). A metric missing from the
    baseline fails its check rather than passing unseen.
    """
    results = []
    for name, tol in tolerances.items():
        if name not in BASELINE_METRICS:
            raise SloError(f"{name!r} takes no baseline tolerance")
        results.append(_baseline_gate(name, current, baseline, tol, scenario))
    return results


def _baseline_gate(
    name: str,
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    tol: float,
    scenario: str,
) -> GateResult:
    spec = METRICS[name]
    now, before = metric_value(current, name), metric_value(baseline, name)
    sign = -1.0 if spec.higher_is_better else 1.0
    comparison = ">=" if spec.higher_is_better else "<="
    limit = math.nan if before is None else before * (1.0 + sign * tol / 100.0)
    passed = now is not None and before is not None and _compare(now, comparison, limit)
    prefix = f"{scenario}: " if scenario else ""
    if now is None or before is None:
        missing = "current run" if now is None else "baseline"
        message = f"{prefix}{spec.label}: no value in the {missing}: REGRESSION CHECK FAILED"
    else:
        change = (now - before) * 100.0 / before if before else math.inf
        message = (
            f"{prefix}{spec.label} = {format_value(now, spec.unit)} vs baseline "
            f"{format_value(before, spec.unit)} ({change:+.1f} %, allowed "
            f"{'-' if spec.higher_is_better else '+'}{tol:g} %): "
            f"{'OK' if passed else 'REGRESSION'}"
        )
    return GateResult(name, spec.kind, now, limit, comparison, passed, message, spec.unit, scenario)
