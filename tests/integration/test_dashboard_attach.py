"""`event-processor dashboard` attached to the running pipeline sees real load."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from event_processor.settings import Settings

pytestmark = pytest.mark.integration


def test_dashboard_attaches_and_counts_applied_events(
    clean_pipeline: Settings, start_consumer: Any, pg_conn: Any
) -> None:
    start_consumer("dash", group=f"dash-{uuid.uuid4().hex[:6]}")
    # Not a TTY: the dashboard prints a compact line every few seconds and a last one.
    proc = subprocess.Popen(
        [sys.executable, "-m", "event_processor.cli", "dashboard", "--duration", "12"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)  # let it attach at the end of the topics before the load starts
    with pg_conn.cursor() as cur:
        for i in range(25):
            cur.execute(
                "INSERT INTO customers (email, full_name) VALUES (%s, %s)",
                (f"dash{i}@example.org", f"Dash {i}"),
            )
            pg_conn.commit()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    last = out.strip().splitlines()[-1]
    match = re.search(r"(\d+) applied .* e2e p50 ([\d.]+)", last)
    assert match, f"no figures in the dashboard's last line: {last!r}"
    assert int(match.group(1)) == 25, last
    assert 0 < float(match.group(2)) < 10_000, last


def test_dashboard_rejects_a_bad_duration() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "event_processor.cli", "dashboard", "--duration", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    text = proc.stdout + proc.stderr
    assert "dashboard: --duration must be > 0" in text and "Traceback" not in text
