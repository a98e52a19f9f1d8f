"""The cost meter (real /proc readings of real processes and threads) and the verdict
on whether a run's load was offered as planned."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from event_processor.metrics.cost import CostMeter, outside_cpu
from event_processor.metrics.validity import MAX_SCHEDULE_LAG_P99_MS, judge, offered_rate

pytestmark = pytest.mark.unit


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
    # Idle for a few sample intervals before ending, so that a sample sees the final
    # figure even when the sampler was kept off the GIL while the loop ran.
    time.sleep(0.25)


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


def test_outside_cpu_charges_non_members_by_name_from_birth() -> None:
    before = {(1, 1.0): ("a", 1.0), (2, 1.0): ("b", 5.0), (5, 1.0): ("d", 4.0)}
    after = {
        (1, 1.0): ("a", 3.0),  # +2.0
        (2, 1.0): ("b", 6.0),  # a member: not outside
        (3, 2.0): ("a", 0.5),  # born in the window: all of it
        (4, 1.0): ("c", 9.0),  # born in the window
        (5, 9.0): ("d", 1.0),  # pid 5 reused by a new process: counts from its birth
    }
    assert outside_cpu(before, after, members={2}) == {"a": 2.5, "c": 9.0, "d": 1.0}


def test_cost_section_names_a_busy_process_outside_the_pipeline() -> None:
    spinner = subprocess.Popen(
        ["sh", "-c", "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; sleep 30"]
    )
    member = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    meter = CostMeter(None, processes={"member": member.pid}, interval_s=0.05)
    try:
        meter.start()
        proc = psutil.Process(spinner.pid)
        # Wait until the loop is done (the shell has started its `sleep`), then read
        # what it used.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not proc.children():
            time.sleep(0.05)
        spent = sum(proc.cpu_times()[:2])
        section = meter.stop().to_json(row_changes=100)
    finally:
        spinner.kill()
        member.kill()
    outside = section["outside_pipeline"]
    assert spent > 0.1
    assert outside["top"].get("sh", 0) >= spent * 0.9
    assert outside["cpu_s"] >= outside["top"]["sh"]


def test_thread_cpu_is_read_to_the_nanosecond_from_the_scheduler() -> None:
    """The race's CPU per row: /proc stat's 10 ms ticks were a third of a sink's cost
    of 1,000 rows; the scheduler's per-thread account is exact."""
    import os
    import threading
    import time

    from event_processor.metrics.cost import cpu_between_s, thread_cpu_ns

    spun, release = threading.Event(), threading.Event()
    burn = {}

    def spin() -> None:
        start = time.thread_time()
        while time.thread_time() < start + 0.05:
            pass
        burn["s"] = time.thread_time() - start
        spun.set()
        release.wait(10)  # alive when read: a thread that ended is not seen

    before = thread_cpu_ns(os.getpid())
    assert before
    worker = threading.Thread(target=spin)
    worker.start()
    assert spun.wait(10)
    after = thread_cpu_ns(os.getpid())
    release.set()
    worker.join()
    assert after
    used = cpu_between_s(before, after)
    assert burn["s"] <= used < burn["s"] + 0.5, (used, burn)
    assert thread_cpu_ns(2**22 + 12345) is None  # no such process
