"""Results over time: the stored runs of a reports folder, the trend page, baselines.

The stored runs are real: three `event-processor load --scenario extreme` runs of one
commit on one warm stack (tests/fixtures/reports/history).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from event_processor.cli import main
from event_processor.errors import ConfigError
from event_processor.report.history import (
    delta_pct,
    history,
    resolve_baseline,
    stored,
    trend_page,
    write_trend_page,
)
from event_processor.report.schema import load_json

pytestmark = pytest.mark.unit

STORED = Path(__file__).parents[1] / "fixtures" / "reports" / "history"


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    for path in STORED.glob("result-*.json"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "result-broken.json").write_text("{not json")  # skipped, not fatal
    return tmp_path


def test_history_lists_each_scenario_oldest_first(reports: Path) -> None:
    runs = history(reports)
    assert list(runs) == ["extreme"]
    docs = [load_json(p) for p in sorted(STORED.glob("result-*.json"))]
    assert [r.p50_ms for r in runs["extreme"]] == [d.scenarios[0].e2e_ms.p50 for d in docs]
    assert [r.generated_at for r in runs["extreme"]] == sorted(d.generated_at for d in docs)
    assert all("CPUs" in r.machine for r in runs["extreme"])


def test_previous_is_the_newest_stored_run(reports: Path) -> None:
    newest = max(STORED.glob("result-*.json"), key=lambda p: load_json(p).generated_at)
    assert resolve_baseline("previous", reports).name == newest.name


def test_a_git_ref_finds_the_newest_run_of_that_commit(reports: Path) -> None:
    commit = load_json(next(STORED.glob("result-*.json"))).commit
    assert commit is not None
    assert resolve_baseline(commit[:7], reports) == stored(reports)[-1][0]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no-such-ref-or-file", "neither a file, 'previous', nor a git ref"),
        ("HEAD", "no stored result in"),  # a ref, but none of the runs is of it
    ],
)
def test_a_baseline_that_names_nothing_is_a_one_line_error(
    reports: Path, spec: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_baseline(spec, reports)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_previous_without_stored_runs_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no stored result.*event-processor load"):
        resolve_baseline("previous", tmp_path)


def test_trend_page_plots_and_tabulates_every_run_with_deltas(reports: Path) -> None:
    runs = history(reports)["extreme"]
    page = trend_page({"extreme": runs})
    assert page.count("<svg") == 1
    assert page.count("<tr>") == 1 + len(runs)
    last, before = runs[-1], runs[-2]
    assert f"{delta_pct(last.p50_ms, before.p50_ms):+.0f} %" in page
    # Newest first in the table.
    assert page.index(last.generated_at) < page.index(runs[0].generated_at)
    assert write_trend_page(reports).read_text() == trend_page(history(reports))


def test_report_history_prints_every_run(reports: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--history", "--reports", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "extreme: 3 runs, newest first" in out
    assert (reports / "index.html").exists()


def test_delta_pct() -> None:
    assert delta_pct(12.0, 10.0) == pytest.approx(20.0)
    assert delta_pct(8.0, 10.0) == pytest.approx(-20.0)
    assert delta_pct(1.0, 0.0) is None


def test_history_against_a_baseline_gives_the_newest_runs_change(
    reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oldest = stored(reports)[0][0]
    runs = history(reports)
    first, last = runs["extreme"][0], runs["extreme"][-1]
    expected = (
        f"newest run against the baseline {oldest.name}: "
        f"p50 {delta_pct(last.p50_ms, first.p50_ms):+.0f} %, "
        f"p99 {delta_pct(last.p99_ms, first.p99_ms):+.0f} %, "
        f"rate {delta_pct(last.row_changes_per_s, first.row_changes_per_s):+.0f} %"
    )
    assert main(["report", "--history", "--reports", str(reports), "--baseline", str(oldest)]) == 0
    assert f"extreme: {expected}" in capsys.readouterr().out
    assert expected in (reports / "index.html").read_text()
