"""Was a run's load offered as planned, and was the host saturated?

A verdict on the pipeline needs a valid run. The generator is open loop: each event has
an intended send time fixed before the run; when the generator itself falls behind
(too few connections, a starved process), the pipeline saw less load than planned and
its latency figures describe another experiment. Such a run is INVALID, neither passed
nor failed on its latency gates. A saturated host is not an excuse: the stack and the
harness are the pipeline's cost, so such a run keeps its gate verdicts and the verdict
only says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Achieved offered rate below this share of the planned rate: not offered as planned.
MIN_OFFERED_SHARE = 0.95
# The generator's schedule lag (actual send - intended send) p99 above this: the load
# bunched up behind the schedule (coordinated omission), not offered as planned.
MAX_SCHEDULE_LAG_P99_MS = 50.0
# Host utilisation (all cores, from /proc/stat) above this share: saturated.
SATURATED_BUSY_SHARE = 0.90


@dataclass(slots=True)
class Validity:
    valid: bool
    planned_rate: float | None
    offered_rate: float | None
    schedule_lag_p99_ms: float | None
    host_busy_pct: float | None
    saturated: bool
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "planned_rate": self.planned_rate,
            "offered_rate": None if self.offered_rate is None else round(self.offered_rate, 1),
            "schedule_lag_p99_ms": self.schedule_lag_p99_ms,
            "host_busy_pct": self.host_busy_pct,
            "saturated": self.saturated,
            "reasons": self.reasons,
        }


def offered_rate(sent_us: Sequence[int], intended_us: Sequence[int]) -> float | None:
    """Events per second as actually sent: (n - 1) events over the span from the first
    intended send to the last actual send (the run cannot start before its schedule)."""
    if len(sent_us) < 2:
        return None
    span_s = (max(sent_us) - min(intended_us)) / 1e6
    return (len(sent_us) - 1) / span_s if span_s > 0 else None


def judge(
    planned_rate: float | None,
    sent_us: Sequence[int],
    intended_us: Sequence[int],
    schedule_lag_p99_ms: float | None,
    host_busy_share: float | None,
) -> Validity:
    achieved = offered_rate(sent_us, intended_us)
    reasons: list[str] = []
    if planned_rate and achieved is not None and achieved < MIN_OFFERED_SHARE * planned_rate:
        reasons.append(
            f"load offered at {achieved:.0f}/s, below {MIN_OFFERED_SHARE:.0%} of the planned "
            f"{planned_rate:g}/s"
        )
    if schedule_lag_p99_ms is not None and schedule_lag_p99_ms > MAX_SCHEDULE_LAG_P99_MS:
        reasons.append(
            f"generator schedule lag p99 {schedule_lag_p99_ms:.1f} ms > "
            f"{MAX_SCHEDULE_LAG_P99_MS:g} ms"
        )
    saturated = host_busy_share is not None and host_busy_share > SATURATED_BUSY_SHARE
    return Validity(
        valid=not reasons,
        planned_rate=planned_rate,
        offered_rate=achieved,
        schedule_lag_p99_ms=schedule_lag_p99_ms,
        host_busy_pct=None if host_busy_share is None else round(100 * host_busy_share, 1),
        saturated=saturated,
        reasons=reasons,
    )
