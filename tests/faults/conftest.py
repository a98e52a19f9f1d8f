"""Fixtures of the fault suite (defined in fault_helpers; clean_pipeline in the plugin)."""

from tests.faults.fault_helpers import background_load

__all__ = ["background_load"]
