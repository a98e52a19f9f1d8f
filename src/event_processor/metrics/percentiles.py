"""The one percentile rule of the project: reports, gates, dashboard, plots and capacity.

**Nearest rank**: the p-th percentile of n samples is the sample at rank
``ceil(p/100 * n)`` (counted from 1, at least 1) of the ascending samples. It is always
an observed value, never an interpolation. The rank is computed with exact rational
arithmetic: ``99.9 / 100 * 1000`` must be rank 999, not a float that rounds up to 1000.

HdrHistogram's own ``get_value_at_percentile`` rounds the rank half up instead
(``int(p/100 * n + 0.5)``: rank 1,049 of 1,060 at p99 where this rule says 1,050), so
the live histogram below is read with this rule too: the dashboard and the report then
pick the same rank, and differ only by the histogram's bucket width (3 significant
digits: at most 0.1 %, and none below 2,048 µs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

# Report order of the percentile fields: name -> percent.
PERCENTILES: dict[str, float] = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}

# Live histograms: 1 µs .. 60 s at 3 significant digits (0.1 % value error).
HISTOGRAM_LOWEST_US = 1
HISTOGRAM_HIGHEST_US = 60_000_000
HISTOGRAM_SIGNIFICANT_DIGITS = 3


def rank(percent: float, n: int) -> int:
    """1-based nearest rank of ``percent`` among ``n`` samples (n > 0)."""
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"percentile {percent} is outside 0..100")
    # Fraction(str(...)) reads 99.9 as 999/10 exactly, keeping the rank integral.
    return max(math.ceil(Fraction(str(percent)) * n / 100), 1)


def ranks(fractions: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.int64]:
    """Vectorised :func:`rank` for plots: ``fractions`` in 0..1, many points at once."""
    return np.clip(np.ceil(fractions * n).astype(np.int64), 1, n)


def nearest_rank(sorted_values: Sequence[int] | npt.NDArray[np.int64], percent: float) -> int:
    """Nearest-rank percentile of an ascending, non-empty sample set."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("no samples")
    return int(sorted_values[rank(percent, n) - 1])


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HISTOGRAM_LOWEST_US, HISTOGRAM_HIGHEST_US, HISTOGRAM_SIGNIFICANT_DIGITS)


def histogram_percentiles_us(hist: HdrHistogram, percents: Sequence[float]) -> list[int]:
    """Percentiles of a live histogram with the nearest-rank rule above.

    The value is the highest value of the bucket holding that rank (what HdrHistogram
    reports), found in one vectorised pass instead of a Python loop over ~17k buckets.
    """
    total = int(hist.get_total_count())
    if total == 0:
        return [0 for _ in percents]
    counts = np.ctypeslib.as_array(hist.counts)  # zero-copy view of the counters
    cumulative = np.cumsum(counts)
    targets = [rank(p, total) for p in percents]
    indexes = np.searchsorted(cumulative, targets, side="left")
    return [
        int(hist.get_highest_equivalent_value(hist.get_value_from_index(int(i)))) for i in indexes
    ]
