"""The pipeline warm-up goes on while the JVMs' JIT compilers are busy, up to a cap."""

from __future__ import annotations

from typing import Any

import pytest

import event_processor.perf.harness as harness
from event_processor.metrics.cost import JitReading, proc_stat_ticks
from event_processor.settings import Settings

pytestmark = pytest.mark.unit


def test_share_is_compiler_cpu_over_jvm_cpu_between_readings() -> None:
    before, after = JitReading(total_s=100.0, compiler_s=40.0), JitReading(150.0, 45.0)
    assert after.share_since(before) == pytest.approx(0.10)
    assert before.share_since(before) == 0.0  # no CPU used: no share, no division by zero


def test_ticks_read_past_a_thread_name_with_spaces_and_parentheses() -> None:
    stat = "4242 (C2 Compiler) x) S 1 2 3 4 5 6 7 8 9 10 700 35 0 0 20 0"
    assert proc_stat_ticks(stat) == 735


def _rounds(monkeypatch: pytest.MonkeyPatch, shares: list[float | None]) -> list[int]:
    asked: list[int] = []

    def fake_round(settings: Any, events: int) -> tuple[bool, float | None]:
        asked.append(events)
        return True, shares[len(asked) - 1]

    monkeypatch.setattr(harness, "_warm_up_round", fake_round)
    assert harness.warm_up_pipeline(Settings())
    return asked


def test_rounds_go_on_until_the_compilers_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _rounds(monkeypatch, [0.30, 0.21, 0.07, 0.5])
    assert asked == [harness.PIPELINE_WARMUP_EVENTS] + [harness.JIT_ROUND_EVENTS] * 2


def test_rounds_stop_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _rounds(monkeypatch, [0.5] * (harness.JIT_MAX_ROUNDS + 5))
    assert len(asked) == 1 + harness.JIT_MAX_ROUNDS


def test_no_local_jvm_means_one_round(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _rounds(monkeypatch, [None, 0.5]) == [harness.PIPELINE_WARMUP_EVENTS]
