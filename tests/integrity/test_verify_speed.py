"""How long verifying takes: a generic table filled by one generate_series statement.

100,000 rows: ``tests/integrity/bench_verify.py 10000 100000`` (not part of the suite).
"""

from __future__ import annotations

from typing import Any

import pytest

from event_processor.settings import Settings
from event_processor.verify import run_verify
from tests.integrity.integrity_helpers import load_read_model_offline

pytestmark = pytest.mark.integrity

BENCH_COLUMNS = (
    "id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), at timestamptz, "
    "flag boolean, tags text[], doc jsonb"
)
BENCH_FILL = (
    "INSERT INTO {t} SELECT g, 'name ' || g, g * 0.01, "
    "timestamptz '2024-01-01 00:00:00+00' + g * interval '1.000001 second', g %% 2 = 0, "
    "ARRAY['t' || (g %% 10), 'x'], jsonb_build_object('g', g, 'half', g / 2.0) "
    "FROM generate_series(1, %s) AS g"
)


def test_verifying_10k_rows_takes_seconds(
    ep_stack: Settings, pg_conn: Any, clean_state: Any, scratch_tables: Any, tmp_path: Any
) -> None:
    rows = 10_000
    table = scratch_tables("speed", BENCH_COLUMNS)
    with pg_conn.cursor() as cur:
        cur.execute(BENCH_FILL.format(t=table), (rows,))
    assert load_read_model_offline(ep_stack, table, rows) == rows
    report = run_verify(ep_stack, 120, tmp_path / "verify.json")
    assert report.ok, "\n".join(report.summary_lines())
    t = report.timings
    print(f"\nverify {rows:,} rows: total {t['total_s']:.2f} s (drain {t['drain_s']:.2f}, "
          f"read {t['read_s']:.2f}, compare {t['compare_s']:.2f})")  # fmt: skip
    # Generous for a loaded 2-core CI machine; measured ~1-2 s without the drain's quiet.
    assert t["read_s"] + t["compare_s"] < 20
