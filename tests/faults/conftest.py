"""Fixtures of the fault suite (defined in fault_helpers)."""

from tests.faults.fault_helpers import background_load, clean_pipeline

__all__ = ["background_load", "clean_pipeline"]
