"""Fixtures of the fault suite (defined in fault_helpers; clean_pipeline in the plugin),
and the session's fault table in the terminal summary and reports/faults-latest.json."""

from __future__ import annotations

import json
from typing import Any

from event_processor.settings import PROJECT_ROOT
from tests.faults.fault_helpers import FAULT_ROWS, background_load, fault_table

__all__ = ["background_load"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FAULT_ROWS:
        return
    terminalreporter.section("fault table")
    for line in fault_table(FAULT_ROWS):
        terminalreporter.write_line(line)
    out = PROJECT_ROOT / "reports" / "faults-latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FAULT_ROWS, indent=2) + "\n", encoding="utf-8")
    terminalreporter.write_line(f"fault table: {out}")
