"""The cost meter (real /proc readings of real processes and threads) and the verdict
on whether a run's load was offered as planned."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from event_processor.metrics.cost import CostMeter
from event_processor.metrics.validity import MAX_SCHEDULE_LAG_P99_MS, judge, offered_rate

pytestmark = pytest.mark.unit


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_cost_meter_charges_a_busy_child_process_and_a_short_lived_thread() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nend=time.process_time()+0.6\n"
                              "while time.process_time() < end: pass"])  # fmt: skip
    meter = CostMeter(
        None,
        processes={"child": child.pid, "me": os.getpid()},
        threads={"ep-test-spin": "spinner"},
        interval_s=0.05,
    )
    meter.start()
    worker = threading.Thread(target=_spin, args=(0.3,), name="ep-test-spin")
    worker.start()
    worker.join()  # ends before stop(): the sampler must have seen it
    child.wait(10)
    cost = meter.stop()
    assert cost.groups["spinner"].cpu_s == pytest.approx(0.3, abs=0.12)
    assert cost.groups["child"].cpu_s > 0.2
    # The spinner's CPU is not counted a second time in its process's group.
    assert cost.groups["me"].cpu_s < cost.groups["spinner"].cpu_s
    section = cost.to_json(row_changes=1000)
    assert section["cpu_s_per_1000_row_changes"] == pytest.approx(cost.total_cpu_s, rel=0.01)
    assert 0 <= section["host_busy_pct"] <= 100


def test_a_run_behind_its_schedule_is_invalid() -> None:
    intended = [i * 2_000 for i in range(500)]  # 500/s planned
    on_time = judge(500.0, [t + 100 for t in intended], intended, 1.0, 0.5)
    assert on_time.valid and not on_time.reasons and not on_time.saturated
    slow = [i * 3_500 for i in range(500)]  # ~286/s actually sent
    late = judge(500.0, slow, intended, 700.0, 0.97)
    assert not late.valid and late.saturated
    assert any("below 95%" in r for r in late.reasons)
    assert any(f"> {MAX_SCHEDULE_LAG_P99_MS:g} ms" in r for r in late.reasons)
    assert offered_rate(slow, intended) == pytest.approx(285.9, rel=0.01)
