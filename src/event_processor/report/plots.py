"""Report figures as PNG bytes (matplotlib, Agg canvas, no pyplot global state).

Every function takes plain numbers (ms) or report dictionaries, so figures can be drawn
from a live run's samples or from a stored JSON document alike.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from event_processor.metrics.percentiles import rank, ranks
from event_processor.metrics.stats import STAGE_NAMES, RunStats

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIZE = (7.0, 3.6)
# Twice the pixels of the size shown (the page draws them at most 700 px wide): sharp on
# high-density screens.
_DPI = 200
_SLO_COLOURS = {"p50": "tab:green", "p95": "tab:orange", "p99": "tab:red", "p999": "tab:purple"}


def _new_figure() -> Figure:
    fig = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: rendering needs no display and no pyplot
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    """Embed a PNG in HTML without a separate file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _no_data(fig: Figure, title: str) -> bytes:
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return _png(fig)


def _slo_lines(ax: Axes, slos: Mapping[str, float] | None, vertical: bool) -> None:
    for name, target in (slos or {}).items():
        colour = _SLO_COLOURS.get(name)
        if colour is None:
            continue
        label = f"SLO {name} < {target:g} ms"
        if vertical:
            ax.axvline(target, color=colour, linestyle="--", linewidth=1, label=label)
        else:
            ax.axhline(target, color=colour, linestyle="--", linewidth=1, label=label)


def latency_histogram(
    samples_ms: Sequence[float] | np.ndarray,
    *,
    title: str = "End-to-end latency",
    slos: Mapping[str, float] | None = None,
    bins: int = 60,
) -> bytes:
    """Histogram on a log-x axis (latency spans decades), with SLO targets marked."""
    fig = _new_figure()
    values = np.asarray(samples_ms, dtype=float)
    values = values[values > 0]  # a log axis has no room for 0; 0 ms is below resolution
    if values.size == 0:
        return _no_data(fig, title)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo / 1.5, hi * 1.5
    edges = np.logspace(math.log10(lo), math.log10(hi), bins + 1)
    ax = fig.add_subplot()
    ax.hist(values, bins=edges.tolist(), color="tab:blue", alpha=0.8)
    ax.set_xscale("log")
    top = max([hi, *(t for t in (slos or {}).values())])
    _plain_log_ticks(ax.xaxis, lo, top * 1.05)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("events")
    ax.set_title(title)
    _slo_lines(ax, slos, vertical=True)
    # The measured percentiles (the report's nearest-rank rule), solid: against the SLO
    # targets' dashed lines of the same colour, a miss is visible at a glance.
    ordered = np.sort(values)
    for name, pct in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
        value = float(ordered[rank(pct, ordered.size) - 1])
        ax.axvline(value, color=_SLO_COLOURS[name], linewidth=1.2,
                   label=f"measured {name} {value:.1f} ms")  # fmt: skip
    _legend_outside(ax)
    return _png(fig)


def _plain_log_ticks(axis: object, lo: float, hi: float) -> None:
    """Ticks at 1-2-5 steps labelled as plain numbers ("20", "50", "100"): matplotlib's
    "3x10^1" labels overlapped each other on a log axis of one or two decades."""
    steps = [m * 10.0**e for e in range(-3, 7) for m in (1, 2, 5)]
    ticks = [t for t in steps if lo <= t <= hi] or [lo, hi]
    if len(ticks) > 8:  # many decades: the decades alone
        ticks = [t for t in ticks if math.log10(t).is_integer()] or ticks[::3]
    axis.set_major_locator(FixedLocator(ticks))  # type: ignore[attr-defined]
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))  # type: ignore[attr-defined]
    axis.set_minor_formatter(NullFormatter())  # type: ignore[attr-defined]


def _legend_outside(ax: Axes) -> None:
    """The legend right of the plot, where it covers no curve."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


# Percentile curve x positions: 1 / (1 - q), so each extra "nine" is one decade.
_NINES_TICKS = {0.0: "0%", 0.5: "50%", 0.9: "90%", 0.99: "99%", 0.999: "99.9%", 0.9999: "99.99%"}


def percentile_points(values_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x = 1/(1-q), nearest-rank value) from 0 % up to the last sample's rank."""
    ordered = np.sort(values_ms)
    n = ordered.size
    # At least to p99 (x = 100): with fewer samples the top ones are the maximum (nearest
    # rank), so a 10-event run still shows its p99 against the p99 target.
    end = max(n, 100)
    x = np.unique(np.concatenate([np.logspace(0, math.log10(end), 400), [float(end)]]))
    return x, ordered[ranks(1.0 - 1.0 / x, n) - 1]


def percentile_curve(
    series_ms: Mapping[str, Sequence[float] | np.ndarray],
    *,
    title: str = "Latency by percentile",
    slos: Mapping[str, float] | None = None,
) -> bytes:
    """HdrHistogram-style percentile distribution: x on a log "nines" scale.

    One line per series (e.g. end-to-end and each stage); SLO targets are drawn as
    points at their percentile, so a point below the curve is a breached SLO.
    """
    fig = _new_figure()
    arrays = {k: np.asarray(v, dtype=float) for k, v in series_ms.items() if len(v)}
    if not arrays:
        return _no_data(fig, title)
    ax = fig.add_subplot()
    max_x = 1.0
    for label, values in arrays.items():
        x, y = percentile_points(values)
        ax.plot(x, y, label=label, linewidth=1.4)
        max_x = max(max_x, float(x[-1]))
    for name, target in (slos or {}).items():
        pct = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "p999": 0.999}.get(name)
        if pct is not None:
            ax.plot(
                [1 / (1 - pct)],
                [target],
                marker="v",
                color=_SLO_COLOURS[name],
                ls="none",
                label=f"SLO {name}",
            )
    ax.set_xscale("log")
    ticks = {1 / (1 - q): lbl for q, lbl in _NINES_TICKS.items() if 1 / (1 - q) <= max_x * 1.01}
    ax.xaxis.set_major_locator(FixedLocator(list(ticks)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels(list(ticks.values()))
    ax.set_xlim(1, max(max_x, 10.0))
    ax.set_xlabel("percentile")
    # Log: stages of a few ms and an end-to-end tail of seconds on one readable axis.
    if all(float(np.min(v)) > 0 for v in arrays.values()):
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        _plain_log_ticks(ax.yaxis, low, high)
        ax.set_ylabel("latency (ms, log scale)")
    else:
        ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    _legend_outside(ax)
    return _png(fig)


def stage_shares(
    stages_ms: Mapping[str, Mapping[str, float]], *, title: str = "Where the time goes"
) -> bytes:
    """One stacked bar: each stage's mean as a share of their sum (a row change's stages
    add up to its end-to-end time, so the means add up to the end-to-end mean)."""
    fig = Figure(figsize=(7.0, 1.6), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    means = {s: float(v.get("mean", 0.0)) for s, v in stages_ms.items() if v.get("count", 1)}
    total = sum(means.values())
    if total <= 0:
        return _no_data(fig, title)
    ax = fig.add_subplot()
    left = 0.0
    for name, mean in means.items():
        share = 100.0 * mean / total
        bar = ax.barh([0], [share], left=left, label=f"{name.replace('_', ' ')} {mean:.1f} ms")
        if share >= 8:
            ax.bar_label(bar, labels=[f"{share:.0f} %"], label_type="center", fontsize="small")
        left += share
    ax.set_xlim(0, 100)
    ax.set_yticks([])
    ax.set_xlabel(f"% of the end-to-end mean ({total:.1f} ms)")
    ax.set_title(title)
    _legend_outside(ax)
    return _png(fig)


def stage_breakdown(
    stages_ms: Mapping[str, Mapping[str, float]],
    *,
    title: str = "Latency by stage",
    percentiles: Sequence[str] = ("p50", "p99"),
) -> bytes:
    """Grouped bars: for each stage, one bar per percentile (ms)."""
    fig = _new_figure()
    names = [s for s in stages_ms if stages_ms[s].get("count", 1)]
    if not names:
        return _no_data(fig, title)
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    width = 0.8 / len(percentiles)
    for i, pct in enumerate(percentiles):
        heights = [float(stages_ms[s].get(pct, 0.0)) for s in names]
        bars = ax.bar(positions + i * width, heights, width, label=pct)
        ax.bar_label(bars, fmt="%.1f", fontsize="x-small")
    ax.set_xticks(positions + width * (len(percentiles) - 1) / 2)
    ax.set_xticklabels([n.replace("_", " ") for n in names])
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _png(fig)


def latency_vs_rate(
    points: Sequence[tuple[float, float, float, float]],
    *,
    title: str = "Latency and throughput vs offered rate",
    slos: Mapping[str, float] | None = None,
) -> bytes:
    """Capacity curve from (offered rate, p50 ms, p99 ms, achieved events/s) points.

    Left axis: p50/p99 latency (log); right axis: achieved vs offered throughput. The
    knee is where latency turns up and achieved throughput leaves the diagonal.
    """
    fig = _new_figure()
    if not points:
        return _no_data(fig, title)
    rate, p50, p99, achieved = (
        np.asarray(c, dtype=float) for c in zip(*sorted(points), strict=True)
    )
    ax = fig.add_subplot()
    ax.plot(rate, p50, marker="o", label="p50", color="tab:green")
    ax.plot(rate, p99, marker="o", label="p99", color="tab:red")
    if np.all(np.concatenate([p50, p99]) > 0):
        ax.set_yscale("log")
    _slo_lines(ax, {k: v for k, v in (slos or {}).items() if k in ("p50", "p99")}, False)
    ax.set_xlabel("offered rate (events/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    right = ax.twinx()
    right.plot(rate, achieved, marker="s", color="tab:blue", label="achieved")
    right.plot(rate, rate, linestyle=":", color="grey", label="offered")
    right.set_ylabel("throughput (events/s)")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small", loc="upper left")
    return _png(fig)


def sweep_plot(
    points: Sequence[tuple[str, float, float, float]],
    *,
    title: str = "Latency and throughput per setting",
) -> bytes:
    """A sweep from (setting label, p50 ms, p99 ms, row changes/s) points, in run order.

    Left axis: p50/p99 latency (log when every value is above 0); right axis: throughput.
    """
    fig = _new_figure()
    if not points:
        return _no_data(fig, title)
    labels = [p[0] for p in points]
    p50, p99, tput = (np.asarray([p[i] for p in points], dtype=float) for i in (1, 2, 3))
    x = np.arange(len(points))
    ax = fig.add_subplot()
    ax.plot(x, p50, marker="o", label="p50", color="tab:green")
    ax.plot(x, p99, marker="o", label="p99", color="tab:red")
    if np.all(np.concatenate([p50, p99]) > 0):
        ax.set_yscale("log")
    ax.set_xticks(x)
    ax.margins(x=0.15)
    ax.set_xticklabels(labels, rotation=20 if len(points) > 3 else 0, ha="right"
                       if len(points) > 3 else "center", fontsize="small")  # fmt: skip
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    right = ax.twinx()
    right.plot(x, tput, marker="s", linestyle="--", color="tab:blue", label="throughput")
    right.set_ylabel("row changes applied / s")
    right.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small", loc="upper left")
    return _png(fig)


def scenario_plots(
    stats: RunStats, slos: Mapping[str, float] | None = None, name: str = ""
) -> dict[str, bytes]:
    """The standard figures of one run, titled; keys are figure captions."""
    prefix = f"{name}: " if name else ""
    e2e = stats.samples_us.get("end_to_end", np.empty(0)) / 1000.0
    series = {"end-to-end": e2e}
    for stage in STAGE_NAMES:
        series[stage.replace("_", " ")] = stats.samples_us.get(stage, np.empty(0)) / 1000.0
    stages = {s: stats.stages[s].to_dict() for s in STAGE_NAMES if s in stats.stages}
    return {
        "End-to-end latency histogram": latency_histogram(
            e2e, title=f"{prefix}end-to-end latency", slos=slos
        ),
        "Latency by percentile": percentile_curve(
            series, title=f"{prefix}latency by percentile", slos=slos
        ),
        "Latency by stage": stage_breakdown(stages, title=f"{prefix}latency by stage"),
        "Where the time goes": stage_shares(stages, title=f"{prefix}where the time goes"),
    }
