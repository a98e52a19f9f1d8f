"""Every run's result, over time: the store is the reports folder itself.

Each run writes ``result-<UTC stamp>.json`` (report.schema.write_json) beside
``latest.json``; this module reads them back as a history per scenario, draws the trend
page (``reports/index.html``), and resolves ``--baseline previous`` or a git ref to one
of them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from html import escape
from pathlib import Path

from event_processor.errors import ConfigError
from event_processor.report.schema import ResultDocument, load_json, rev_parse
from event_processor.settings import PROJECT_ROOT

STAMPED_GLOB = "result-*.json"
INDEX_NAME = "index.html"


@dataclass(frozen=True, slots=True)
class Run:
    """One scenario of one stored result document."""

    path: Path
    generated_at: str
    commit: str | None
    machine: str
    p50_ms: float
    p99_ms: float
    row_changes_per_s: float
    passed: bool


def stored(reports_dir: Path) -> list[tuple[Path, ResultDocument]]:
    """Every readable stored result, oldest first (unreadable files are skipped: a
    half-written or foreign file must not hide the rest)."""
    docs = []
    for path in reports_dir.glob(STAMPED_GLOB):
        try:
            docs.append((path, load_json(path)))
        except (OSError, ValueError):
            continue
    return sorted(docs, key=lambda pd: (pd[1].generated_at, pd[0].name))


def history(reports_dir: Path) -> dict[str, list[Run]]:
    """scenario name -> its runs, oldest first."""
    runs: dict[str, list[Run]] = {}
    for path, doc in stored(reports_dir):
        machine = doc.configuration.machine()
        for r in doc.scenarios:
            runs.setdefault(r.name, []).append(
                Run(
                    path,
                    doc.generated_at,
                    doc.commit,
                    machine,
                    r.e2e_ms.p50,
                    r.e2e_ms.p99,
                    r.throughput_eps,
                    r.passed,
                )
            )
    return runs


def delta_pct(now: float, before: float) -> float | None:
    """Change from ``before`` to ``now`` in percent of ``before`` (None without one)."""
    return None if not before else 100.0 * (now - before) / before


def against_baseline(runs: dict[str, list[Run]], baseline: Path) -> dict[str, str]:
    """Per scenario, the newest run's change against the baseline document's figures."""
    doc = load_json(baseline)
    out = {}
    for r in doc.scenarios:
        rows = runs.get(r.name)
        if not rows:
            continue
        last = rows[-1]
        parts = [
            f"{label} {pct:+.0f} %"
            for label, now, before in (
                ("p50", last.p50_ms, r.e2e_ms.p50),
                ("p99", last.p99_ms, r.e2e_ms.p99),
                ("rate", last.row_changes_per_s, r.throughput_eps),
            )
            if (pct := delta_pct(now, before)) is not None
        ]
        out[r.name] = f"newest run against the baseline {baseline.name}: " + ", ".join(parts)
    return out


def resolve_baseline(spec: str, reports_dir: Path) -> Path:
    """A ``--baseline`` value as a file: a path; ``previous`` (the newest stored result);
    or a git ref (the newest stored result of that commit). One-line ConfigError else."""
    path = Path(spec)
    if path.exists():
        return path
    docs = stored(reports_dir)
    if spec == "previous":
        if not docs:
            raise ConfigError("baseline", f"no stored result in {reports_dir}",
                              "run `event-processor load` or `pytest -m stress` first")  # fmt: skip
        return docs[-1][0]
    commit = rev_parse(spec, PROJECT_ROOT)
    if commit is None:
        raise ConfigError(
            "baseline",
            f"{spec!r} is neither a file, 'previous', nor a git ref",
            "give a result JSON path, previous, or a commit/branch/tag",
        )
    matching = [p for p, d in docs if d.commit and d.commit.startswith(commit[:12])]
    if not matching:
        raise ConfigError(
            "baseline",
            f"no stored result in {reports_dir} comes from {spec} ({commit[:12]})",
            f"check out {spec} and run it once, or pick another ref",
        )
    return matching[-1]


# --- the trend page ------------------------------------------------------------------


def trend_svg(name: str, runs: list[Run]) -> str:
    """p50 and p99 per run on a log axis, as inline SVG (sharp on any screen)."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 2.8), layout="constrained")
    ax = fig.add_subplot()
    x = list(range(1, len(runs) + 1))
    ax.plot(x, [r.p50_ms for r in runs], marker="o", label="e2e p50")
    ax.plot(x, [r.p99_ms for r in runs], marker="s", label="e2e p99")
    for i, r in zip(x, runs, strict=True):
        if not r.passed:
            ax.axvline(i, color="#d62728", alpha=0.15, linewidth=6)
    ax.set_yscale("log")
    ax.set_xlabel("run (oldest first; red band: failed)")
    ax.set_ylabel("ms")
    ax.set_title(f"{name}: end-to-end latency per run")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    buf = io.StringIO()
    # A fixed salt: the same runs draw the same page (element ids are hashed otherwise).
    with matplotlib.rc_context({"svg.hashsalt": f"ep-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _delta_cell(now: float, before: float | None, lower_is_better: bool = True) -> str:
    if before is None:
        return "-"
    pct = delta_pct(now, before)
    if pct is None:
        return "-"
    worse = pct > 0 if lower_is_better else pct < 0
    colour = "#721c24" if worse and abs(pct) >= 15 else ""
    return f'<span style="color:{colour}">{pct:+.0f} %</span>' if colour else f"{pct:+.0f} %"


def trend_page(runs: dict[str, list[Run]], versus: dict[str, str] | None = None) -> str:
    """``reports/index.html``: per scenario the trend plot and every run with its change
    against the run before (and the newest run's against a baseline: ``versus``)."""
    cell = "border:1px solid #ccc;padding:2px 8px"
    parts = ["<h1>event-processor: results over time</h1>"]
    if not runs:
        parts.append("<p>No stored results yet.</p>")
    for name, rows in sorted(runs.items()):
        parts += [f'<h2 id="{escape(name)}">{escape(name)}</h2>', trend_svg(name, rows)]
        if versus and name in versus:
            parts.append(f"<p><b>{escape(versus[name])}</b></p>")
        head = ("time (UTC)", "commit", "machine", "p50 ms", "Δ p50", "p99 ms", "Δ p99",
                "row changes/s", "Δ rate", "result", "file")  # fmt: skip
        body = []
        for i, r in enumerate(rows):
            prev = rows[i - 1] if i else None
            cells = [
                escape(r.generated_at),
                f"<code>{escape((r.commit or '?')[:10])}</code>",
                escape(r.machine),
                f"{r.p50_ms:.1f}",
                _delta_cell(r.p50_ms, prev.p50_ms if prev else None),
                f"{r.p99_ms:.1f}",
                _delta_cell(r.p99_ms, prev.p99_ms if prev else None),
                f"{r.row_changes_per_s:.1f}",
                _delta_cell(
                    r.row_changes_per_s,
                    prev.row_changes_per_s if prev else None,
                    lower_is_better=False,
                ),
                "PASSED" if r.passed else '<b style="color:#721c24">FAILED</b>',
                f'<a href="{escape(r.path.with_suffix(".html").name)}">{escape(r.path.name)}</a>',
            ]
            body.append("<tr>" + "".join(f'<td style="{cell}">{c}</td>' for c in cells) + "</tr>")
        header = "".join(f'<th style="{cell}">{escape(h)}</th>' for h in head)
        parts.append(
            f'<table style="border-collapse:collapse"><tr>{header}</tr>'
            + "".join(reversed(body))  # newest first
            + "</table>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>event-processor results over time</title></head>"
        '<body style="font-family:sans-serif;margin:1.5em">' + "\n".join(parts) + "</body></html>\n"
    )


def write_trend_page(reports_dir: Path, baseline: Path | None = None) -> Path:
    runs = history(reports_dir)
    versus = against_baseline(runs, baseline) if baseline is not None else None
    path = reports_dir / INDEX_NAME
    path.write_text(trend_page(runs, versus), encoding="utf-8")
    return path
